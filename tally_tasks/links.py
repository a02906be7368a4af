"""Shared paths from the main checkout: symlinks, or hard-linked, reflinked or copied trees.

Some dev servers refuse what lies behind a symlink (Vite's fs allow list checks real
paths, Turbopack refuses symlinks leaving the root), hence the other modes for e.g.
``node_modules``.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from .config import Link
from .errors import TallyError
from .registry import write_atomic
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
    force: bool = False,
    force_hint: str = "",
) -> list[Outcome]:
    """Make every link that is missing or wrong; leave the user's own files alone.

    `refresh`: build again, from main's, the hard-linked, reflinked or copied trees that
    lack what main has gained (they do not follow main the way a symlink does), except
    one the session changed since it was built: that one only with `force`.
    `refresh_hint`, `force_hint`: the commands that do it, for the messages."""
    hints = (refresh_hint, force_hint)
    return [_one(main, worktree, link, refresh, force, hints) for link in links]


def refresh_plan(
    main: Path, worktree: Path, links: Sequence[Link], force: bool = False
) -> list[Outcome]:
    """What `apply(..., refresh=True, force=force)` would do to each tree, changing
    nothing: ok is True for a tree that would be rebuilt or needs nothing."""
    plan = []
    for link in links:
        src, dest = main / link.path, worktree / link.path
        if link.mode == "symlink" or not (src.exists() or src.is_symlink()):
            continue
        if guard(worktree, dest, link.path) is not None or not _built(dest):
            continue  # apply says so, or simply builds it
        missing = behind(src, dest)
        if not missing:
            plan.append(Outcome(link.path, True, f"{link.path} ({link.mode}) up to date, kept"))
        elif (why := _changed(main, worktree, link.path, dest)) and not force:
            plan.append(Outcome(link.path, False, f"{link.path} kept: {why}"))
        else:
            plan.append(
                Outcome(link.path, True, f"{link.path} ({link.mode}) would be rebuilt from main's")
            )
    return plan


def behind(src: Path, dest: Path) -> list[str]:
    """Names main's `src` folder has that the tree `dest` made from it lacks (top level):
    a package installed in main since."""
    if not (src.is_dir() and dest.is_dir()) or dest.is_symlink():
        return []
    try:
        return sorted(set(os.listdir(src)) - set(os.listdir(dest)))
    except OSError:
        return []


def _built(dest: Path) -> bool:
    """Is there a tree (not a symlink, which a mode change replaces) at `dest`?"""
    return dest.exists() and not dest.is_symlink()


def _one(
    main: Path,
    worktree: Path,
    link: Link,
    refresh: bool = False,
    force: bool = False,
    hints: tuple[str, str] = ("--refresh", ""),
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
    rebuild = _built(dest)
    if rebuild:
        missing = behind(src, dest)
        if not missing:  # a copy with nothing new in main (a database): never replaced
            return Outcome(link.path, True, f"{link.path} ok ({link.mode})")
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        lacks = f"{link.path} ({link.mode}) lacks {missing[0]}{more} that main has now"
        if not refresh:
            return Outcome(link.path, False, f"{lacks}; build it again with: {hints[0]}")
        why = "" if force else _changed(main, worktree, link.path, dest)
        if why:  # the session's own data in it: a package it installed, a file it wrote
            keep = f"replace it anyway with: {hints[1]}" if hints[1] else "delete it to rebuild it"
            return Outcome(link.path, False, f"{lacks}, but is not rebuilt: {why}; {keep}")
    with staging(dest, replace=rebuild) as tmp:
        if link.mode == "hardlink":
            _hardlink_tree(src, tmp)
        elif link.mode == "reflink":
            _reflink(src, tmp)
        else:
            _copy(src, tmp)
        _stamp(main, worktree, link.path, tmp)
    return Outcome(link.path, True, f"{link.path} ({link.mode} of main)")


# --- what a tree was when it was built ------------------------------------------------------
#
# A copied or hard-linked tree is the session's to change (its database copy, a package
# installed in it): a rebuild must not throw that away. Each build records a fingerprint
# of the tree (names, sizes, modification times, link targets) in the worktree's own git
# dir, which goes with the worktree; a tree whose fingerprint differs has been changed.

_STAMPS = "tally-trees.json"


def _fingerprint(path: Path) -> str:
    digest = hashlib.sha256()

    def add(rel: str, st: os.stat_result, full: str) -> None:
        if stat.S_ISLNK(st.st_mode):
            digest.update(f"l {rel} {os.readlink(full)}\0".encode(errors="surrogateescape"))
        elif stat.S_ISDIR(st.st_mode):
            digest.update(f"d {rel}\0".encode(errors="surrogateescape"))
        else:  # never ctime or link count: more sessions linking main's files change those
            line = f"f {rel} {st.st_size} {st.st_mtime_ns}\0"
            digest.update(line.encode(errors="surrogateescape"))

    add(".", os.lstat(path), str(path))
    for top, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted([*dirs, *files]):
            full = os.path.join(top, name)
            add(os.path.relpath(full, path), os.lstat(full), full)
    return digest.hexdigest()


def _stamps_path(main: Path, worktree: Path) -> Path | None:
    """The worktree's own git dir (``.git`` is a file naming it), when it is one of main's."""
    try:
        text = (worktree / ".git").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    gitdir = Path(text.removeprefix("gitdir:").strip())
    if not text.startswith("gitdir:") or escapes(main / ".git" / "worktrees", gitdir):
        return None
    return gitdir / _STAMPS


def _stamps(where: Path) -> dict[str, str]:
    try:
        data = json.loads(where.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _stamp(main: Path, worktree: Path, rel: str, built: Path) -> None:
    where = _stamps_path(main, worktree)
    if where is None or not where.parent.is_dir():
        return
    stamps = _stamps(where)
    stamps[rel] = _fingerprint(built)  # names relative to the tree: the same once moved
    with contextlib.suppress(OSError):  # without it, the tree counts as changed: kept
        write_atomic(where, json.dumps(stamps, indent=2) + "\n")


def _changed(main: Path, worktree: Path, rel: str, dest: Path) -> str:
    """Why the tree at `dest` counts as changed since it was built ("" when it is not)."""
    where = _stamps_path(main, worktree)
    built = _stamps(where).get(rel) if where is not None else None
    if built is None:
        return "it may hold changes of the session's (no record of how it was built)"
    if built != _fingerprint(dest):
        return "it has changed since it was built"
    return ""


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
