"""`remove`: take a session away, never the user's work unless --force (README: Safety).

`plan` is its dry run: the same refusals, in the same order, then what it would do.
"""

from __future__ import annotations

import shlex
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import claude, envfiles, hooks, links, merged, output, registry, sessions, tmux, worktree
from .. import repo as repo_
from ..errors import TallyError
from ..session import Project, Session, render
from ..steps import claude_perms as claude_step
from ..steps.base import Context, Step, plan_line, refuse_lines
from ..steps.project import ProjectTasks, for_remove

STASHES = ("stash", "list", "--format=%gd %gs")


def _stashes(repo: Any, branch: str) -> list[str]:
    """Stashes made on `branch` (git's own "WIP on b:" / "On b:" prefix, not the message)."""
    out = repo_.run(repo, *STASHES)
    found = []
    for line in out.splitlines():
        ref, _, subject = line.partition(" ")
        # a branch name cannot contain ":", so the prefix is exact
        if subject.startswith((f"WIP on {branch}: ", f"On {branch}: ")):
            found.append(f"{ref}: {subject}")
    return found


def _unmerged(repo: repo_.Repo, branch: str, main_ref: str) -> list[str]:
    """One-line commits on `branch` not in `main_ref`."""
    return repo_.run(repo, "log", "--format=%h %s", f"{main_ref}..refs/heads/{branch}").splitlines()


def lost_ignored(project: Project, session: Session) -> worktree.Ignored:
    """The git-ignored files `remove` deletes with the worktree, the tool's own links and
    copies (those of `.worktreeinclude` too) aside."""
    ours = project.own_paths() | set(envfiles.worktree_include(project.main))
    return worktree.ignored(session.worktree, ours, project.settings.protect)


def ignored_shown(ign: worktree.Ignored, limit: int = 6) -> str:
    """``__pycache__/ (120 files in 14 folders), backend/debug.log``: ignored folders of
    one name together, the most files first."""
    groups: dict[str, list[int]] = {}  # name -> [files, folders]
    for entry, files in ign.entries.items():
        key = entry.rstrip("/").rsplit("/", 1)[-1] + "/" if entry.endswith("/") else entry
        group = groups.setdefault(key, [0, 0])
        group[0] += files
        group[1] += 1
    order = sorted(groups.items(), key=lambda kv: (-kv[1][0], kv[0]))

    def one(key: str, files: int, folders: int) -> str:
        if not key.endswith("/"):
            return key
        where = f" in {folders} folders" if folders > 1 else ""
        return f"{key} ({files} file{'' if files == 1 else 's'}{where})"

    shown = [one(key, *group) for key, group in order[:limit]]
    rest = order[limit:]
    if rest:
        shown.append(f"… and {len(rest)} more ({sum(g[0] for _, g in rest)} files)")
    return ", ".join(shown)


def _paths_shown(paths: list[str], limit: int = 8) -> str:
    return ", ".join(paths[:limit]) + (" …" if len(paths) > limit else "")


def at_risk(
    project: Project,
    repo: repo_.Repo,
    session: Session,
    half: bool = False,
    ign: worktree.Ignored | None = None,
    known: worktree.Worktree | None = None,
) -> list[str]:
    """What removing the session would destroy: the user's changes, the ignored files
    tally.protect names (`ign`: found already) and the branch's stashes (a `half` made
    worktree is git's unfinished checkout: no one's changes; `known`: git's record of the
    worktree, when read just now)."""
    problems: list[str] = []
    if session.worktree.is_dir() and known is not None and not half:
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
            shown = _paths_shown(changes)
            problems.append(f"{len(changes)} uncommitted or untracked change(s): {shown}")
        protected = (ign or lost_ignored(project, session)).protected
        if protected:
            problems.append(
                f"{len(protected)} git-ignored file(s) that tally.protect keeps: "
                + _paths_shown(protected)
            )
        for sub, commits in worktree.submodule_commits(session.worktree).items():
            problems.append(
                f"submodule {sub}: {len(commits)} commit(s) on no remote ({commits[0]}), "
                "kept only in this worktree"
            )
        on_branch = known is not None and known.branch is not None
        orphaned = worktree.detached_commits(session.worktree, on_branch)
        if orphaned:
            problems.append(
                f"{len(orphaned)} commit(s) on a detached HEAD, on no branch ({orphaned[0]})"
            )
    on_it = known is not None and known.branch == session.branch  # so the branch exists
    if on_it or repo_.branch_exists(repo, session.branch):
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
    if wt.is_dir() and known is None and not leftover(wt, known):
        return (
            f"{wt} is not a git worktree of {project.main}; it is left alone. Move it away, "
            "then run: " + output.command("remove", name)
        )
    if known is not None and wt.is_dir():
        # git would empty the worktree halfway, then forget it: a half-removed session
        # no later remove could finish
        stuck = worktree.undeletable(wt, [lk.path for lk in project.settings.links])
        if stuck is not None:
            return (
                f"the worktree {wt} cannot be deleted: {stuck} is not writable by you; "
                "nothing removed. Fix that, then run: " + output.command("remove", name)
            )
    return ""


def leftover(wt: Path, known: worktree.Worktree | None) -> bool:
    """`wt` is an empty folder git does not know: what a remove stopped after git had
    emptied the worktree leaves behind (nothing in it to lose)."""
    if known is not None or wt.is_symlink() or not wt.is_dir():
        return False
    try:
        return not any(wt.iterdir())
    except OSError:
        return False


def problems(
    project: Project,
    repo: repo_.Repo,
    session: Session,
    known: worktree.Worktree | None,
    ign: worktree.Ignored | None = None,
) -> list[str]:
    """What makes `remove` refuse without --force: a locked worktree, one on another
    branch, and the user's work at risk (`ign`: its ignored files, found already)."""
    problems = []
    pid = sessions.adder(sessions.load(project).get(session.name, {}))
    if pid is not None:
        problems.append(f"an add of it is still running (pid {pid}): wait for it to finish")
    half = pid is None and worktree.half_made(repo, session.worktree, known)
    if known is not None and known.locked is not None and not half:
        why = f" ({known.locked})" if known.locked else ""
        unlock = output.on_host(f"git worktree unlock {shlex.quote(str(session.worktree))}")
        problems.append(f"the worktree is locked{why}: unlock it first with: {unlock}")
    if known is not None and known.branch != session.branch:
        problems.append(
            f"the worktree is on {known.branch or 'a detached HEAD'}, not {session.branch}"
        )
    return problems + at_risk(project, repo, session, half, ign, known)


@dataclass
class Verdict:
    """What remove's checks found (`examine`): git's record of the worktree (`known`), the
    git-ignored files that would go with it (`ign`), why it must not be touched even with
    --force (`refusal`, "" when nothing stops it) and the work that would be lost
    (`problems`, not looked for with --force)."""

    known: worktree.Worktree | None
    ign: worktree.Ignored | None = None
    refusal: str = ""
    problems: list[str] = field(default_factory=list)


def examine(
    project: Project,
    repo: repo_.Repo,
    session: Session,
    force: bool = False,
    listed: list[worktree.Worktree] | None = None,
) -> Verdict:
    """remove's checks, in its order: git's record of the worktree (read under the lock,
    unless `listed` already), the refusal, then, without `force`, the work at risk. Their
    git calls that do not depend on one another (the changes, the ignored files, the
    stashes) start together, and run while the worktree is walked for the refusal."""
    wt = session.worktree
    if listed is None:
        with sessions.locked_repo(project):
            known = worktree.find(repo, wt)
    else:
        known = worktree.find(repo, wt, listed)
    there = known is not None and wt.is_dir()
    with repo_.ahead() as start:
        if there:
            wt_repo = repo_.Repo(wt)
            start(wt_repo, *worktree.IGNORED, text=False)
            if not force:
                start(wt_repo, *worktree.STATUS)
        if not force and known is not None and known.branch == session.branch:
            start(repo, *STASHES)
        why = refusal(project, session, known)
        if why:
            return Verdict(known, refusal=why)
        ign = lost_ignored(project, session) if there else None
        found = [] if force else problems(project, repo, session, known, ign)
    return Verdict(known, ign, problems=found)


def branch_fate(
    project: Project, repo: repo_.Repo, branch: str, force: bool, keep: bool
) -> tuple[bool, str]:
    """(delete it?, why) for the session's branch on remove: deleted when its content is
    in the main branch (merged, or rebased or squashed on a forge), saying how it knew."""
    refs = repo_.refs(repo)
    if branch not in refs:
        return False, ""
    if keep:
        return False, f"kept {branch} (--keep-branch)"
    main_ref = refs.main_branch(project.settings.land_into)
    tip = refs.commits.get(branch, "")
    landed = merged.landed(repo, branch, merged.targets(repo, main_ref, refs), tip)
    if landed is not None:
        return True, f"deleted {branch} ({landed})"
    if force:
        return True, f"deleted {branch}"
    lost = _unmerged(repo, branch, main_ref)
    more = " …" if len(lost) > 1 else ""
    first = f" ({lost[0]}{more})" if lost else ""
    return False, (
        f"kept {branch}: {len(lost)} commit(s) not merged into {main_ref}{first}; "
        "delete it with: " + output.on_host(f"git branch -D {branch}")
    )


def run(
    project: Project,
    name: str,
    srv: tmux.TmuxServer,
    force: bool = False,
    keep_branch: bool = False,
    tasks: ProjectTasks | None = None,
    verdict: Verdict | None = None,
) -> None:
    """Take the session away; never the user's work unless `force` (README: Safety).
    `verdict`: what `examine` found just now (prune's, land's), not asked again."""
    session = sessions.get(project, name)
    chosen = for_remove(project, tasks)
    wt = session.worktree
    # Every `git worktree` call holds the repository lock: git reads all worktrees'
    # records, and another process's half-made one makes it fail.
    with repo_.open_repo(project.main) as repo:
        found = verdict or examine(project, repo, session, force)
        if found.refusal:
            raise TallyError(found.refusal)
        if found.problems and not force:
            raise TallyError(
                f"session {name} has work that would be lost: "
                + "; ".join(found.problems)
                + ". Commit or move what you want to keep (a stash: pop or drop it), "
                "or run: " + output.command("remove", name, "--force")
            )
        known, ign = found.known, found.ign
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
        panes = tmux.windows(srv, session.tmux_name) or {}
        said = sessions.foreign_tmux_said(project, session, panes.values())
        inside = not said and tmux.current_session(srv) == session.tmux_name
        if said:
            output.warn("tmux", f"{said}; left alone")
        elif inside:
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
        elif tmux.kill(srv, session.tmux_name):
            output.step("tmux", f"killed {session.tmux_name}")
        for h in sessions.stop_orphans(session, settle=0.0 if inside else 3.0):
            output.step("processes", f"stopped {h.describe()}, still holding a session port")
        with sessions.locked_repo(project), repo_.ahead() as start:
            # the branch's refs for its fate, read while git deletes the worktree (which
            # moves no ref)
            start(repo, *repo_.REFS)
            if leftover(wt, known):
                _named("worktree", wt.rmdir, _kept(session))
                output.step("worktree", f"removed the empty folder {wt} (a stopped remove's)")
            elif wt.exists() or known is not None:
                _named(
                    "worktree",
                    lambda: _remove_worktree(project, repo, wt),
                    _kept(session),
                )
                output.step("worktree", f"removed {wt}")
                _said_ignored(ign, force)
            # the worktree is gone: from here on, a step that fails is said, and the
            # entry goes all the same (else no command but doctor --fix could clear it)
            late = _late(
                "branch",
                lambda: _remove_branch(project, repo, session.branch, force, keep_branch),
                "; delete it when that is fixed: "
                + output.on_host(f"git branch -D {shlex.quote(session.branch)}"),
            )
    _late("state", lambda: claude_step.forget(project, session))  # the agent's state file
    config = claude.config_path(project.settings.claude_config)

    def forget() -> None:
        state = claude.forget(config, [wt], project.settings.claude_lock_stale)
        if state == "corrupt":
            output.warn("claude", f"{config} is not valid JSON, left untouched")
        elif state == "changed":  # as the dry run says it would
            output.step("claude", f"dropped the entry of {wt} in {config}")

    if _late("claude", forget):
        output.warn("claude", "drop its entry later with: " + output.command("claude_prune"))
    sessions.drop_entry(project, name)
    output.step("registry", f"dropped {name} (ports freed)")
    sessions.exclude_own(project)  # the last session gone: the tool's lines in info/exclude too
    if inside:
        output.step("tmux", f"killing {session.tmux_name}, this window with it")
        tmux.kill(srv, session.tmux_name)
    if late:
        raise TallyError(f"session {name} is removed, but its {late}")


def _remove_worktree(project: Project, repo: repo_.Repo, wt: Path) -> None:
    worktree.unlink_ours(wt, [lk.path for lk in project.settings.links])
    worktree.remove(repo, wt)


def _kept(session: Session) -> str:
    return (
        f"; its tmux session is stopped, its branch {session.branch} and its entry are kept. "
        "Fix that, then run: " + output.command("remove", session.name)
    )


def _named(step: str, fn: Callable[[], object], after: str = "") -> None:
    """Run a step of remove; its failure is one error that names it (and says what is
    left, `after`)."""
    try:
        fn()
    except (TallyError, OSError) as e:
        why = f"{e.strerror} ({e.filename})" if isinstance(e, OSError) else str(e)
        raise TallyError(f"{step} step failed: {why}{after}") from None


def _late(step: str, fn: Callable[[], None], hint: str = "") -> str:
    """Run a step of remove that comes after the worktree is gone: its failure is said
    (and returned, "" when it went well), never left to stop the rest."""
    try:
        fn()
    except (TallyError, OSError) as e:
        said = f"{step} step failed: {e}{hint}"
        output.warn(step, said)
        return said
    return ""


def _said_ignored(ign: worktree.Ignored | None, force: bool, plan: bool = False) -> None:
    """The ignored files that went (`plan`: would go) with the worktree."""
    if ign is None or not ign.files:
        return
    lost = f"{ign.files} git-ignored file(s): {ignored_shown(ign)}"
    kept = ""
    if ign.protected and force:
        kept = f"(--force) what tally.protect keeps: {_paths_shown(ign.protected)}"
    if plan:
        plan_line("ignored", "delete " + lost)
        if kept:
            plan_line("ignored", "delete " + kept)
        return
    output.step("ignored", "deleted " + lost)
    if kept:
        output.warn("ignored", "deleted " + kept)


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
                    f"{step.name} step failed: {e}; fix it, or remove anyway with: "
                    + output.command("remove", ctx.session.name, "--force")
                ) from None
            output.warn(step.name, f"failed: {e}; removing anyway (--force)")


def _remove_branch(
    project: Project, repo: repo_.Repo, branch: str, force: bool, keep: bool
) -> None:
    delete, why = branch_fate(project, repo, branch, force, keep)
    if delete:
        # git refuses a branch checked out in another worktree: asked only when it does
        if repo_.git(repo, "branch", "-D", branch).returncode != 0:
            for w in worktree.listing(repo):
                if w.branch == branch:
                    output.warn("branch", f"kept {branch}: checked out at {w.path}")
                    return
            repo_.run(repo, "branch", "-D", branch)  # its own error, said as such
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
        listed = worktree.listing(repo)  # a dry run changes nothing: one reading serves
        found = examine(project, repo, session, force, listed)
        if found.refusal:
            refuse_lines(
                [found.refusal + " (--force does not change this)"], "nothing would be removed"
            )
            return False
        if found.problems:
            refuse_lines(
                ["work would be lost: " + "; ".join(found.problems)],
                "nothing would be removed without --force",
            )
            return False
        known, ign = found.known, found.ign
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
        panes = tmux.windows(srv, session.tmux_name)
        other = sessions.foreign_tmux(session, (panes or {}).values())
        running = panes is not None and not other
        inside = running and tmux.current_session(srv) == session.tmux_name
        if other:
            plan_line("tmux", f"leave {session.tmux_name} alone: it works in {other}")
        elif running and not inside:
            plan_line("tmux", f"kill {session.tmux_name}")
        when = " if it outlives the tmux session" if running and not inside else ""
        for h in sessions.orphans(session):
            plan_line("processes", f"stop {h.describe()}, holding a session port{when}")
        if leftover(wt, known):
            plan_line("worktree", f"remove the empty folder {wt} (a stopped remove's)")
        elif wt.exists() or known is not None:
            gone = "" if wt.exists() else " (already gone: drop git's record of it)"
            plan_line("worktree", f"remove {wt}{gone}")
            _said_ignored(ign, force, plan=True)
        delete, why = branch_fate(project, repo, session.branch, force, keep_branch)
        elsewhere = [
            w.path for w in listed if w.branch == session.branch and not worktree.same(w.path, wt)
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
