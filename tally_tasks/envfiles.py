"""Private copies of untracked files (``.env`` and friends) from the main checkout.

A copy keeps its source's mode and is never readable by others while it is written:
the temp file starts at 0600, gets the source's mode, then is renamed into place.
"""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

from .errors import TallyError
from .links import Outcome, guard, staging, why
from .registry import replacing


def apply(main: Path, worktree: Path, paths: Sequence[str], force: bool = False) -> list[Outcome]:
    return [copy_one(main, worktree, rel, force) for rel in paths]


def copy_one(main: Path, worktree: Path, rel: str, force: bool = False) -> Outcome:
    src, dest = main / rel, worktree / rel
    if not src.exists():
        return Outcome(rel, False, f"{rel} missing in main, skipped")
    if (refused := guard(worktree, dest, rel)) is not None:
        return refused
    if dest.is_symlink():
        # moved from `links` to `copies`: the session gets its own snapshot now
        dest.unlink()
    elif dest.exists() and not force:
        return Outcome(rel, True, f"{rel} kept (exists; --force to overwrite)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        if src.is_dir():
            _copy_dir(src, dest)
        else:
            _copy_file(src, dest)
    except OSError as e:
        hint = "fix its permissions" if e.errno in (errno.EACCES, errno.EPERM) else "fix it in main"
        raise TallyError(f"cannot copy {src}: {why(e)}; {hint}") from None
    return Outcome(rel, True, f"{rel} copied")


def _copy_file(src: Path, dest: Path) -> None:
    """`src`'s bytes, mode and times at `dest` (as ``cp -p``), written whole or not at all.
    Without shutil: its import (with bz2 and lzma) costs every add 3 ms."""
    st = src.stat()
    with open(src, "rb") as inp, replacing(dest, st.st_mode & 0o7777) as out:
        while chunk := inp.read(1 << 20):
            out.write(chunk)
    os.utime(dest, ns=(st.st_atime_ns, st.st_mtime_ns))


def _copy_dir(src: Path, dest: Path) -> None:
    import shutil

    with staging(dest, replace=True) as tmp:  # the old copy goes only once the new is whole
        shutil.copytree(src, tmp, symlinks=True)


def worktree_include(main: Path) -> list[str]:
    """Paths matched by the main checkout's ``.worktreeinclude`` that git ignores.

    The file has gitignore syntax (the convention Claude Code, worktrunk and others
    read). Only ignored, untracked paths qualify: tracked files come with the checkout.
    """
    include = main / ".worktreeinclude"
    if not include.is_file():
        return []

    def listed(*args: str) -> list[str]:
        proc = subprocess.run(
            ["git", "ls-files", "-z", "--others", "--ignored", "--directory", *args],
            cwd=main,
            capture_output=True,
        )
        if proc.returncode != 0:
            err = proc.stderr.decode(errors="replace").strip()
            raise TallyError(f"cannot read {include}: {err}")
        # names as the filesystem has them (not UTF-8 is possible): fsdecode round-trips
        return [os.fsdecode(p).rstrip("/") for p in proc.stdout.split(b"\0") if p]

    wanted = listed(f"--exclude-from={include}")
    ignored = listed("--exclude-standard")

    def under(rel: str, top: str) -> bool:
        return rel == top or rel.startswith(top + "/")

    found: list[str] = []
    for rel in wanted:
        if any(under(rel, i) for i in ignored):
            found.append(rel)
        else:
            # a matched folder git does not ignore as a whole: take its ignored parts
            found.extend(i for i in ignored if under(i, rel))
    # git may list a folder and a file in it: keep the outermost
    outer = [r for r in found if not any(r != o and under(r, o) for o in found)]
    return [r for r in dict.fromkeys(outer) if r != ".worktreeinclude"]
