"""The `worktree` step: the session's git worktree, on its branch (made when missing)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from .. import output, sessions, tmux, worktree
from .. import repo as repo_
from ..session import Project, Session
from .base import Checked, Context, Made, Refused, Report, stop_orphans

name = "worktree"
required = True
opens = False


def create(project: Project, session: Session) -> str:
    """Make the worktree (and branch) if missing; say what was done ("exists" if nothing)."""
    with repo_.open_repo(project.main) as repo, sessions.locked_repo(project):
        what = worktree.create(repo, session.worktree, session.branch)
    output.step("worktree", f"{_short(session.worktree)}  ({what})")
    return what


def _short(path: Path) -> str:
    try:
        return os.path.relpath(path, Path.cwd()) if len(str(path)) > 40 else str(path)
    except (ValueError, OSError):
        return str(path)


def hold(ctx: Context) -> Made | None:
    """A folder there already is either the worktree (kept) or refused by `create`."""
    session = ctx.session
    if session.worktree.exists() or session.worktree.is_symlink():
        return None
    with repo_.open_repo(ctx.project.main) as repo:
        return Made("worktree", data=repo_.branch_exists(repo, session.branch))


def ask_ahead(project: Project, session: Session, start: Callable[..., None]) -> None:
    """Begin the git calls `hold` and `run` make for a worktree not there yet (the branch,
    git's worktrees, the refs), with `repo.ahead`'s `start`: they run at once, while add's
    checks run. Read-only: a session's own worktree and branch change only under its
    claim, taken before they are asked."""
    if session.worktree.exists() or session.worktree.is_symlink():
        return
    repo = repo_.Repo(project.main)
    start(repo, *repo_.branch_ref(session.branch))
    start(repo, *worktree.LIST)
    start(repo, *repo_.REFS)


def run(ctx: Context) -> Made | None:
    what = create(ctx.project, ctx.session)
    if what == "exists":
        return None
    return Made("worktree", data=not what.startswith("new branch"))  # data: had the branch


def undo(ctx: Context, made: Made) -> None:
    """Remove the worktree (our links unlinked first; one git was still making, too) and
    the branch if this run made it (and no worktree has it checked out)."""
    project, session = ctx.project, ctx.session
    with repo_.open_repo(project.main) as repo, sessions.locked_repo(project):
        worktree.unlink_ours(session.worktree, [lk.path for lk in project.settings.links])
        worktree.remove(repo, session.worktree)
        if not made.data and repo_.branch_exists(repo, session.branch):
            if not any(w.branch == session.branch for w in worktree.listing(repo)):
                repo_.run(repo, "branch", "-D", session.branch)


def plan(ctx: Context) -> list[str]:
    with repo_.open_repo(ctx.project.main) as repo:
        what, problem = _plan(repo, ctx.session)
    if problem:
        raise Refused(problem)
    return [f"{ctx.session.worktree}  ({what})"]


def _plan(repo: repo_.Repo, session: Session) -> tuple[str, str]:
    """(what `worktree.create` would do, why it would refuse or ""), in its order."""
    path, branch = session.worktree, session.branch
    known = worktree.find(repo, path)
    if known is not None and not (known.prunable or not path.is_dir()):
        if known.branch != branch:
            on = known.branch or "a detached HEAD"
            return "", f"{path} is a worktree on {on}, not {branch}; add would fail"
        return "exists", ""
    if path.exists() or path.is_symlink():
        return "", (
            f"{path} already exists and is not this session's worktree; add would fail "
            "(move it away or set tally.worktrees to another folder)"
        )
    refs = repo_.refs(repo)
    if branch in refs:
        pruned = known is not None  # create prunes git's stale records first
        for wt in worktree.listing(repo):
            if wt.branch == branch and not (pruned and wt.prunable):
                return "", f"branch {branch} is already checked out at {wt.path}; add would fail"
        return f"existing branch {branch}", ""
    clash = refs.clash(branch)
    if clash:
        return "", clash + "; add would fail"
    return f"new branch {branch} from {refs.current or 'HEAD'}", ""


def check(ctx: Context, report: Report) -> Checked:
    """Present, known to git, finished, on its branch. A missing one halts the checks
    (`fix` drops its entry); so do one git does not know and one half made."""
    project, session = ctx.project, ctx.session
    where, wt = session.name, session.worktree
    with repo_.open_repo(project.main) as repo:
        known = worktree.find(repo, wt)
        if not wt.is_dir():
            report.bad(where, f"worktree {wt} is missing")
            return Checked(mend=(str(wt),), halt=True)
        if known is None:
            report.bad(where, f"{wt} exists but git does not know it as a worktree")
            return Checked(halt=True)
        if known.locked == worktree.INITIALIZING:
            report.bad(
                where,
                f"{wt} is half made (a `git worktree add` was stopped); make it again with: "
                + output.command("add", session.name),
            )
            return Checked(halt=True)
        if not repo_.branch_exists(repo, session.branch):
            report.bad(where, f"branch {session.branch} is missing")
        elif known.branch != session.branch:
            report.bad(
                where, f"worktree is on {known.branch or 'a detached HEAD'}, not {session.branch}"
            )
    return Checked()


def fix(ctx: Context, report: Report, mend: tuple[str, ...]) -> None:
    """A worktree that is gone: end what still runs in it, then drop the entry."""
    project, session = ctx.project, ctx.session
    where = session.name
    # its windows work in a folder that is gone; left running, they would be stale state
    # of their own once the entry is dropped
    if tmux.kill(ctx.server, session.tmux_name):
        report.mended(where, f"ended tmux session {session.tmux_name}")
    stop_orphans(session, report)
    with repo_.open_repo(project.main) as repo, sessions.locked_repo(project):
        repo_.run(repo, "worktree", "prune")
    sessions.drop_entry(project, session.name)
    report.mended(where, "dropped the registry entry (worktree gone; git pruned)")
