"""Shared paths from the main checkout: symlinks, or hard-linked, reflinked or copied trees.

Some dev servers refuse what lies behind a symlink (Vite's fs allow list checks real
paths, Turbopack refuses symlinks leaving the root), hence the other modes for e.g.
``node_modules``; ``auto`` (the default for ``frontend/node_modules``) takes the cheapest
that works here: hard links, else a reflink clone, else a symlink with a warning.
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

from . import registry
from . import repo as repo_
from .config import Link
from .errors import TallyError

# Caches tools keep inside node_modules (Vite's pre-bundled deps in .vite, babel-loader's
# and others' in .cache): each session builds its own. Shared, every Vite would re-optimise
# for the other's config; hard-linked, a cache file rewritten in place would change main's.
CACHES = (".vite", ".cache")

# The lines of info/exclude that are the tool's: between these two, nothing else touched.
EXCLUDE_BEGIN = "# >>> tally-tasks: its links in worktrees (written by tally-tasks; edit outside)"
EXCLUDE_END = "# <<< tally-tasks"


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
        return sorted(set(os.listdir(src)) - set(os.listdir(dest)) - set(_caches(src)))
    except OSError:
        return []


def _caches(src: Path | str, names: list[str] | None = None) -> list[str]:
    """The cache folders a tree made from `src` leaves out (copytree's `ignore`)."""
    if os.path.basename(src) != "node_modules":
        return []
    return [n for n in CACHES if names is None or n in names]


def _one(
    main: Path, worktree: Path, link: Link, refresh: bool = False, hint: str = "--refresh"
) -> Outcome:
    src, dest = main / link.path, worktree / link.path
    if not (src.exists() or src.is_symlink()):
        return Outcome(link.path, False, f"{link.path} missing in main, skipped")
    if _escapes(worktree, dest):
        return Outcome(
            link.path, False, f"{link.path} lies behind a link out of the worktree, skipped"
        )
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
    if link.mode == "auto":
        return _auto(src, dest, link.path, refresh)
    with staging(dest, replace=refresh) as tmp:
        if link.mode == "hardlink":
            _hardlink(src, tmp)
        elif link.mode == "reflink":
            _reflink(src, tmp)
        else:
            _copy(src, tmp)
    return Outcome(link.path, True, f"{link.path} ({link.mode} of main)")


def _auto(src: Path, dest: Path, rel: str, refresh: bool) -> Outcome:
    """Hard links (no extra space, ~0.4 s for 30,000 files), else a reflink clone (where
    hard links are refused but the filesystem clones), else a symlink with a warning."""
    try:
        with staging(dest, replace=refresh) as tmp:
            _hardlink_tree(src, tmp)
        return Outcome(rel, True, f"{rel} (hardlink of main)")
    except _LinkFailed as e:
        reason = why(e.error)
    # a clone needs one filesystem too (and macOS's `cp -c` might copy instead)
    if _tree_possible(src, dest) and _clone(src, dest, refresh):
        return Outcome(rel, True, f"{rel} (reflink of main)")
    if dest.exists() and not dest.is_symlink():  # --refresh of a tree that can't be rebuilt
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


def _clone(src: Path, dest: Path, refresh: bool) -> bool:
    """A copy-on-write clone of `src` at `dest`, never a plain copy; False when the
    filesystem cannot clone."""
    flag = ["-c"] if sys.platform == "darwin" else ["--reflink=always"]
    try:
        with staging(dest, replace=refresh) as tmp:
            proc = subprocess.run(["cp", "-a", *flag, str(src), str(tmp)], capture_output=True)
            if proc.returncode != 0:
                raise _LinkFailed(src, OSError(proc.returncode, "cannot clone"))
            for name in _caches(src):
                _remove(tmp / name)
    except _LinkFailed:
        return False
    return True


def _escapes(worktree: Path, dest: Path) -> bool:
    """True when a parent of `dest` is a symlink leading out of the worktree."""
    try:
        return not dest.parent.resolve().is_relative_to(worktree.resolve())
    except OSError:
        return True


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
    with contextlib.suppress(OSError):
        path.chmod(0o700)
    for top, dirs, _ in os.walk(path):
        for d in dirs:
            sub = os.path.join(top, d)
            if not os.path.islink(sub):
                with contextlib.suppress(OSError):
                    os.chmod(sub, 0o700)
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
    try:
        if not src.is_dir() or src.is_symlink():
            os.link(src, dest, follow_symlinks=False)
            return
        shutil.copytree(src, dest, symlinks=True, copy_function=_link_file, ignore=_caches)
    except OSError as e:
        raise _LinkFailed(src, e) from None


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
    registry.write_atomic(path, new)
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
