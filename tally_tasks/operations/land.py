"""`land`: bring a session's branch into the main branch, then remove the session.

Every method first makes, in the session's worktree, the commit the main branch will point
at, then runs ``hooks.pre_land`` there (on what would land), then fast-forwards the main
branch to it in the main checkout:

- rebase: the branch rebased onto the main branch;
- squash: the branch made one commit on its merge base first (so only its combined change
  can conflict), then rebased;
- merge: a merge commit of the main branch (first parent) and the branch; the branch
  fast-forwards to it too.

Any conflict or failure, and Ctrl-C, leaves the repository as it was: the rebase or merge
aborted, the branch back where it was, the worktree's index restored byte for byte, the
main branch unmoved. Signals wait for a safe point (`_Shield`): git is never stopped
halfway, while the pre_land hook can be.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from .. import hooks, merged, output, sessions, tmux, worktree
from .. import repo as repo_
from ..config import LAND_METHODS
from ..errors import TallyError
from ..session import Project, Session, render
from ..steps.base import plan_line, refuse_lines
from ..steps.project import ProjectTasks
from . import remove as remove_

# What must never change in a rebase run for us: other branches (update-refs), a stash of
# work (autostash; the worktree is clean anyway), commits reordered (autosquash).
_REBASE = (
    *("-c", "rebase.updateRefs=false"),
    *("-c", "rebase.autoStash=false"),
    *("-c", "rebase.autoSquash=false"),
)
_IN_PROGRESS = {
    "rebase-merge": "rebase",
    "rebase-apply": "rebase",
    "MERGE_HEAD": "merge",
    "CHERRY_PICK_HEAD": "cherry-pick",
    "REVERT_HEAD": "revert",
}


@dataclass
class Plan:
    session: Session
    into: str  # the main branch
    into_old: str  # its commit before landing
    tip: str  # the session branch's commit before landing
    base: str  # their merge base
    commits: list[str] = field(default_factory=list)  # "abc1234 subject", oldest first
    landed: merged.Landed | None = None  # its content is in the main branch already


def check(project: Project, name: str, method: str, message: str = "") -> Plan:
    """What `land` would do, or why it refuses (TallyError); changes nothing."""
    return _check(project, name, method, message)[0]


def _check(
    project: Project, name: str, method: str, message: str = ""
) -> tuple[Plan, remove_.Verdict]:
    """`check`, with what remove's checks found (clear: else it refused)."""
    if method not in LAND_METHODS:
        raise TallyError(f"unknown land method {method!r}; use one of " + ", ".join(LAND_METHODS))
    if message and method == "rebase":
        raise TallyError("--message is for --squash and --merge (a rebase keeps its commits)")
    session = sessions.get(project, name)
    wt = session.worktree
    if not wt.is_dir():
        raise TallyError(
            f"worktree {wt} is gone, so session {name} has nothing to land; drop it with: "
            + output.command("remove", name)
        )
    repo = repo_.Repo(project.main)
    verdict = remove_.examine(project, repo, session)
    if verdict.refusal:
        raise TallyError(verdict.refusal)
    if verdict.problems:
        raise TallyError(
            f"session {name} cannot land: " + "; ".join(verdict.problems) + ". Commit or move "
            "what you want to keep (a stash: pop or drop it), then land again"
        )
    refs = repo_.refs(repo)  # one git call: the main branch, the checked-out one, the tips
    into = refs.main_branch(project.settings.land_into)
    current = refs.current
    if current != into:
        switch = output.on_host(f"git -C {_q(project.main)} switch {into}")
        raise TallyError(
            f"the main checkout is on {current or 'a detached HEAD'}, not {into}; "
            f"switch it with: {switch}, then land again"
        )
    busy = in_progress(repo)
    if busy:
        raise TallyError(
            f"the main checkout is in the middle of a {busy}; finish or abort it there "
            "first, then land again"
        )
    into_old, tip = refs.commits[into], refs.commits.get(session.branch, "")
    if not tip:
        raise TallyError(
            f"branch {session.branch} does not exist, so session {name} has nothing to land; "
            "drop it with: " + output.command("remove", name)
        )
    landed = merged.landed(repo, session.branch, merged.targets(repo, into, refs), tip)
    if (
        landed is not None
        and landed.how == "merged"
        and merged.untouched(project.common_dir, session.branch)
    ):
        raise TallyError(
            f"{session.branch} has no commit of its own yet: nothing to land. Commit your "
            "work first, or drop the session with: " + output.command("remove", name)
        )
    if landed is not None:
        return Plan(session, into, into_old, tip, tip, landed=landed), verdict
    base = repo_.run(repo, "merge-base", into_old, tip).strip()
    commits = repo_.run(repo, "log", "--reverse", "--format=%h %s", f"{into_old}..{tip}")
    touched = repo_.run(repo, "diff", "--name-only", "-z", "--no-renames", base, tip)
    mine = {line[3:] for line in worktree.user_changes(project.main, set())}
    clash = sorted(set(touched.split("\0")) & mine)
    if clash:
        shown = ", ".join(clash[:8]) + (" …" if len(clash) > 8 else "")
        raise TallyError(
            f"the main checkout has uncommitted changes in {len(clash)} file(s) that landing "
            f"{session.branch} changes: {shown}; commit or stash them there "
            f"({output.on_host(f'git -C {_q(project.main)} stash')}), then land again"
        )
    return Plan(session, into, into_old, tip, base, commits.splitlines()), verdict


def run(
    project: Project,
    name: str,
    srv: tmux.TmuxServer,
    method: str,
    message: str = "",
    keep: bool = False,
    tasks: ProjectTasks | None = None,
) -> None:
    """Land the session's branch in the main branch, then remove the session unless `keep`."""
    plan, checked = _check(project, name, method, message)
    # a landing changes the worktree (and runs pre_land): remove then checks it again
    verdict = checked if plan.landed is not None else None
    branch = plan.session.branch
    if plan.landed is not None:
        output.step("land", f"nothing to land: {branch} is {plan.landed} already")
    else:
        with _Shield() as shield:
            new = _apply(project, plan, method, message, shield)
        output.step("main", f"{plan.into} {plan.into_old[:7]} → {new[:7]}  ({_what(plan, method)})")
        if shield.late:
            output.warn(
                "land",
                f"interrupted after {branch} landed in {plan.into}; the session stays: "
                "remove it with: " + output.command("remove", name),
                to_stderr=True,
            )
            raise KeyboardInterrupt
    if keep:
        output.step("session", f"kept {name} (--keep)")
        return
    try:
        remove_.run(project, name, srv, tasks=tasks, verdict=verdict)
    except TallyError as e:
        if plan.landed is not None:
            raise
        raise TallyError(f"{branch} landed in {plan.into}, but the session stays: {e}") from None


def plan(project: Project, name: str, method: str, message: str = "", keep: bool = False) -> bool:
    """The dry run: what `land` would do, with the commits that would land; False when it
    would refuse."""
    output.info(output.bold(f"Would land session {name} (dry run: nothing changed)"))
    try:
        plan = check(project, name, method, message)
    except TallyError as e:
        refuse_lines([str(e)], "nothing would land")
        return False
    branch = plan.session.branch
    if plan.landed is not None:
        plan_line("land", f"nothing to land: {branch} is {plan.landed} already")
    else:
        onto = f"{plan.into} ({plan.into_old[:7]})"
        if method == "squash":
            title = _squash_message(project, plan, message).partition("\n")[0]
            plan_line("squash", f"{len(plan.commits)} commit(s) into one, onto {onto}: {title}")
        elif method == "merge":
            plan_line("merge", f"{plan.into} into {branch}: {_merge_message(plan, message)}")
        else:
            plan_line("rebase", f"{branch} onto {onto}: {len(plan.commits)} commit(s)")
        for commit in plan.commits:
            plan_line("commit", commit)
        for hook in project.settings.hooks.get("pre_land", ()):
            plan_line("pre-land", render(hook, plan.session.values(project)))
        plan_line("main", f"{plan.into} moves forward ({_what(plan, method)})")
    if keep:
        plan_line("session", f"keep {name} (--keep)")
    else:
        plan_line("remove", f"session {name} and its branch {branch}")
    return True


def _what(plan: Plan, method: str) -> str:
    n = len(plan.commits)
    return {
        "rebase": f"fast-forward, {n} commit(s)",
        "squash": f"one commit, {n} squashed",
        "merge": f"a merge commit, {n} commit(s) merged",
    }[method]


def _q(path: Path) -> str:
    return shlex.quote(str(path))


# --- the landing itself ---------------------------------------------------------------------


def _apply(project: Project, plan: Plan, method: str, message: str, shield: _Shield) -> str:
    """Make the commit, run pre_land on it, move the main branch: all of it or none."""
    wt = repo_.Repo(plan.session.worktree)
    main = repo_.Repo(project.main)
    saved = _Saved.take(wt, main)
    try:
        new = _build(project, wt, plan, method, message)
        done = {"rebase": "rebased onto", "squash": "squashed onto", "merge": "merged with"}
        output.step(method, f"{plan.session.branch} {done[method]} {plan.into} ({new[:7]})")
        shield.check()
        with shield.open():
            hooks.run(project, plan.session, "pre_land")
        _unchanged_by_hook(project, wt, plan, new)
        _advance(main, plan, new)
        return new
    except BaseException:
        _restore(project, wt, main, plan, saved)
        raise


def _build(project: Project, wt: repo_.Repo, plan: Plan, method: str, message: str) -> str:
    """The commit the main branch will point at, made in the worktree (its branch moved)."""
    if method == "squash":
        text = _squash_message(project, plan, message)
        author = _one_author(wt, plan)
        squash = _commit(wt, f"{plan.tip}^{{tree}}", [plan.base], text, author)
        repo_.run(wt, "reset", "-q", "--soft", squash)
    if method in ("rebase", "squash"):
        _step(wt, plan, "rebase", *_REBASE, "rebase", "-q", plan.into_old)
        return repo_.run(wt, "rev-parse", "HEAD").strip()
    _step(
        wt,
        plan,
        "merge",
        "-c",
        "merge.autoStash=false",
        "merge",
        "--no-ff",
        "--no-edit",
        "--no-verify",
        "-q",
        plan.into_old,
    )
    # git made (branch, main); the main branch's history wants (main, branch)
    tree = repo_.run(wt, "rev-parse", "HEAD^{tree}").strip()
    new = _commit(wt, tree, [plan.into_old, plan.tip], _merge_message(plan, message))
    repo_.run(wt, "reset", "-q", "--soft", new)
    return new


def _step(wt: repo_.Repo, plan: Plan, verb: str, *args: str) -> None:
    proc = repo_.git(wt, *args)
    if proc.returncode == 0:
        return
    conflicts = repo_.git(wt, "diff", "--name-only", "--diff-filter=U", "-z").stdout
    files = [f for f in conflicts.split("\0") if f]
    branch, into = plan.session.branch, plan.into
    if files:
        shown = ", ".join(files[:8]) + (" …" if len(files) > 8 else "")
        yourself = output.on_host(f"cd {_q(plan.session.worktree)} && git {verb} {into}")
        raise TallyError(
            f"{verb} of {branch} and {into} stops on a conflict in {shown}; nothing changed. "
            f"Resolve it in the worktree ({yourself}, then commit), or land another way"
        )
    raise _failed(proc, f"git {verb} of {branch} onto {into}")


def _failed(proc: subprocess.CompletedProcess[str], what: str) -> TallyError:
    """What git said, in one line (git without a name and email for commits: the fix)."""
    said = [ln.strip() for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
    if any("identity" in ln for ln in said):
        name = output.on_host('git config --global user.name "Your Name"')
        return TallyError(
            "git does not know who you are, so it cannot make the new commits; tell it with: "
            f"{name} (and user.email); nothing changed"
        )
    last = said[-1].removeprefix("fatal: ").removeprefix("error: ") if said else ""
    return TallyError(f"{what} failed{': ' + last if last else ''}; nothing changed")


def _commit(
    wt: repo_.Repo, tree: str, parents: list[str], text: str, env: dict[str, str] | None = None
) -> str:
    args = ["commit-tree", tree]
    for parent in parents:
        args += ["-p", parent]
    proc = repo_.git(wt, *args, "-m", text, env=env)
    if proc.returncode != 0:
        raise _failed(proc, "git commit-tree")
    return proc.stdout.strip()


def _squash_message(project: Project, plan: Plan, message: str) -> str:
    """--message, else the one commit's own message, else the branch's name over its
    commit subjects (as a forge's squash does)."""
    if message:
        return message
    repo = repo_.Repo(project.main)
    if len(plan.commits) == 1:
        return repo_.run(repo, "log", "-1", "--format=%B", plan.tip).strip()
    subjects = [c.partition(" ")[2] for c in plan.commits]
    return plan.session.branch + "\n\n" + "\n".join(f"* {s}" for s in subjects)


def _merge_message(plan: Plan, message: str) -> str:
    if message:
        return message
    tail = "" if plan.into in ("main", "master") else f" into {plan.into}"
    return f"Merge branch '{plan.session.branch}'{tail}"


def _one_author(wt: repo_.Repo, plan: Plan) -> dict[str, str] | None:
    """The branch's author when all its commits have one: the squash keeps it."""
    out = repo_.run(wt, "log", "--format=%an%x00%ae", f"{plan.into_old}..{plan.tip}")
    authors = set(out.splitlines())
    if len(authors) != 1:
        return None
    name, _, email = authors.pop().partition("\0")
    return {"GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": email}


def _unchanged_by_hook(project: Project, wt: repo_.Repo, plan: Plan, new: str) -> None:
    """pre_land ran on `new`: it must still be what lands, with nothing left uncommitted
    (a formatter that changed files says the branch as committed does not pass)."""
    now = repo_.git(wt, "rev-parse", f"refs/heads/{plan.session.branch}").stdout.strip()
    changes = [c.strip() for c in worktree.user_changes(plan.session.worktree, project.own_paths())]
    if now != new:
        what = f"moved {plan.session.branch} (to {now[:7]})"
    elif changes:
        what = "left changes: " + ", ".join(changes[:8]) + (" …" if len(changes) > 8 else "")
    else:
        return
    raise TallyError(
        f"the pre_land hook {what}; nothing landed. Commit what it changes in the worktree, "
        "then land again"
    )


def _advance(main: repo_.Repo, plan: Plan, new: str) -> None:
    """Fast-forward the main branch to `new` in the main checkout: its files follow, and
    its uncommitted changes elsewhere stay (git refuses, touching nothing, when one is in
    the way)."""
    if repo_.current_branch(main) != plan.into:
        raise TallyError(f"the main checkout left {plan.into} meanwhile; nothing landed")
    proc = repo_.git(
        main,
        "-c",
        "merge.autoStash=false",
        "merge",
        "--ff-only",
        "--no-stat",
        "-q",
        new,
        env={"GIT_REFLOG_ACTION": f"land {plan.session.branch}"},
    )
    if proc.returncode != 0:
        said = [ln.strip() for ln in proc.stderr.splitlines() if ln.strip()]
        raise TallyError(
            f"{plan.into} cannot move forward in the main checkout ({'; '.join(said[:6])}); "
            "nothing landed"
        )


# --- putting everything back ---------------------------------------------------------------


@dataclass
class _Saved:
    """Files git rewrites even when an operation is undone: the worktree's index (its
    stat data) and both checkouts' ORIG_HEAD. None: the file was not there."""

    files: dict[Path, bytes | None]

    @classmethod
    def take(cls, wt: repo_.Repo, main: repo_.Repo) -> _Saved:
        paths = [*_git_paths(wt, "index", "ORIG_HEAD"), *_git_paths(main, "ORIG_HEAD")]
        files: dict[Path, bytes | None] = {}
        for path in paths:
            try:
                files[path] = path.read_bytes()
            except FileNotFoundError:
                files[path] = None
        return cls(files)

    def put_back(self) -> None:
        for path, data in self.files.items():
            _put_back(path, data)


def _git_paths(repo: repo_.Repo, *names: str) -> list[Path]:
    args = ["rev-parse", "--path-format=absolute"]
    for name in names:
        args += ["--git-path", name]
    return [Path(p) for p in repo_.run(repo, *args).splitlines()]


def _put_back(path: Path, data: bytes | None) -> None:
    """Write `path` as git does (under ``<path>.lock``, then a rename); skipped while a git
    holds that lock."""
    lock = path.with_name(path.name + ".lock")
    try:
        fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return
    try:
        with os.fdopen(fd, "wb") as f:
            if data is not None:
                f.write(data)
        if data is None:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            lock.unlink()
        else:
            os.replace(lock, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            lock.unlink()
        raise


def in_progress(repo: repo_.Repo) -> str:
    """The git operation a checkout is in the middle of ("" for none)."""
    for path, what in zip(_git_paths(repo, *_IN_PROGRESS), _IN_PROGRESS.values(), strict=True):
        if path.exists():
            return what
    return ""


def _restore(project: Project, wt: repo_.Repo, main: repo_.Repo, plan: Plan, saved: _Saved) -> None:
    """Undo `_apply` from wherever it stopped; say what could not be undone."""
    branch = plan.session.branch
    busy = in_progress(wt)
    if busy in ("rebase", "merge"):
        repo_.git(wt, busy, "--abort")
    stuck = []
    now = repo_.git(wt, "rev-parse", f"refs/heads/{branch}").stdout.strip()
    if now != plan.tip:
        on_branch = repo_.current_branch(wt) == branch
        back = (
            repo_.git(wt, "reset", "-q", "--keep", plan.tip)
            if on_branch
            else repo_.git(wt, "update-ref", f"refs/heads/{branch}", plan.tip, now)
        )
        if back.returncode != 0:
            back_cmd = f"git -C {_q(plan.session.worktree)} reset --keep {plan.tip[:12]}"
            stuck.append(
                f"{branch} is still at {now[:7]}; put it back with: {output.on_host(back_cmd)}"
            )
    main_now = repo_.git(main, "rev-parse", f"refs/heads/{plan.into}").stdout.strip()
    if main_now != plan.into_old:
        stuck.append(f"{plan.into} moved to {main_now[:7]} (was {plan.into_old[:7]})")
    if not stuck and not worktree.user_changes(plan.session.worktree, project.own_paths()):
        saved.put_back()
    for problem in stuck:
        output.warn("land", f"could not undo: {problem}", to_stderr=True)


# --- signals --------------------------------------------------------------------------------

_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


class _Shield:
    """Ctrl-C (and SIGTERM, SIGHUP) wait while git changes the repository: they are
    blocked, and the git processes started meanwhile inherit that, so a Ctrl-C at the
    terminal cannot stop one halfway either. `check` raises KeyboardInterrupt for one that
    came meanwhile; inside `open` they interrupt at once (the pre_land hook). One that
    comes during the last step is `late`: the landing is done by then."""

    def __init__(self) -> None:
        self.late = False
        self._mask: set[int] = set()
        self._handlers: dict[int, object] = {}

    def __enter__(self) -> _Shield:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGHUP):
                if signal.getsignal(sig) is signal.SIG_DFL:  # ignored (nohup) stays ignored
                    self._handlers[sig] = signal.signal(sig, _interrupt)
        self._mask = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
        return self

    def _pending(self) -> bool:
        pending = signal.sigpending() & _SIGNALS
        for sig in pending:
            signal.sigwait({sig})  # taken: it was pending, so this returns at once
        return bool(pending)

    def check(self) -> None:
        if self._pending():
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def open(self) -> Iterator[None]:
        self.check()
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)
        try:
            yield
        finally:
            signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)

    def __exit__(self, kind: object, error: object, tb: object) -> None:
        # a signal that came while the landing was undone adds nothing to the error
        self.late = self._pending() and kind is None
        signal.pthread_sigmask(signal.SIG_SETMASK, self._mask)
        for sig, handler in self._handlers.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
