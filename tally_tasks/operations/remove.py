"""`remove`: take a session away, never the user's work unless --force (README: Safety).

`plan` is its dry run: the same refusals, in the same order, then what it would do.
"""

from __future__ import annotations

import shlex
import signal
from typing import Any

from .. import claude, hooks, links, output, registry, sessions, tmux, worktree
from .. import repo as repo_
from ..errors import TallyError
from ..session import Project, Session, render
from ..steps import links as links_step
from ..steps.base import Context, Step, plan_line, refuse_lines
from ..steps.project import ProjectTasks, for_remove


def _stashes(repo: Any, branch: str) -> list[str]:
    """Stashes made on `branch` (git's own "WIP on b:" / "On b:" prefix, not the message)."""
    out = repo_.run(repo, "stash", "list", "--format=%gd %gs")
    found = []
    for line in out.splitlines():
        ref, _, subject = line.partition(" ")
        # a branch name cannot contain ":", so the prefix is exact
        if subject.startswith((f"WIP on {branch}: ", f"On {branch}: ")):
            found.append(f"{ref}: {subject}")
    return found


def _unmerged(repo: Any, branch: str) -> tuple[str, list[str]]:
    """(main branch, one-line commits on `branch` not in it)."""
    main_ref = repo_.current_branch(repo) or "HEAD"
    out = repo_.run(repo, "log", "--format=%h %s", f"{main_ref}..refs/heads/{branch}")
    return main_ref, out.splitlines()


def _unpushed(repo: Any, branch: str) -> list[str]:
    if not repo_.ok(repo, "rev-parse", "--verify", "--quiet", f"{branch}@{{upstream}}"):
        return []
    out = repo_.run(repo, "log", "--format=%h %s", f"{branch}@{{upstream}}..refs/heads/{branch}")
    return out.splitlines()


def at_risk(project: Project, repo: repo_.Repo, session: Session, half: bool = False) -> list[str]:
    """What removing the session would destroy: the user's changes and the branch's stashes
    (a `half` made worktree is git's unfinished checkout: no one's changes)."""
    problems: list[str] = []
    if session.worktree.is_dir() and not half:
        # a real file where a symlink belongs is not ours (links leave it alone): the
        # user's own database, say, which git ignores
        replaced = [
            lk.path
            for lk in project.settings.links
            if lk.mode == "symlink"
            and not (session.worktree / lk.path).is_symlink()
            and (session.worktree / lk.path).exists()
            and not links.tracked(session.worktree, [lk.path])
        ]
        if replaced:
            problems.append(
                "your own file(s) where the tool's links belong: " + ", ".join(replaced)
            )
        changes = worktree.user_changes(session.worktree, project.own_paths())
        if changes:
            shown = ", ".join(changes[:8]) + (" …" if len(changes) > 8 else "")
            problems.append(f"{len(changes)} uncommitted or untracked change(s): {shown}")
        for sub, commits in worktree.submodule_commits(session.worktree).items():
            problems.append(
                f"submodule {sub}: {len(commits)} commit(s) on no remote ({commits[0]}), "
                "kept only in this worktree"
            )
        orphaned = worktree.detached_commits(session.worktree)
        if orphaned:
            problems.append(
                f"{len(orphaned)} commit(s) on a detached HEAD, on no branch ({orphaned[0]})"
            )
    if repo_.branch_exists(repo, session.branch):
        stashes = _stashes(repo, session.branch)
        if stashes:
            problems.append(f"stash(es) of {session.branch}: " + ", ".join(stashes[:5]))
    return problems


def refusal(project: Project, session: Session, known: worktree.Worktree | None) -> str:
    """Why `remove` must not touch the worktree even with --force ("" when it may)."""
    wt, name = session.worktree, session.name
    others = [
        n
        for n, e in sessions.load(project).items()
        if n != name and project.session(n, e).worktree == wt
    ]
    if others:
        return (
            f"{wt} is the worktree of session {others[0]!r} too; nothing removed. Fix the entry "
            f"of {name!r} in {project.registry_path}"
        )
    if wt.is_dir() and known is None:
        return (
            f"{wt} is not a git worktree of {project.main}; it is left alone. Move it away, "
            "then run: " + output.command("remove", name)
        )
    return ""


def problems(
    project: Project, repo: repo_.Repo, session: Session, known: worktree.Worktree | None
) -> list[str]:
    """What makes `remove` refuse without --force: a locked worktree, one on another
    branch, and the user's work at risk."""
    problems = []
    pid = sessions.adder(sessions.load(project).get(session.name, {}))
    if pid is not None:
        problems.append(f"an add of it is still running (pid {pid}): wait for it to finish")
    half = pid is None and worktree.half_made(repo, session.worktree)
    if known is not None and known.locked is not None and not half:
        why = f" ({known.locked})" if known.locked else ""
        unlock = output.on_host(f"git worktree unlock {shlex.quote(str(session.worktree))}")
        problems.append(f"the worktree is locked{why}: unlock it first with: {unlock}")
    if known is not None and known.branch != session.branch:
        problems.append(
            f"the worktree is on {known.branch or 'a detached HEAD'}, not {session.branch}"
        )
    return problems + at_risk(project, repo, session, half)


def branch_fate(repo: repo_.Repo, branch: str, force: bool, keep: bool) -> tuple[bool, str]:
    """(delete it?, why) for the session's branch on remove."""
    if not repo_.branch_exists(repo, branch):
        return False, ""
    if keep:
        return False, f"kept {branch} (--keep-branch)"
    main_ref, commits = _unmerged(repo, branch)
    unpushed = _unpushed(repo, branch)
    if (commits or unpushed) and not force:
        lost = commits or unpushed
        what = f"not merged into {main_ref}" if commits else "not pushed"
        more = " …" if len(lost) > 1 else ""
        return False, (
            f"kept {branch}: {len(lost)} commit(s) {what} ({lost[0]}{more}); "
            "delete it with: " + output.on_host(f"git branch -D {branch}")
        )
    return True, f"deleted {branch}"


def run(
    project: Project,
    name: str,
    srv: tmux.TmuxServer,
    force: bool = False,
    keep_branch: bool = False,
    tasks: ProjectTasks | None = None,
) -> None:
    """Take the session away; never the user's work unless `force` (README: Safety)."""
    session = sessions.get(project, name)
    chosen = for_remove(project, tasks)
    wt = session.worktree
    # Every `git worktree` call holds the repository lock: git reads all worktrees'
    # records, and another process's half-made one makes it fail.
    with repo_.open_repo(project.main) as repo:
        with sessions.locked_repo(project):
            known = worktree.find(repo, wt)
        why = refusal(project, session, known)
        if why:
            raise TallyError(why)
        if not force:
            found = problems(project, repo, session, known)
            if found:
                raise TallyError(
                    f"session {name} has work that would be lost: "
                    + "; ".join(found)
                    + ". Commit or move what you want to keep (a stash: pop or drop it), "
                    "or run: " + output.command("remove", name, "--force")
                )
        registry.check_writable(project.registry_path)  # before anything is taken away
        try:
            hooks.run(project, session, "pre_remove")
        except TallyError as e:
            if not force:
                raise TallyError(
                    f"{e}; fix the hook, or remove anyway with: "
                    + output.command("remove", name, "--force")
                ) from None
            output.warn("pre-remove", f"{e}; removing anyway (--force)")
        _run_steps(Context(project, session, srv), chosen, force)
        # Run from one of the session's own windows, killing tmux first would hang up on
        # this very process halfway: then tmux goes last, and the hang-up is ignored.
        inside = tmux.current_session(srv) == session.tmux_name
        if inside:
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
        elif tmux.kill(srv, session.tmux_name):
            output.step("tmux", f"killed {session.tmux_name}")
        for h in sessions.stop_orphans(session):
            output.step("processes", f"stopped {h.describe()}, still holding a session port")
        with sessions.locked_repo(project):
            if wt.exists() or known is not None:
                worktree.unlink_ours(wt, [lk.path for lk in project.settings.links])
                worktree.remove(repo, wt)
                output.step("worktree", f"removed {wt}")
            _remove_branch(repo, session.branch, force, keep_branch)
    config = claude.config_path(project.settings.claude_config)
    try:
        state = claude.forget(config, [wt], project.settings.claude_lock_stale)
        if state == "corrupt":
            output.warn("claude", f"{config} is not valid JSON, left untouched")
        elif state == "changed":  # as the dry run says it would
            output.step("claude", f"dropped the entry of {wt} in {config}")
    except TallyError as e:  # the worktree is gone already: the record must go too
        output.warn("claude", f"{e}; drop the entry later with: " + output.command("claude_prune"))
    sessions.drop_entry(project, name)
    output.step("registry", f"dropped {name} (ports freed)")
    links_step.exclude(project)  # the last session gone: the tool's lines in info/exclude too
    if inside:
        output.step("tmux", f"killing {session.tmux_name}, this window with it")
        tmux.kill(srv, session.tmux_name)


def _run_steps(ctx: Context, chosen: list[Step], force: bool) -> None:
    """Run them in the worktree, before it goes; one that fails stops `remove` (with
    --force: said, and remove goes on). Never in the main checkout instead."""
    if chosen and not ctx.session.worktree.is_dir():
        output.warn("remove-steps", f"worktree {ctx.session.worktree} is gone; not run")
        return
    for step in chosen:
        try:
            step.run(ctx)
        except TallyError as e:
            if not force:
                raise TallyError(
                    f"{step.name} failed: {e}; fix it, or remove anyway with: "
                    + output.command("remove", ctx.session.name, "--force")
                ) from None
            output.warn(step.name, f"failed: {e}; removing anyway (--force)")


def _remove_branch(repo: repo_.Repo, branch: str, force: bool, keep: bool) -> None:
    delete, why = branch_fate(repo, branch, force, keep)
    if delete:
        for w in worktree.listing(repo):
            if w.branch == branch:
                output.warn("branch", f"kept {branch}: checked out at {w.path}")
                return
        repo_.run(repo, "branch", "-D", branch)
        output.step("branch", why)
    elif why.startswith(f"kept {branch}:"):
        output.warn("branch", why)
    elif why:
        output.step("branch", why)


def plan(
    project: Project,
    name: str,
    srv: tmux.TmuxServer,
    force: bool,
    keep_branch: bool,
    tasks: ProjectTasks | None = None,
) -> bool:
    """The dry run of `run`: its refusals, in its order, then what it would do; False
    when the real remove would refuse."""
    session = sessions.get(project, name)
    chosen = for_remove(project, tasks)
    wt = session.worktree
    output.info(output.bold(f"Would remove session {name} (dry run: nothing changed)"))
    with repo_.open_repo(project.main) as repo:
        known = worktree.find(repo, wt)
        why = refusal(project, session, known)
        if why:
            refuse_lines([why + " (--force does not change this)"], "nothing would be removed")
            return False
        if not force:
            found = problems(project, repo, session, known)
            if found:
                refuse_lines(
                    ["work would be lost: " + "; ".join(found)],
                    "nothing would be removed without --force",
                )
                return False
        pre = project.settings.hooks.get("pre_remove", ())
        if pre and not wt.is_dir():
            plan_line("pre-remove", f"not run: worktree {wt} is gone ({len(pre)} hook(s))")
        else:
            for hook in pre:
                plan_line("pre-remove", render(hook, session.values(project)))
        if chosen and not wt.is_dir():
            plan_line("remove-steps", f"not run: worktree {wt} is gone")
        else:
            ctx = Context(project, session, srv)
            for step in chosen:
                for line in step.plan(ctx):
                    plan_line(step.name, line)
        running = tmux.exists(srv, session.tmux_name)
        inside = running and tmux.current_session(srv) == session.tmux_name
        if running and not inside:
            plan_line("tmux", f"kill {session.tmux_name}")
        when = " if it outlives the tmux session" if running and not inside else ""
        for h in sessions.orphans(session):
            plan_line("processes", f"stop {h.describe()}, holding a session port{when}")
        if wt.exists() or known is not None:
            gone = "" if wt.exists() else " (already gone: drop git's record of it)"
            plan_line("worktree", f"remove {wt}{gone}")
        delete, why = branch_fate(repo, session.branch, force, keep_branch)
        elsewhere = [
            w.path
            for w in worktree.listing(repo)
            if w.branch == session.branch and not worktree.same(w.path, wt)
        ]
        if delete and elsewhere:
            plan_line("branch", f"keep {session.branch}: checked out at {elsewhere[0]}")
        elif why:
            plan_line("branch", why.replace("deleted", "delete", 1))
    plan_line("claude", f"drop the entry of {wt}")
    plan_line(
        "registry", f"drop {name} (frees ports {', '.join(map(str, session.ports.values()))})"
    )
    if inside:
        plan_line("tmux", f"kill {session.tmux_name} last, this window with it")
    return True
