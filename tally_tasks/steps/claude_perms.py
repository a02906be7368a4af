"""The `claude_perms` step: the main checkout's Claude Code approvals (`allowedTools`) and
trust answer for the worktree's entry in ~/.claude.json, `.claude/settings.local.json`, and
in it the hooks that record the agent's state (agent.py). Its line says what takes effect
when Claude Code starts there: trust and the settings' permission rules."""

from __future__ import annotations

from .. import agent, claude, output, sessions
from ..session import Project, Session, programs
from .base import Context, Made, nothing_to_check, nothing_to_fix, require_worktree, show

name = "claude-perms"
required = False
opens = False


def uses_claude(project: Project) -> bool:
    """True when a window starts Claude Code (else there is nothing to do)."""
    return any(
        "claude" in programs(w.cmd) or "claude" in programs(w.resume_cmd)
        for w in project.settings.windows
    )


def apply(project: Project, session: Session) -> bool:
    """True when this changed the worktree's entry in ~/.claude.json."""
    require_worktree(session)
    if not uses_claude(project):
        output.step(name, "no window runs Claude Code, nothing to do")
        return False
    s = project.settings
    config = claude.config_path(s.claude_config)
    result, made = claude.inherit(
        config, project.main, session.worktree, s.claude_trust, s.claude_lock_stale
    )
    local = claude.copy_local_settings(project.main, session.worktree)
    state = agent.state_path(project.common_dir, session.slug)
    command = agent.hook_command(state, session.worktree, project.main, session.name)
    hooks = claude.install_hooks(session.worktree, agent.EVENTS, command, agent.HOOK_FLAG)
    # a file of this machine's paths, never to be committed (Claude Code's own rule for it)
    sessions.exclude_own(project)
    # what Claude Code will go by, not what was copied (it ignores allowedTools now)
    outcomes = [result if not result.ok else claude.effect(config, session.worktree)]
    outcomes += [o for o in (local, hooks) if o is not None]
    show(name, outcomes)
    return made


def forget(project: Project, session: Session) -> None:
    """Take our hooks out of the worktree's settings and drop its state file."""
    claude.remove_hooks(session.worktree, agent.HOOK_FLAG)
    path = agent.state_path(project.common_dir, session.slug)
    for leftover in (path, path.with_name(path.name + ".lock")):
        leftover.unlink(missing_ok=True)


def hold(ctx: Context) -> Made | None:
    if not (ctx.adding and uses_claude(ctx.project)):
        return None
    # an entry there may be older than this add (its history, its MCP servers): the
    # undo puts back what was there and drops only what came since
    s = ctx.project.settings
    config = claude.config_path(s.claude_config)
    before = claude.snapshot(config, [ctx.session.worktree], s.claude_lock_stale)
    return Made("Claude Code entry", before)


def run(ctx: Context) -> Made | None:
    before = hold(ctx)  # what was there as run starts (hold's, unless it changed since)
    changed = apply(ctx.project, ctx.session)
    # nothing changed in ~/.claude.json: nothing to put back, nor to list as undone
    return before if changed else None


def undo(ctx: Context, made: Made) -> None:
    s = ctx.project.settings
    claude.restore(claude.config_path(s.claude_config), made.data, s.claude_lock_stale)


def plan(ctx: Context) -> list[str]:
    if not uses_claude(ctx.project):
        return ["no window runs Claude Code, nothing to do"]
    config = claude.config_path(ctx.project.settings.claude_config)
    return [
        f"copy approvals and trust in {config}",
        f"state hooks in {claude.LOCAL_SETTINGS} (merged, yours kept)",
    ]


check = nothing_to_check
fix = nothing_to_fix
