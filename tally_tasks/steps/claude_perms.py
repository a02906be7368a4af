"""The `claude_perms` step: the main checkout's Claude Code approvals (`allowedTools`) and
trust answer for the worktree's entry in ~/.claude.json, `.claude/settings.local.json`, and
in it the hooks that record the agent's state (agent.py). Its line says what takes effect
when Claude Code starts there: trust and the settings' permission rules."""

from __future__ import annotations

import os
import shlex

from .. import agent, claude, output, sessions
from ..session import Project, Session, programs
from .base import FINE, Checked, Context, Made, Report, require_worktree, show

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
    hooks = claude.install_hooks(
        session.worktree, agent.EVENTS, _hook_command(project, session), agent.HOOK_FLAG
    )
    # a file of this machine's paths, never to be committed (Claude Code's own rule for it)
    sessions.exclude_own(project)
    # what Claude Code will go by, not what was copied (it ignores allowedTools now)
    outcomes = [result if not result.ok else claude.effect(config, session.worktree)]
    outcomes += [o for o in (local, hooks) if o is not None]
    show(name, outcomes)
    return made


def _hook_command(project: Project, session: Session) -> str:
    state = agent.state_path(project.common_dir, session.slug)
    return agent.hook_command(state, session.worktree, project.main, session.name)


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


def check(ctx: Context, report: Report) -> Checked:
    """The state hooks are there, one per event, and can run: a virtualenv made again
    elsewhere leaves them running an interpreter that is gone, and the agent's state is
    never recorded again (the hook ends in `|| true`). Another install's hooks that run
    are fine."""
    project, session = ctx.project, ctx.session
    if not uses_claude(project) or not session.worktree.is_dir():
        return FINE
    found = claude.our_hooks(session.worktree, agent.HOOK_FLAG)
    state = str(agent.state_path(project.common_dir, session.slug))
    missing = [e for e in agent.EVENTS if len(found.get(e, [])) != 1]
    broken = sorted({why for cs in found.values() for c in cs if (why := _broken(c, state))})
    if not missing and not broken:
        return FINE
    if len(missing) == len(agent.EVENTS):
        what = "are missing"
    elif broken:
        what = broken[0]
    else:
        what = "are missing for " + ", ".join(missing)
    report.bad(
        session.name,
        f"the agent's state hooks in {claude.LOCAL_SETTINGS} {what}: its state is not recorded",
    )
    return Checked(mend=("hooks",))


def _broken(command: str, state: str) -> str:
    """Why a hook command of ours cannot record the state ("" when it can)."""
    try:
        argv = shlex.split(command)
    except ValueError:
        return "cannot be read"
    python = argv[0] if argv else ""
    if not os.access(python, os.X_OK):
        return f"run {python}, which is gone"
    code = argv[argv.index("-c") + 1] if "-c" in argv[:-1] else ""
    folder = code.partition("sys.path.insert(0, ")[2].partition(")")[0].strip("'\"")
    if not os.path.isfile(os.path.join(folder, "agent.py")):
        return f"import agent.py from {folder or '?'}, which is gone"
    if "--state" not in argv or argv[argv.index("--state") + 1 :][:1] != [state]:
        return "write another session's state file"
    return ""


def fix(ctx: Context, report: Report, mend: tuple[str, ...]) -> None:
    session = ctx.session
    done = claude.install_hooks(
        session.worktree, agent.EVENTS, _hook_command(ctx.project, session), agent.HOOK_FLAG
    )
    if not done.ok:
        report.bad(session.name, done.detail)
        return
    from .. import panes  # here: doctor --fix's; add reads no pane

    window = panes.agent_window(ctx.project.settings.windows)
    report.mended(
        session.name,
        "state hooks installed again (a running agent reads them when it starts again: "
        + output.command("restart", session.name, "--window", window or "claude")
        + ")",
    )
