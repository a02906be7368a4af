"""`.tally-sessions`: the JSON registry of sessions, shared by concurrent processes.

The format is the old script's, so existing files keep working::

    {"feature-auth": {"backend_port": 8000, "frontend_port": 5000,
                      "worktree": "/abs/path", "branch": "feature-auth"}}

Every change is lock -> read -> change -> write temp file -> ``os.replace``. The lock is
``fcntl.flock`` on a file in the repository's git dir: it dies with its holder, so a
killed process never blocks the next one, and it also serialises ``git worktree add``,
which is not safe to run concurrently in one repository.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from .errors import TallyError

Entry = dict[str, Any]
Registry = dict[str, Entry]

MAX_NAME = 100
_NAME = re.compile(r"[A-Za-z0-9._/-]+")


def name_problem(name: str) -> str:
    """Why `name` cannot be a session's name ("" when it can), by the rules alone (git's
    own check of a branch name comes on top where a name is given, not where it is read)."""
    shown = repr(name) if len(name) <= 60 else repr(name[:57] + "...")
    if not name:
        return "session name is empty; give one, e.g. --name feature-auth"
    if len(name) > MAX_NAME:
        return f"session name {shown} is too long ({len(name)} > {MAX_NAME} characters)"
    if not _NAME.fullmatch(name):
        return f"session name {shown} may only contain letters, digits, '.', '_', '-' and '/'"
    if name[0] in "-./" or ".." in name or "//" in name or name.endswith(("/", ".", ".lock")):
        return (
            f"session name {shown} is not a valid branch name "
            "(no leading - . or /, no .., no trailing / or . or .lock)"
        )
    return ""


@contextlib.contextmanager
def locked(lock_path: Path, timeout: float, what: str = ".tally-sessions") -> Iterator[None]:
    """Hold the repository's tally lock; fail with a clear message after `timeout` s."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() >= deadline:
                    raise TallyError(
                        f"another tally-session is holding {what} {_holder(lock_path)}; "
                        "wait for it to finish, or stop it and run the command again"
                    ) from None
                time.sleep(0.02)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {time.time():.0f}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing drops the flock


def _holder(lock_path: Path) -> str:
    try:
        pid, since = lock_path.read_text().split()[:2]
        stamp = time.strftime("%H:%M:%S", time.localtime(float(since)))
        return f"since {stamp} (pid {pid})"
    except (OSError, ValueError):
        return "right now"


def _check(path: Path, data: Any) -> Registry:
    if not isinstance(data, dict):
        raise TallyError(
            f"{path} is not a session registry (expected a JSON object of sessions); "
            "fix or move the file"
        )
    for name, entry in data.items():
        where = f"{path}: session {name!r}"
        # names go into shell completion, branch names and folders: a hand-edited or
        # hostile key is reported here, never offered or used
        problem = name_problem(name)
        if problem:
            raise TallyError(f"{path}: {problem}; fix or remove that entry")
        if not isinstance(entry, dict):
            raise TallyError(f"{where} must be an object, got {entry!r}; fix or remove that entry")
        for key in ("worktree", "branch"):
            if key in entry and not isinstance(entry[key], str):
                raise TallyError(f"{where}: key {key!r} must be a string, got {entry[key]!r}")
        if entry.get("worktree") and not os.path.isabs(entry["worktree"]):
            raise TallyError(
                f"{where}: key 'worktree' must be an absolute path, got {entry['worktree']!r}"
            )
        for key, value in entry.items():
            if key.endswith("_port") and (
                isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536
            ):
                raise TallyError(f"{where}: key {key!r} must be a port number, got {value!r}")
    return data


def _sweep(path: Path) -> None:
    """Temp files of writers killed mid-write (we hold the lock: no one else writes now)."""
    real = Path(os.path.realpath(path))
    prefix = f".{real.name}."  # what glob(".<name>.*.tmp") finds, without its regex
    try:
        names = os.listdir(real.parent)
    except OSError:
        return
    for name in names:
        if name.startswith(prefix) and name.endswith(".tmp") and len(name) >= len(prefix) + 4:
            with contextlib.suppress(OSError):
                os.unlink(real.parent / name)


def load(path: Path) -> Registry:
    """The registry's sessions; an absent or empty file is an empty registry."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except UnicodeDecodeError as e:
        raise TallyError(
            f"{path} is not valid JSON (not UTF-8 at byte {e.start}); fix it or restore a backup"
        ) from None
    except OSError as e:
        raise TallyError(f"cannot read {path}: {e.strerror}") from None
    if not text.strip():
        return {}
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise TallyError(
            f"{path} is not valid JSON (line {e.lineno}: {e.msg}); fix it or restore a backup"
        ) from None
    return _check(path, data)


@contextlib.contextmanager
def replacing(path: Path, mode: int) -> Iterator[BinaryIO]:
    """Write `path` whole or not at all: a temp file beside it (0600 while written), given
    `mode`, then ``os.replace``d onto it. On any failure the temp file is removed."""
    path = Path(os.path.realpath(path))  # a dotfiles symlink stays a symlink: write its target
    fd, tmp = _temp_beside(path)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _temp_beside(path: Path) -> tuple[int, str]:
    """A new file ``.<name>.<random>.tmp`` beside `path`, 0600, made as tempfile.mkstemp
    makes one (never an existing file or a link followed), without importing tempfile,
    and shutil and random behind it, on every write (remove writes the registry)."""
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    return _drawn(path, ".tmp", lambda tmp: os.open(tmp, flags, 0o600))


def temp_folder(path: Path) -> Path:
    """A new folder ``.<name>.<random>`` beside `path`, 0700, as tempfile.mkdtemp makes
    one, without importing tempfile (2.5 ms, with random behind it, of every add)."""
    return Path(_drawn(path, "", lambda tmp: os.mkdir(tmp, 0o700))[1])


T = TypeVar("T")


def _drawn(path: Path, suffix: str, make: Callable[[str], T]) -> tuple[T, str]:
    """`make` of a new random name beside `path`, drawn again while it exists."""
    for _ in range(100):
        tmp = os.path.join(path.parent, f".{path.name}.{os.urandom(6).hex()}{suffix}")
        try:
            return make(tmp), tmp
        except FileExistsError:
            continue  # another writer's name: draw again
    raise FileExistsError(errno.EEXIST, "no free temporary name", str(path.parent))


def write_atomic(path: Path, text: str, mode: int | None = None) -> None:
    """Write `text` to `path` atomically; it keeps its mode, a new file gets `mode` or umask."""
    try:
        current: int | None = path.stat().st_mode & 0o7777  # a symlink's target's mode
    except FileNotFoundError:
        current = mode
    if current is None:
        umask = os.umask(0)
        os.umask(umask)
        current = 0o666 & ~umask
    data = text.encode("utf-8")
    with replacing(path, current) as f:
        f.write(data)


def save(path: Path, registry: Registry) -> None:
    write_atomic(path, json.dumps(registry, indent=2) + "\n")


@contextlib.contextmanager
def editing(path: Path, lock_path: Path, timeout: float) -> Iterator[Registry]:
    """Lock, load, let the caller change the registry, save it if it changed."""
    with locked(lock_path, timeout, path.name):
        _sweep(path)
        registry = load(path)
        before = json.dumps(registry, sort_keys=True)
        yield registry
        if json.dumps(registry, sort_keys=True) != before:
            save(path, registry)


def check_writable(path: Path) -> None:
    """Fail now, with one line, if `path` cannot be replaced (its folder must be writable)."""
    folder = Path(os.path.realpath(path)).parent
    if not os.access(folder, os.W_OK | os.X_OK):
        raise TallyError(f"cannot write {path}: its folder {folder} is not writable; nothing done")


def ports_of(entry: Entry) -> dict[str, int]:
    """``{"backend": 8000, ...}`` from an entry's ``backend_port`` keys."""
    return {k[: -len("_port")]: v for k, v in entry.items() if k.endswith("_port")}
