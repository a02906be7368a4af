"""Shared paths from the main checkout: symlinks, or hard-linked, reflinked or copied trees.

Some dev servers refuse what lies behind a symlink (Vite's fs allow list checks real
paths, Turbopack refuses symlinks leaving the root), hence the other modes for e.g.
``node_modules``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from .config import Link
from .errors import TallyError
from .worktree import make_removable


@dataclass(frozen=True)
class Outcome:
    path: str
    ok: bool  # False: skipped or left alone, worth a warning
    detail: str


def apply(
    main: Path,
    worktree: Path,
    links: Sequence[Link],
    refresh: bool = False,
    refresh_hint: str = "--refresh",
) -> list[Outcome]:
    """Make every link that is missing or wrong; leave the user's own files alone.

    `refresh`: build the hard-linked, reflinked or copied trees again from main's (they
    do not follow main's changes the way a symlink does); `refresh_hint`: the command that
    does it, for the message of a tree that lacks what main has."""
    return [_one(main, worktree, link, refresh, refresh_hint) for link in links]


def behind(src: Path, dest: Path) -> list[str]:
    """Names main's `src` folder has that the tree `dest` made from it lacks (top level):
    a package installed in main since."""
    if not (src.is_dir() and dest.is_dir()) or dest.is_symlink():
        return []
    try:
        return sorted(set(os.listdir(src)) - set(os.listdir(dest)))
    except OSError:
        return []


def _one(
    main: Path, worktree: Path, link: Link, refresh: bool = False, hint: str = "--refresh"
) -> Outcome:
    src, dest = main / link.path, worktree / link.path
    if not (src.exists() or src.is_symlink()):
        return Outcome(link.path, False, f"{link.path} missing in main, skipped")
    if (refused := guard(worktree, dest, link.path)) is not None:
        return refused
    dest.parent.mkdir(parents=True, exist_ok=True)
    if link.mode == "symlink":
        if dest.is_symlink():
            if os.readlink(dest) == str(src):
                return Outcome(link.path, True, f"{link.path} ok")
            _replace_symlink(src, dest)
            return Outcome(link.path, True, f"{link.path} relinked")
        if dest.exists():
            return Outcome(link.path, False, f"{link.path} exists and is not a link, left alone")
        _replace_symlink(src, dest)
        return Outcome(link.path, True, f"{link.path} → main")
    if dest.is_symlink():
        dest.unlink()  # was a symlink in an earlier config: give it the new mode
    elif dest.exists() and not refresh:
        missing = behind(src, dest)
        if missing:
            more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
            return Outcome(
                link.path,
                False,
                f"{link.path} ({link.mode}) lacks {missing[0]}{more} that main has now; "
                f"build it again with: {hint}",
            )
        return Outcome(link.path, True, f"{link.path} ok ({link.mode})")
    with staging(dest, replace=refresh) as tmp:
        if link.mode == "hardlink":
            _hardlink_tree(src, tmp)
        elif link.mode == "reflink":
            _reflink(src, tmp)
        else:
            _copy(src, tmp)
    return Outcome(link.path, True, f"{link.path} ({link.mode} of main)")


def escapes(worktree: Path, path: Path) -> bool:
    """Does `path`, every symlink in it followed (a parent folder's, its own), lead out
    of `worktree`? A branch can commit such links (``.claude`` -> ``~/.claude``)."""
    return not Path(os.path.realpath(path)).is_relative_to(os.path.realpath(worktree))


def guard(worktree: Path, dest: Path, rel: str, through: bool = False) -> Outcome | None:
    """The one check before any write into a worktree: an Outcome saying it is skipped
    when the write would land outside, else None. `through`: the writer writes through
    a symlink at `dest` (reads, merges, replaces its target); otherwise it replaces such
    a symlink itself, and only `dest`'s folders count."""
    if escapes(worktree, dest if through else dest.parent):
        return Outcome(rel, False, f"{rel} lies behind a link out of the worktree, skipped")
    return None


def _replace_symlink(src: Path, dest: Path) -> None:
    tmp = dest.with_name(f".{dest.name}.tally-{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    os.symlink(src, tmp)
    os.replace(tmp, dest)


@contextlib.contextmanager
def staging(dest: Path, replace: bool = False) -> Iterator[Path]:
    """A temp path beside `dest`, renamed onto it when the body succeeds (`replace`: the
    old `dest` is moved aside first, and back if the swap fails)."""
    parent = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    tmp = parent / dest.name
    old = parent / "old"
    try:
        yield tmp
        moved = replace and (dest.exists() or dest.is_symlink())
        if moved:
            os.rename(dest, old)
        try:
            os.rename(tmp, dest)
        except OSError:
            if moved:
                os.rename(old, dest)
            raise
    finally:
        _remove(parent)


def _remove(path: Path) -> None:
    """Delete what the tool half-made, even folders a failed ``cp -a`` left unreadable."""
    if path.is_symlink() or not path.is_dir():
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return
    make_removable(path)
    shutil.rmtree(path, ignore_errors=True)


def _hardlink_tree(src: Path, dest: Path) -> None:
    try:
        if not src.is_dir() or src.is_symlink():
            os.link(src, dest, follow_symlinks=False)
            return
        shutil.copytree(src, dest, symlinks=True, copy_function=_link_file)
    except OSError as e:
        raise _cannot_hardlink(src, e) from None


def _link_file(src: str, dest: str) -> None:
    try:
        os.link(src, dest, follow_symlinks=False)
    except OSError as e:
        # a TallyError is no OSError: copytree stops here instead of failing file by file
        raise _cannot_hardlink(Path(src), e) from None


def _cannot_hardlink(src: Path, e: OSError) -> TallyError:
    hint = "hard links need one filesystem: " if e.errno == errno.EXDEV else ""
    return TallyError(
        f"cannot hard-link {src} into the worktree ({why(e)}); {hint}use mode reflink or copy"
    )


def why(e: OSError) -> str:
    """The reason in a few words: copytree's ``shutil.Error`` has no strerror, only a list."""
    if isinstance(e, shutil.Error) and e.args and isinstance(e.args[0], list) and e.args[0]:
        failures = e.args[0]
        _, _, reason = failures[0]
        more = f" and {len(failures) - 1} more" if len(failures) > 1 else ""
        return f"{reason}{more}"
    return e.strerror or str(e)


def _reflink(src: Path, dest: Path) -> None:
    flag = ["-c"] if sys.platform == "darwin" else ["--reflink=auto"]
    proc = subprocess.run(["cp", "-a", *flag, str(src), str(dest)], capture_output=True)
    if proc.returncode != 0:
        _remove(dest)  # whatever cp made, so the plain copy starts clean
        _copy(src, dest)


def _copy(src: Path, dest: Path) -> None:
    try:
        if src.is_dir() and not src.is_symlink():
            shutil.copytree(src, dest, symlinks=True)
        else:
            shutil.copy2(src, dest, follow_symlinks=False)
    except OSError as e:
        raise TallyError(f"cannot copy {src}: {why(e)}") from None
