"""Git worktrees: create, inspect, remove. Never follows a link into shared data."""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

from . import repo as repo_
from .errors import TallyError


class Worktree(NamedTuple):
    """One of git's worktree records (`git worktree list`)."""

    path: Path
    branch: str | None  # None when detached
    prunable: bool = False
    locked: str | None = None  # the reason ("" for none given); None when not locked


def listing(repo: repo_.Repo) -> list[Worktree]:
    """Every worktree git knows of (the main checkout first)."""
    return _parsed(repo_.run(repo, *LIST))


def listing_begun(repo: repo_.Repo) -> Callable[[], list[Worktree]]:
    """`listing`, started now, read when the returned function is called."""
    result = repo_.begun(repo, *LIST)
    return lambda: _parsed(result())


LIST = ("worktree", "list", "--porcelain", "-z")


def _parsed(out: str) -> list[Worktree]:
    result: list[Worktree] = []
    for block in out.split("\0\0"):
        fields = [f for f in block.split("\0") if f]
        if not fields:
            continue
        path: Path | None = None
        branch = None
        prunable = False
        locked = None
        for f in fields:
            key, _, value = f.partition(" ")
            if key == "worktree":
                path = Path(value)
            elif key == "branch":
                branch = value.removeprefix("refs/heads/")
            elif key == "prunable":
                prunable = True
            elif key == "locked":
                locked = value
        if path is not None:
            result.append(Worktree(path, branch, prunable, locked))
    return result


def find(repo: repo_.Repo, path: Path, listed: list[Worktree] | None = None) -> Worktree | None:
    """git's record of the worktree at `path` (`listed`: `listing(repo)`, read already)."""
    worktrees = listing(repo) if listed is None else listed
    if not os.path.exists(path):  # as `same` compares then: by absolute path, one stat
        target = os.path.abspath(path)
        return next((wt for wt in worktrees if os.path.abspath(wt.path) == target), None)
    for wt in worktrees:
        if same(wt.path, path):
            return wt
    return None


def same(a: Path, b: Path) -> bool:
    """The same folder (by inode when both exist, else by absolute path)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)


def create(repo: repo_.Repo, path: Path, branch: str) -> str:
    """Make the worktree at `path` on `branch`; says what it did.

    Idempotent: a worktree already there on that branch is left as it is. The caller
    serialises this per repository (concurrent ``git worktree add`` fails inside git).
    """
    existing = find(repo, path)
    if existing is not None and existing.locked == INITIALIZING:
        existing = _settle(repo, path)
    if existing is not None:
        if existing.prunable or not path.is_dir():
            repo_.run(repo, "worktree", "prune")
        elif existing.branch != branch:
            raise TallyError(
                f"{path} is a worktree on {existing.branch or 'a detached HEAD'}, not {branch}; "
                "check it out there or remove that worktree"
            )
        else:
            return "exists"
    if path.exists() or path.is_symlink():
        raise TallyError(
            f"{path} already exists and is not this session's worktree; "
            "move it away or set tally.worktrees to another folder"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    refs = repo_.refs(repo)  # one git call for what follows: the branch, clashes, HEAD
    if branch in refs:
        for wt in listing(repo):
            if wt.branch == branch:
                raise TallyError(
                    f"branch {branch} is already checked out at {wt.path}; "
                    "pick another session name or switch that checkout to another branch"
                )
        repo_.run(repo, "worktree", "add", str(path), branch)
        return f"existing branch {branch}"
    clash = refs.clash(branch)
    if clash:
        raise TallyError(clash)
    # on a branch, HEAD has a commit; detached or unborn, git says which
    if refs.current is None and not repo_.ok(repo, "rev-parse", "--verify", "--quiet", "HEAD"):
        raise TallyError(
            f"{repo.path} has no commit yet, so a branch has nothing to start from; "
            "make a first commit, then add sessions"
        )
    base = refs.current or "HEAD"
    try:
        repo_.run(repo, "worktree", "add", "-b", branch, str(path), "HEAD")
    except BaseException:
        # git may have made the branch before it failed (or was interrupted): a stray
        # branch would pass for the user's own on the next try
        if repo_.branch_exists(repo, branch) and not any(w.branch == branch for w in listing(repo)):
            repo_.ok(repo, "branch", "-D", branch)
        raise
    return f"new branch {branch} from {base}"


INITIALIZING = "initializing"  # git's lock reason while `git worktree add` checks out


def _settle(repo: repo_.Repo, path: Path, wait: float = 10.0) -> Worktree | None:
    """A worktree git is still making (`locked initializing`): wait for the `git worktree
    add` that makes it; if it is gone (its tally-session was killed), clear the half."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and _git_making(path):
        now = find(repo, path)
        if now is None or now.locked != INITIALIZING:
            return now
        time.sleep(0.1)
    now = find(repo, path)
    if now is None or now.locked != INITIALIZING:
        return now
    repo_.ok(repo, "worktree", "remove", "--force", "--force", str(path))
    if path.is_dir() and not path.is_symlink():
        import shutil  # here and in remove: what list and add run needs none of it

        shutil.rmtree(path)
    repo_.run(repo, "worktree", "prune")
    return find(repo, path)


def half_made(repo: repo_.Repo, path: Path, known: Worktree | None = None) -> bool:
    """Is `path` a worktree a stopped `git worktree add` left locked "initializing"?
    (`known`: git's record of it, when the caller has just read it.)"""
    known = known or find(repo, path)
    return known is not None and known.locked == INITIALIZING and not _git_making(path)


def _git_making(path: Path) -> bool:
    """Is a `git worktree add` of `path` still running? (/proc; where there is none, say
    yes, and the caller waits)."""
    proc = Path("/proc")
    if not (proc / "self" / "cmdline").exists():
        return True
    want = os.fsencode(str(path))
    for pid_dir in proc.iterdir():
        if not pid_dir.name.isdigit():
            continue
        try:
            argv = (pid_dir / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"worktree" in argv and b"add" in argv and want in argv:
            return True
    return False


# no optional locks: a question must not rewrite the index (land keeps it bit for bit)
STATUS = ("--no-optional-locks", "status", "--porcelain=v1", "-z", "--untracked-files=all")
# the ignored folders (git's own, not looked through) and files of a worktree
IGNORED = ("ls-files", "-z", "--others", "--ignored", "--exclude-standard", "--directory")


def user_changes(path: Path, ours: set[str]) -> list[str]:
    """``git status`` lines of the user's changes, leaving out the tool's own paths.

    `ours` holds paths relative to the worktree (links and copies the tool made). A
    ``node_modules/`` ignore rule does not match a symlink, so links show up as
    untracked unless left out here.
    """
    with repo_.open_repo(path) as wt_repo:
        out = repo_.run(wt_repo, *STATUS)
    lines: list[str] = []
    entries = out.split("\0")
    i = 0
    while i < len(entries):
        entry = entries[i]
        i += 1
        if len(entry) < 4:
            continue
        code, rel = entry[:2], entry[3:]
        if code[0] in "RC":
            i += 1  # the rename's source path follows
        if code == "??" and _is_ours(rel, ours):
            continue
        lines.append(f"{code} {rel}")
    return lines


class Ignored(NamedTuple):
    """The git-ignored files in a worktree that are not the tool's own: each ignored folder
    (git's own, without looking through it) and loose file with its number of files, and
    those `protect` patterns match."""

    entries: dict[str, int]  # "backend/app/__pycache__/" -> 12 files; "x.log" -> 1
    protected: list[str]

    @property
    def files(self) -> int:
        return sum(self.entries.values())


def ignored(path: Path, ours: set[str], protect: Sequence[str] = ()) -> Ignored:
    """What git ignores in the worktree at `path` and `remove` would delete with it; the
    tool's own paths (`ours`: links, copies) left out and never looked into, so a
    hard-linked node_modules is not walked. Three git calls: the ignored folders and files
    (git collapses each ignored folder), the files inside those folders, and which of all
    those `protect` (gitignore patterns) matches."""
    with repo_.open_repo(path) as wt_repo:
        listed = repo_.names(wt_repo, *IGNORED)
        # git also lists an untracked folder holding only ignored files, beside them: a
        # folder's entries sort right after it
        tops = sorted(e for e in listed if not _is_ours(e, ours))
        tops = [
            e
            for i, e in enumerate(tops)
            if not (e.endswith("/") and i + 1 < len(tops) and tops[i + 1].startswith(e))
            and not _only_ours(path, e, ours)
        ]
        entries = {e: 0 if e.endswith("/") else 1 for e in tops}
        folders = [e for e in tops if e.endswith("/")]
        if folders:
            for rel in _listing(wt_repo, folders, "--exclude-standard"):
                if _is_ours(rel, ours):
                    continue
                parts = rel.split("/")
                for depth in range(1, len(parts)):
                    top = "/".join(parts[:depth]) + "/"
                    if top in entries:
                        entries[top] += 1
                        break
            # a folder holding only the tool's own files (.claude/ with our settings)
            entries = {e: n for e, n in entries.items() if n or e not in folders}
        protected: list[str] = []
        if protect and tops:
            patterns = [f"--exclude={p}" for p in protect]
            protected = [
                rel for rel in _listing(wt_repo, tops, *patterns) if not _is_ours(rel, ours)
            ]
    return Ignored(entries, sorted(protected))


def _only_ours(path: Path, folder: str, ours: set[str]) -> bool:
    """Does the ignored `folder` (``.claude/``) hold nothing but the tool's own files? Then
    it holds nothing of the user's, known without asking git (only a folder above one of
    `ours` can; the walk stops at the first other file and never enters one of ours)."""
    if not folder.endswith("/") or not any(p.startswith(folder) for p in ours):
        return False
    unread: list[OSError] = []
    for top, dirs, files in os.walk(path / folder, onerror=unread.append):
        rel = os.path.relpath(top, path).replace(os.sep, "/") + "/"
        if any(not _is_ours(rel + f, ours) for f in files):
            return False
        inside = []
        for d in dirs:
            if _is_ours(rel + d, ours):
                continue
            if os.path.islink(os.path.join(top, d)):  # to git, a file
                return False
            inside.append(d)
        dirs[:] = inside
    return not unread  # a folder it could not read: git is asked


def _listing(wt_repo: repo_.Repo, paths: list[str], *excludes: str) -> list[str]:
    """The untracked files under `paths` that `excludes` ignore (``:(literal)``: a name
    holding ``*`` or ``[`` is a name, not a pattern), in calls of at most 1,000 paths (a
    build's thousands of loose ignored files stay under the argument-list limit)."""
    found = []
    for i in range(0, len(paths), 1000):
        pathspecs = [f":(literal){p}" for p in paths[i : i + 1000]]
        found += repo_.names(
            wt_repo, "ls-files", "-z", "--others", "--ignored", *excludes, "--", *pathspecs
        )
    return found


def submodule_commits(path: Path) -> dict[str, list[str]]:
    """Submodule -> its commits that no remote has. A worktree's submodules keep their
    objects in the worktree's own git dir, which goes with it."""
    with repo_.open_repo(path) as wt_repo:
        if not (path / ".gitmodules").is_file():
            return {}
        out = repo_.run(
            wt_repo,
            "submodule",
            "foreach",
            "--quiet",
            "--recursive",
            'git log --format="$displaypath%x09%h %s" HEAD --not --remotes',
        )
    found: dict[str, list[str]] = {}
    for line in out.splitlines():
        sub, _, commit = line.partition("\t")
        if commit:
            found.setdefault(sub, []).append(commit)
    return found


def detached_commits(path: Path, on_branch: bool = False) -> list[str]:
    """Commits a detached HEAD in the worktree holds that no branch, tag or remote has
    (`on_branch`: git's worktree list said it is on one: nothing to ask)."""
    if on_branch:
        return []  # the branch keeps its commits
    with repo_.open_repo(path) as wt_repo:
        if repo_.ok(wt_repo, "symbolic-ref", "-q", "HEAD"):
            return []  # on a branch: the branch keeps its commits
        out = repo_.run(
            wt_repo, "log", "--format=%h %s", "HEAD", "--not", "--branches", "--tags", "--remotes"
        )
    return out.splitlines()


def _is_ours(rel: str, ours: set[str]) -> bool:
    rel = rel.rstrip("/")
    return any(rel == p or rel.startswith(p + "/") for p in ours)


def unlink_ours(path: Path, links: list[str]) -> None:
    """Take away the tool's symlinks before removal, so nothing can follow them."""
    for rel in links:
        target = path / rel
        if target.is_symlink():
            target.unlink()


def remove(repo: repo_.Repo, path: Path) -> bool:
    """Remove the worktree folder and git's record of it; False when git knows no such worktree.

    A folder at `path` that git does not know as a worktree is never deleted here, nor
    the main checkout.
    """
    known = listing(repo)
    if known and same(known[0].path, path):
        raise TallyError(f"{path} is the main checkout, not a session's worktree; not removed")
    found = next((wt for wt in known if same(wt.path, path)), None)
    if found is None:
        return False
    if found.locked is not None and not path.is_dir():
        repo_.ok(repo, "worktree", "unlock", str(path))  # else prune keeps its record
    removed = False  # by git: folder and record
    if path.is_dir():
        try:
            repo_.run(repo, "worktree", "remove", "--force", "--force", str(path))
            removed = not os.path.lexists(path)
        except TallyError:
            if path.is_symlink() or not path.is_dir():
                raise
            # git refused (a broken .git file) or stopped halfway: a read-only folder (Go's
            # module cache, some npm packages) stops it at its first file, and git forgets
            # the worktree all the same. Opened up, the rest goes below; the folders are
            # walked only then, not on every remove.
            make_removable(path)
    if path.is_dir() and not path.is_symlink():
        # rmtree unlinks symlinks, it never follows them
        import shutil

        try:
            shutil.rmtree(path)
        except OSError as e:
            raise TallyError(
                f"cannot delete the worktree {path}: {e.strerror} ({e.filename})"
            ) from None
    if not removed:  # git's record of a folder gone another way
        repo_.run(repo, "worktree", "prune")
    return True


def undeletable(path: Path, ours: list[str]) -> Path | None:
    """The first folder that stops `path` from being deleted by this user: its parent
    when that is not writable, or a folder in it, not empty, neither writable nor this
    user's to open up. None when all of it can go. The tool's own trees (`ours`,
    relative) are not walked: it built them, every folder in them is its user's."""
    if not os.access(path.parent, os.W_OK | os.X_OK):
        return path.parent
    if path.is_symlink() or not path.is_dir():
        return None
    me = os.geteuid()
    skip = {os.path.join(path, rel.rstrip("/")) for rel in ours}

    def blocks(folder: str) -> bool:
        try:
            if os.lstat(folder).st_uid == me or os.access(folder, os.W_OK | os.X_OK):
                return False
            with os.scandir(folder) as entries:
                return next(entries, None) is not None
        except OSError:
            return os.path.lexists(folder)  # not even to be listed: it cannot be emptied

    if blocks(str(path)):
        return path
    for top, dirs, _ in os.walk(path):
        dirs[:] = [d for d in dirs if os.path.join(top, d) not in skip]
        for d in dirs:
            if blocks(os.path.join(top, d)):
                return Path(top, d)
    return None


def make_removable(path: Path) -> None:
    """Give the owner rwx on every folder in `path`, so it can be emptied. Folders only
    (a file of a hard-linked tree is main's file too), never through a symlink: nothing
    outside `path` changes."""

    def open_up(folder: str | Path) -> None:
        try:
            mode = os.lstat(folder).st_mode
            if stat.S_ISDIR(mode) and mode & 0o700 != 0o700:
                os.chmod(folder, stat.S_IMODE(mode) | 0o700)
        except OSError:
            pass  # gone meanwhile, or not ours: rmtree says so if it matters

    if path.is_symlink() or not path.is_dir():
        return
    open_up(path)
    for top, dirs, _ in os.walk(path):  # top-down: each folder opened before it is listed
        for d in dirs:
            open_up(os.path.join(top, d))
