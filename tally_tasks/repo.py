"""The main repository: finding it from anywhere inside it, and running git in it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import git

from .errors import TallyError

# A git hook or a wrapper can leave these behind; they would point every git call at
# the wrong repository (pre-commit's no_git_env does the same).
_GIT_ENV = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_COMMON_DIR", "GIT_PREFIX")


def clean_git_env() -> None:
    for key in _GIT_ENV:
        os.environ.pop(key, None)


def find_main(start: Path) -> tuple[Path, Path]:
    """(main checkout, git common dir) for `start`: the main repo or any of its worktrees."""
    clean_git_env()
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
    return common.parent, common


def open_repo(path: Path) -> git.Repo:
    try:
        return git.Repo(path)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        raise TallyError(f"{path} is not a git repository") from None


def run(repo: git.Repo, *args: str) -> str:
    """Run git with an argument list in `repo`; a failure becomes TallyError."""
    try:
        out: str = repo.git.execute(["git", *args], strip_newline_in_stdout=False)
        return out
    except git.GitCommandError as e:
        detail = (e.stderr or "").strip().removeprefix("stderr:").strip(" '\n")
        lines = [ln for ln in detail.splitlines() if ln.strip()]
        msg = lines[-1] if lines else f"exit status {e.status}"
        raise TallyError(f"git {args[0]} failed: {msg}") from None


def ok(repo: git.Repo, *args: str) -> bool:
    """True when git exits 0 (for yes/no questions such as show-ref --verify)."""
    try:
        repo.git.execute(["git", *args])
        return True
    except git.GitCommandError:
        return False


def branch_exists(repo: git.Repo, branch: str) -> bool:
    return ok(repo, "show-ref", "--verify", "--quiet", f"refs/heads/{branch}")


def current_branch(repo: git.Repo) -> str | None:
    """The main checkout's branch, or None when HEAD is detached."""
    out = (
        run(repo, "symbolic-ref", "--quiet", "--short", "HEAD")
        if ok(repo, "symbolic-ref", "--quiet", "HEAD")
        else ""
    )
    return out.strip() or None


def check_branch_name(repo: git.Repo, name: str) -> bool:
    return ok(repo, "check-ref-format", "--branch", name)
