"""The main repository: finding it from anywhere inside it, and running git in it."""

from __future__ import annotations

import contextlib
import os
import re
import stat
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

from .errors import TallyError

# A git hook or a wrapper can leave these behind; they would point every git call at
# the wrong repository (pre-commit's no_git_env does the same).
_GIT_ENV = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_COMMON_DIR", "GIT_PREFIX")


def clean_git_env() -> None:
    for key in _GIT_ENV:
        os.environ.pop(key, None)


# find_main's answers in this process (tally-session asks once for its settings, and once
# more in the task), used while the git dir they name is there
_found: dict[str, tuple[Path, Path]] = {}


def here() -> Path:
    """The current folder, or what to do when it is gone."""
    try:
        return Path.cwd()
    except FileNotFoundError:
        raise TallyError(
            "the current folder no longer exists (a removed worktree?); cd to the main "
            "checkout and run the command again"
        ) from None


def find_main(start: Path) -> tuple[Path, Path]:
    """(main checkout, git common dir) for `start`: the main repo or any of its worktrees."""
    clean_git_env()
    known = _found.get(str(start))
    if known is not None and known[1].is_dir():
        return known
    common = _discovered(start)
    if common is not None:
        _found[str(start)] = (common.parent, common)
        return common.parent, common
    try:
        proc = subprocess.run(
            ["git", "rev-parse", "--path-format=absolute", "--git-common-dir"],
            cwd=start,
            capture_output=True,
            text=True,
        )
    except FileNotFoundError:
        raise TallyError("git is not installed or not on PATH; install git first") from None
    except (NotADirectoryError, PermissionError) as e:
        raise TallyError(f"cannot run git in {start}: {e.strerror}") from None
    if proc.returncode != 0:
        raise TallyError(
            f"{start} is not in a git repository; run this in the project's main checkout "
            "or one of its worktrees"
        )
    common = Path(proc.stdout.strip())
    if common.name != ".git":
        raise TallyError(
            f"{common} is a bare repository or a separate git dir; tally-tasks needs a "
            "main checkout with a .git folder"
        )
    _found[str(start)] = (common.parent, common)
    return common.parent, common


# what makes git's discovery other than the plain walk up (or its answer other than ours)
_DISCOVERY_ENV = (
    "GIT_CEILING_DIRECTORIES",
    "GIT_DISCOVERY_ACROSS_FILESYSTEM",
    "GIT_OBJECT_DIRECTORY",
)


def _discovered(start: Path) -> Path | None:
    """What ``git rev-parse --path-format=absolute --git-common-dir`` says in `start`, found
    without running git where git's rule is plain: walking up from `start` (its real path)
    to the first folder with a valid ``.git`` (a repository folder, or a worktree's file
    naming one), on one filesystem, everything owned by this user (git's safe.directory
    check). None, to ask git, for anything else: a folder or file that is not what it
    should be, another owner, a sudo'd root, the variables that change the walk."""
    if any(os.environ.get(k) for k in _DISCOVERY_ENV) or not hasattr(os, "geteuid"):
        return None
    if os.geteuid() == 0 and os.environ.get("SUDO_UID"):
        return None
    uid = os.geteuid()
    try:
        folder = Path(os.path.realpath(start))
        top = folder.stat()
    except OSError:
        return None
    dev = top.st_dev
    for here_ in (folder, *folder.parents):
        try:
            top = here_.stat()
        except OSError:
            return None
        if top.st_dev != dev:
            return None  # git stops at a filesystem's edge
        try:
            dot = (here_ / ".git").lstat()
        except FileNotFoundError:
            if _repository(here_, here_):
                return None  # a bare repository, or inside .git: git has rules of its own
            continue
        except OSError:
            return None
        if top.st_uid != uid or dot.st_uid != uid:
            return None
        if stat.S_ISDIR(dot.st_mode):
            common = here_ / ".git"
            return common if _repository(common, common) else None
        if not stat.S_ISREG(dot.st_mode):
            return None
        return _worktree_common(here_ / ".git", uid)
    return None


def worktree_gitdir(gitfile: Path, uid: int) -> Path | None:
    """The git dir a worktree's ``.git`` file `gitfile` names, when it is owned by `uid`
    (None: not such a file, or another's)."""
    try:
        text = gitfile.read_text()
        name = text.removeprefix("gitdir: ").strip()
        if not text.startswith("gitdir: ") or not name or "\n" in name:
            return None
        gitdir = Path(os.path.realpath(gitfile.parent / name))
        return gitdir if gitdir.stat().st_uid == uid else None
    except (OSError, UnicodeError):
        return None


def _worktree_common(gitfile: Path, uid: int) -> Path | None:
    """The common git dir of the worktree whose ``.git`` file is `gitfile` (None: ask git)."""
    gitdir = worktree_gitdir(gitfile, uid)
    if gitdir is None:
        return None
    try:
        common_name = (gitdir / "commondir").read_text().strip()
    except (OSError, UnicodeError):
        return None
    common = Path(os.path.realpath(gitdir / common_name))
    return common if _repository(gitdir, common) else None


def _repository(gitdir: Path, common: Path) -> bool:
    """git's test of a repository folder: HEAD in it, objects and refs in the common dir."""
    return (
        (gitdir / "HEAD").is_file() and (common / "objects").is_dir() and (common / "refs").is_dir()
    )


def in_worktree(folder: Path, main: Path) -> bool:
    """Is `folder` inside a worktree of `main`'s repository other than `main` itself?"""
    try:
        proc = subprocess.run(
            ["git", "rev-parse", "--path-format=absolute", "--show-toplevel", "--git-common-dir"],
            cwd=folder,
            capture_output=True,
            text=True,
        )
    except OSError:
        return False
    lines = proc.stdout.splitlines()
    if proc.returncode != 0 or len(lines) != 2:
        return False
    top, common = Path(lines[0]), Path(lines[1])
    return common.parent == main and top.resolve() != main.resolve()


class Repo:
    """A git checkout to run git in: an argument list, an explicit cwd, no shell.

    Not GitPython: it expands ``$VARS`` in every path it runs git in (even with
    ``expand_vars=False``), so a checkout under a folder named ``$HOME`` ran git
    elsewhere; and each ``Repo`` leaves ``git cat-file`` children running.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def __enter__(self) -> Repo:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def __repr__(self) -> str:
        return f"Repo({str(self.path)!r})"


def open_repo(path: Path) -> Repo:
    if not Path(path).is_dir():
        raise TallyError(f"{path} is not a git repository")
    return Repo(path)


def _git(
    repo: Repo, args: tuple[str, ...], env: dict[str, str] | None = None, text: bool = True
) -> subprocess.CompletedProcess[Any]:
    started = _ahead.pop((str(repo.path), args, text), None) if env is None else None
    if started is not None:
        return _answer(started)
    try:
        return subprocess.run(
            ["git", *args],
            cwd=repo.path,
            capture_output=True,
            env={**os.environ, **env} if env else None,
            text=text,
            errors="replace" if text else None,
        )
    except FileNotFoundError:
        raise _not_found(repo) from None


def _not_found(repo: Repo) -> TallyError:
    if not repo.path.is_dir():
        return TallyError(f"{repo.path} does not exist")
    return TallyError("git is not installed or not on PATH; install git first")


def begun(repo: Repo, *args: str) -> Callable[[], str]:
    """`run`, started now and read when the returned function is called: git works while
    the caller asks something else (a failure is raised then, as `run` raises it). For
    `list`, which changes nothing: `ahead`, which ends what was not asked and holds
    Ctrl-C while it starts, would import signal and threading into `tally-session list`
    (2 ms of its 79)."""
    try:
        proc = _popen(repo, args, text=True)
    except FileNotFoundError:
        raise _not_found(repo) from None

    def result() -> str:
        done = _answer(proc)
        if done.returncode != 0:
            raise _failed(args, done.stderr, done.returncode)
        return str(done.stdout)

    return result


def _popen(repo: Repo, args: tuple[str, ...], text: bool) -> subprocess.Popen[Any]:
    """git started, its output to be read by `_answer` (as `_git` reads it)."""
    return subprocess.Popen(
        ["git", *args],
        cwd=repo.path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=text,
        errors="replace" if text else None,
    )


def _answer(proc: subprocess.Popen[Any]) -> subprocess.CompletedProcess[Any]:
    """What a started git call said, once it has ended."""
    try:
        out, err = proc.communicate()
    except BaseException:  # Ctrl-C while waiting: ended, as subprocess.run ends its own
        _end(proc)
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


# git calls started ahead of the question (`ahead`), by (folder, arguments, text)
_ahead: dict[tuple[str, tuple[str, ...], bool], subprocess.Popen[Any]] = {}


@contextlib.contextmanager
def ahead() -> Iterator[Callable[..., None]]:
    """``start(repo, *args, text=True)``: a git call begun now, before it is asked, so
    that questions which do not depend on one another run at once, and while the caller
    does other work. `run`, `names`, `git` or `ok` asking the same call (same folder,
    arguments and mode, no `env`) in the block wait for that one's answer instead of
    starting it again; what each of them says of an answer, or a failure, is as before.
    A call not asked by the end of the block (an error, Ctrl-C) is ended there: none
    is left running."""
    from .interrupts import held  # here: list, which starts nothing ahead, needs none of it

    mine: list[tuple[str, tuple[str, ...], bool]] = []

    def start(repo: Repo, *args: str, text: bool = True) -> None:
        key = (str(repo.path), args, text)
        if key in _ahead:
            return
        # Ctrl-C waits until the process is where the block's end finds it
        with held():
            try:
                proc = _popen(repo, args, text)
            except OSError:
                return  # asked later, it says why (no git, no such folder) as any call does
            _ahead[key] = proc
            mine.append(key)

    try:
        yield start
    finally:
        for key in mine:
            proc = _ahead.pop(key, None)
            if proc is not None:
                _end(proc)


def _end(proc: subprocess.Popen[Any]) -> None:
    """End a git call nobody waits for any more, and reap it."""
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    for pipe in (proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()


def _failed(args: tuple[str, ...], stderr: str, code: int) -> TallyError:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    msg = lines[-1].strip() if lines else f"exit status {code}"
    return TallyError(f"git {_command(args)} failed: {msg.removeprefix('fatal: ')}")


def git(
    repo: Repo, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run git with an argument list in `repo` (`env`: variables to add); the caller
    reads its status and output."""
    return _git(repo, args, env)


def run(repo: Repo, *args: str, env: dict[str, str] | None = None) -> str:
    """Run git with an argument list in `repo` (`env`: variables to add); a failure
    becomes TallyError."""
    proc = _git(repo, args, env)
    if proc.returncode != 0:
        raise _failed(args, proc.stderr, proc.returncode)
    return str(proc.stdout)


def names(repo: Repo, *args: str) -> list[str]:
    """The paths a ``git ... -z`` call lists, as the filesystem names them (a name that is
    not UTF-8 round-trips through `os.fsdecode`)."""
    proc = _git(repo, args, text=False)
    if proc.returncode != 0:
        raise _failed(args, proc.stderr.decode(errors="replace"), proc.returncode)
    return [os.fsdecode(p) for p in proc.stdout.split(b"\0") if p]


def _command(args: tuple[str, ...]) -> str:
    """The git command in `args`, after git's own options (``-c key=value status``)."""
    i = 0
    while i < len(args) and args[i].startswith("-"):
        i += 2 if args[i] in ("-c", "-C") else 1
    return args[i] if i < len(args) else args[0]


def ok(repo: Repo, *args: str) -> bool:
    """True when git exits 0 (for yes/no questions such as show-ref --verify)."""
    return _git(repo, args).returncode == 0


def branch_ref(branch: str) -> tuple[str, ...]:
    """The git call `branch_exists` makes."""
    return ("show-ref", "--verify", "--quiet", f"refs/heads/{branch}")


def branch_exists(repo: Repo, branch: str) -> bool:
    return ok(repo, *branch_ref(branch))


def current_branch(repo: Repo) -> str | None:
    """The main checkout's branch, or None when HEAD is detached."""
    proc = _git(repo, ("symbolic-ref", "--quiet", "--short", "HEAD"))
    return (proc.stdout.strip() or None) if proc.returncode == 0 else None


_REF_CHARS = re.compile(r"[A-Za-z0-9._/-]+")


def branch_name_ok(name: str) -> bool:
    """``git check-ref-format --branch NAME``, without a git process for a name of letters,
    digits and ``._/-``: git's rules for those characters, exactly (no leading ``-``, not
    ``HEAD``, no ``..``, no trailing ``.``, no empty component, none starting with ``.`` or
    ending in ``.lock``). Any other name is asked of git."""
    if not _REF_CHARS.fullmatch(name):
        argv = ["git", "check-ref-format", "--branch", name]
        try:
            proc = subprocess.run(argv, capture_output=True)
        except FileNotFoundError:
            raise TallyError("git is not installed or not on PATH; install git first") from None
        return proc.returncode == 0
    return not (
        name.startswith("-")
        or name == "HEAD"
        or ".." in name
        or name.endswith(".")
        or any(not c or c.startswith(".") or c.endswith(".lock") for c in name.split("/"))
    )


def main_branch(repo: Repo, into: str = "") -> str:
    """The branch sessions land in and count as merged into: `into` (tally.land.into) when
    set; else the one origin's HEAD names, else main or master, else the main checkout's
    ("HEAD" when it is detached)."""
    return into or refs(repo).main_branch()


class Refs(NamedTuple):
    """The local branches, the one checked out in the main checkout and the remotes' HEADs,
    from one ``git for-each-ref``: what add and remove ask of refs, answered together."""

    branches: dict[str, tuple[str, str]]  # name -> (its commit's tree, its upstream ref)
    current: str | None  # the main checkout's branch; None: detached, or no commit yet
    remote_heads: dict[str, str]  # remote -> the branch its HEAD names (origin -> main)
    commits: dict[str, str]  # name -> its commit
    gone: frozenset[str] = frozenset()  # the branches whose upstream is gone

    def main_branch(self, into: str = "") -> str:
        """See `main_branch`."""
        if into:
            return into
        named = [self.remote_heads.get("origin"), *self.remote_heads.values(), "main", "master"]
        for branch in named:
            if branch in self.branches:
                return branch
        return self.current or "HEAD"

    def clash(self, branch: str) -> str:
        """Why git cannot make `branch` beside the branches there are ("" when it can): a
        branch is a file under refs/heads, so `feat` and `feat/x` cannot both exist."""
        parts = branch.split("/")
        below = sorted(b for b in self.branches if b.startswith(branch + "/"))
        above = [p for p in ("/".join(parts[:i]) for i in range(1, len(parts))) if p in self]
        other = above[0] if above else below[0] if below else ""
        if other:
            return f"branch {branch} cannot be made while branch {other} exists; pick another name"
        return ""

    def __contains__(self, branch: object) -> bool:
        return branch in self.branches


REFS = (
    "for-each-ref",
    "--format=%(HEAD)%(refname)%00%(symref)%00%(tree)%00%(upstream)%00%(objectname)"
    "%00%(upstream:track)",
    "refs/heads/",
    "refs/remotes/*/HEAD",
)


def refs(repo: Repo) -> Refs:
    """The `Refs` of `repo`, in one git call (`REFS`)."""
    out = _git(repo, REFS).stdout
    branches: dict[str, tuple[str, str]] = {}
    current: str | None = None
    remote_heads: dict[str, str] = {}
    commits: dict[str, str] = {}
    gone: set[str] = set()
    for line in out.splitlines():
        mark = line[:1]  # "*" for the branch checked out here
        ref, symref, tree, upstream, commit, track = (line[1:].split("\0") + [""] * 5)[:6]
        if ref.startswith("refs/heads/"):
            name = ref.removeprefix("refs/heads/")
            branches[name] = (tree, upstream)
            commits[name] = commit
            if track == "[gone]":
                gone.add(name)
            if mark == "*":
                current = name
        elif symref:  # refs/remotes/origin/HEAD -> refs/remotes/origin/main
            remote = ref.removeprefix("refs/remotes/").removesuffix("/HEAD")
            remote_heads[remote] = symref.removeprefix(f"refs/remotes/{remote}/")
    return Refs(branches, current, remote_heads, commits, frozenset(gone))
