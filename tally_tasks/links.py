"""Shared paths from the main checkout: symlinks, or hard-linked, reflinked or copied trees.

Some dev servers refuse what lies behind a symlink (Vite's fs allow list checks real
paths, Turbopack refuses symlinks leaving the root), hence the other modes for e.g.
``node_modules``; ``auto`` (the default for ``frontend/node_modules``) takes the cheapest
that works here: hard links, else a reflink clone, else a symlink with a warning.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

from . import repo as repo_
from .config import Link
from .errors import TallyError
from .registry import temp_folder, write_atomic
from .worktree import make_removable

# shutil is imported where a tree is copied (not hard-linked) or a half-made one deleted:
# neither add's default tree of hard links nor remove, which reads this module (exclude,
# tracked), needs it; tempfile is not imported (registry.temp_folder)

# Caches tools keep inside node_modules (Vite's pre-bundled deps in .vite, babel-loader's
# and others' in .cache): each session builds its own. Shared, every Vite would re-optimise
# for the other's config; hard-linked, a cache file rewritten in place would change main's.
CACHES = (".vite", ".cache")

# The lines of info/exclude that are the tool's: between these two, nothing else touched.
EXCLUDE_BEGIN = "# >>> tally-tasks: its links in worktrees (written by tally-tasks; edit outside)"
EXCLUDE_END = "# <<< tally-tasks"


class Outcome(NamedTuple):
    """What a link or copy step did to one path (False: worth a warning)."""

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
        return sorted(set(os.listdir(src)) - set(os.listdir(dest)) - set(_caches(src)))
    except OSError:
        return []


def _caches(src: Path | str, names: list[str] | None = None) -> list[str]:
    """The cache folders a tree made from `src` leaves out (copytree's `ignore`)."""
    if os.path.basename(src) != "node_modules":
        return []
    return [n for n in CACHES if names is None or n in names]


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
        if link.mode == "auto" and not _tree_possible(src, dest):
            return _symlink_instead(src, dest, link.path, "")
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
    if link.mode == "auto":
        return _auto(main, worktree, link.path, rebuild)
    with staging(dest, replace=rebuild) as tmp:
        if link.mode == "hardlink":
            _hardlink(src, tmp)
        elif link.mode == "reflink":
            _reflink(src, tmp)
        else:
            _copy(src, tmp)
        _stamp(main, worktree, link.path, tmp)
    return Outcome(link.path, True, f"{link.path} ({link.mode} of main)")


def _auto(main: Path, worktree: Path, rel: str, rebuild: bool) -> Outcome:
    """Hard links (no extra space), else a reflink clone (where hard links are refused but
    the filesystem clones), else a symlink with a warning saying why."""
    src, dest = main / rel, worktree / rel
    try:
        with staging(dest, replace=rebuild) as tmp:
            _hardlink_tree(src, tmp)
            _stamp(main, worktree, rel, tmp)
        return Outcome(rel, True, f"{rel} (hardlink of main)")
    except _LinkFailed as e:
        reason = why(e.error)
    # a clone needs one filesystem too (and macOS's `cp -c` might copy instead)
    if _tree_possible(src, dest):
        try:
            with staging(dest, replace=rebuild) as tmp:
                _clone(src, tmp)
                _stamp(main, worktree, rel, tmp)
            return Outcome(rel, True, f"{rel} (reflink of main)")
        except _LinkFailed:
            pass
    if _built(dest):  # a rebuild that cannot be made: the tree there stays
        return Outcome(rel, False, f"{rel} kept as it was: cannot build it again ({reason})")
    return _symlink_instead(src, dest, rel, reason)


def _tree_possible(src: Path, dest: Path) -> bool:
    """Could hard links or clones of `src` be made beside `dest` (same filesystem)?"""
    try:
        return os.stat(src).st_dev == os.stat(dest.parent).st_dev
    except OSError:
        return False


def _symlink_instead(src: Path, dest: Path, rel: str, reason: str) -> Outcome:
    if not (dest.is_symlink() and os.readlink(dest) == str(src)):
        _replace_symlink(src, dest)
    if not reason and not _tree_possible(src, dest):
        reason = "main is on another filesystem"
    return Outcome(
        rel,
        False,
        f"{rel} → main as a symlink: neither hard links nor a reflink clone work here "
        f"({reason}); Vite refuses files behind it (fonts, images: 403). Put the worktrees "
        "on main's filesystem (tally.worktrees), or set this link's mode to copy",
    )


def _clone(src: Path, dest: Path) -> None:
    """A copy-on-write clone of `src` at `dest`, never a plain copy (_LinkFailed when the
    filesystem cannot clone)."""
    flag = ["-c"] if sys.platform == "darwin" else ["--reflink=always"]
    proc = subprocess.run(["cp", "-a", *flag, str(src), str(dest)], capture_output=True)
    if proc.returncode != 0:
        raise _LinkFailed(src, OSError(proc.returncode, "cannot clone"))
    for name in _caches(src):
        _remove(dest / name)


# --- what a tree was when it was built ------------------------------------------------------
#
# A copied or hard-linked tree is the session's to change (its database copy, a package
# installed in it): a rebuild must not throw that away. Each build records a fingerprint
# of the tree (names, sizes, modification times, link targets) in the worktree's own git
# dir, which goes with the worktree; a tree whose fingerprint differs has been changed.

_STAMPS = "tally-trees.json"


def _fingerprint(path: Path) -> str:
    lines: list[str] = []

    def add(rel: str, st: os.stat_result, full: str) -> None:
        if stat.S_ISLNK(st.st_mode):
            lines.append(f"l {rel} {os.readlink(full)}\0")
        elif stat.S_ISDIR(st.st_mode):
            lines.append(f"d {rel}\0")
        else:  # never ctime or link count: more sessions linking main's files change those
            lines.append(f"f {rel} {st.st_size} {st.st_mtime_ns}\0")

    add(".", os.lstat(path), str(path))
    for top, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted([*dirs, *files]):
            full = os.path.join(top, name)
            add(os.path.relpath(full, path), os.lstat(full), full)
    return _sha256("".join(lines).encode(errors="surrogateescape"))


def _sha256(data: bytes) -> str:
    """sha256 of `data`, hex: a small tree's by CPython's own sha256, without hashlib,
    whose import loads OpenSSL (3 ms, more than the digest); a big one's by OpenSSL's,
    faster per byte. The same digest either way."""
    if len(data) < 1 << 16:  # about a thousand files
        try:
            own = __import__("_sha2" if sys.version_info >= (3, 12) else "_sha256")
            return str(own.sha256(data).hexdigest())
        except ImportError:  # a build without it: hashlib has OpenSSL's
            pass
    import hashlib  # here: only copied and hard-linked trees are fingerprinted

    return hashlib.sha256(data).hexdigest()


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
    parent = temp_folder(dest)
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
    with contextlib.suppress(OSError):
        path.rmdir()  # empty: a staging folder whose tree is in place (no shutil then)
        return
    import shutil

    make_removable(path)
    shutil.rmtree(path, ignore_errors=True)


class _LinkFailed(Exception):
    """No OSError, so copytree stops at the first file it cannot link instead of going on
    file by file."""

    def __init__(self, src: Path, error: OSError) -> None:
        super().__init__(str(src))
        self.src, self.error = src, error


def _hardlink(src: Path, dest: Path) -> None:
    try:
        _hardlink_tree(src, dest)
    except _LinkFailed as e:
        raise _cannot_hardlink(e.src, e.error) from None


def _hardlink_tree(src: Path, dest: Path) -> None:
    if not src.is_dir() or src.is_symlink():
        _link_file(str(src), str(dest))
    else:
        _link_folder(str(src), str(dest))


def _link_folder(src: str, dest: str) -> None:
    """``shutil.copytree(src, dest, symlinks=True, copy_function=_link_file,
    ignore=_caches)``, stopping at the first error (_LinkFailed): folders made with their
    mode and times, symlinks copied as symlinks, files hard-linked. Written out: shutil's
    import (with bz2 and lzma) was a third of `add`'s links step."""
    try:
        with os.scandir(src) as found:
            entries = list(found)
        skipped = set(_caches(src, [e.name for e in entries]))
        os.mkdir(dest)
    except OSError as e:
        raise _LinkFailed(Path(src), e) from None
    for entry in entries:
        if entry.name in skipped:
            continue
        to = os.path.join(dest, entry.name)
        if entry.is_symlink():
            try:
                os.symlink(os.readlink(entry.path), to)
            except OSError as e:
                raise _LinkFailed(Path(entry.path), e) from None
        elif entry.is_dir():
            _link_folder(entry.path, to)
        else:
            _link_file(entry.path, to)
    try:
        st = os.stat(src)
        os.chmod(dest, stat.S_IMODE(st.st_mode))
        os.utime(dest, ns=(st.st_atime_ns, st.st_mtime_ns))
    except OSError as e:
        raise _LinkFailed(Path(src), e) from None


def _link_file(src: str, dest: str) -> None:
    try:
        os.link(src, dest, follow_symlinks=False)
    except OSError as e:
        raise _LinkFailed(Path(src), e) from None


def _cannot_hardlink(src: Path, e: OSError) -> TallyError:
    hint = "hard links need one filesystem: " if e.errno == errno.EXDEV else ""
    return TallyError(
        f"cannot hard-link {src} into the worktree ({why(e)}); {hint}use mode reflink or copy"
    )


def why(e: OSError) -> str:
    """The reason in a few words: copytree's ``shutil.Error`` has no strerror, only a list."""
    import shutil

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
        return
    for name in _caches(src):
        _remove(dest / name)


def _copy(src: Path, dest: Path) -> None:
    import shutil

    try:
        if src.is_dir() and not src.is_symlink():
            shutil.copytree(src, dest, symlinks=True, ignore=_caches)
        else:
            shutil.copy2(src, dest, follow_symlinks=False)
    except OSError as e:
        raise TallyError(f"cannot copy {src}: {why(e)}") from None


# --- out of git's view -----------------------------------------------------------------------


def exclude(common_dir: Path, paths: Sequence[str]) -> Outcome | None:
    """Keep `paths` (the tool's links) out of ``git status`` in every worktree.

    A ``node_modules/`` ignore rule does not match a symlink, so each new worktree showed
    ``?? frontend/node_modules``, and ``git add -A`` committed a link to a path on this
    machine. The lines go into the repository's ``info/exclude`` (in the common git dir,
    which every worktree reads), between two marker lines, rewritten to exactly `paths`
    (none: the block goes); the user's own lines are kept. Written atomically, never
    through a symlink; the caller holds the repository's lock. None when done, else why not.
    """
    info = common_dir / "info"
    path = info / "exclude"
    if info.is_symlink() or path.is_symlink():
        return Outcome(
            "info/exclude", False, f"{path} is a symlink, not written: the links show in git status"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        text = ""
    except (OSError, UnicodeDecodeError) as e:
        return Outcome("info/exclude", False, f"cannot read {path} ({e}): links not excluded")
    kept = _without_block(text.splitlines())
    while kept and not kept[-1].strip():
        kept.pop()
    block = [EXCLUDE_BEGIN, *(_pattern(p) for p in paths), EXCLUDE_END] if paths else []
    lines = kept + ([""] if kept and block else []) + block
    new = "\n".join(lines) + "\n" if lines else ""
    if new == text or (not text.strip() and not new):
        return None
    info.mkdir(exist_ok=True)
    write_atomic(path, new)
    return None


def _without_block(lines: list[str]) -> list[str]:
    """The lines outside the tool's block and the blank line before it (a block whose end
    marker was deleted ends at the first line that is not one of its patterns)."""
    kept: list[str] = []
    inside = False
    for line in lines:
        if line == EXCLUDE_BEGIN:
            inside = True
            if kept and not kept[-1].strip():
                kept.pop()  # the blank line written before the block
        elif inside and line == EXCLUDE_END:
            inside = False
        elif inside and line.startswith("/"):
            continue
        else:
            inside = False
            kept.append(line)
    return kept


def _pattern(rel: str) -> str:
    """`rel` as an anchored gitignore pattern matching exactly that path (a file, folder or
    symlink): glob characters and trailing spaces escaped."""
    escaped = "".join("\\" + c if c in "\\*?[" else c for c in rel)
    stripped = escaped.rstrip(" ")
    return "/" + stripped + "\\ " * (len(escaped) - len(stripped))


def tracked(worktree: Path, paths: Sequence[str]) -> list[str]:
    """The `paths` git tracks in `worktree` (at them or under them): a link committed by
    ``git add -A`` is the branch's file now, not the tool's."""
    if not paths:
        return []
    with repo_.open_repo(worktree) as r:
        out = repo_.run(r, "ls-files", "-z", "--", *paths)
    files = [f for f in out.split("\0") if f]
    return [p for p in paths if any(f == p or f.startswith(p + "/") for f in files)]
