"""The JSON registry: the old script's format, shape checks, atomic writes and the lock."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import poll

from tally_tasks import registry
from tally_tasks.errors import TallyError

OLD = {
    "feature-auth": {
        "backend_port": 8000,
        "frontend_port": 5000,
        "worktree": "/abs",
        "branch": "feature-auth",
    }
}


@pytest.fixture
def reg(tmp_path: Path) -> Path:
    folder = tmp_path / "main"
    folder.mkdir()
    return folder / ".tally-sessions"


@pytest.fixture
def lock(tmp_path: Path) -> Path:
    return tmp_path / "main" / ".git" / "tally-sessions.lock"


def leftovers(folder: Path) -> list[str]:
    """Anything in `folder` that looks like one of write_atomic's temp files."""
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


# --- load and save --------------------------------------------------------------------------


def test_load_reads_the_old_scripts_file(reg: Path) -> None:
    # exactly as the old script wrote it: no indentation, this key order
    reg.write_text(json.dumps(OLD))
    assert registry.load(reg) == OLD
    assert registry.ports_of(registry.load(reg)["feature-auth"]) == {
        "backend": 8000,
        "frontend": 5000,
    }


def test_save_round_trip_keeps_every_key(reg: Path) -> None:
    data: dict[str, Any] = {
        **OLD,
        "feature/x": {
            "backend_port": 8001,
            "frontend_port": 5001,
            "storybook_port": 6006,
            "worktree": "/abs/it's here",
            "branch": "feature/x",
            "created": 1700000000.5,
            "note": {"from": "another tool", "tags": ["a", "b"]},
        },
    }
    reg.write_text(json.dumps(data))
    registry.save(reg, registry.load(reg))
    again = registry.load(reg)
    assert again == data
    assert json.loads(reg.read_text()) == data
    assert list(again["feature/x"]) == list(data["feature/x"])  # key order kept


@pytest.mark.parametrize("text", [None, "", "  \n"], ids=["absent", "empty", "blank"])
def test_load_empty(reg: Path, text: str | None) -> None:
    if text is not None:
        reg.write_text(text)
    assert registry.load(reg) == {}


@pytest.mark.parametrize(
    "content",
    [b"{", b'{"a": {"backend_port": 8000,}}', b"not json", b"{}{}"],
    ids=["truncated", "trailing-comma", "text", "two-objects"],
)
def test_load_invalid_json_names_the_file(reg: Path, content: bytes) -> None:
    reg.write_bytes(content)
    with pytest.raises(TallyError, match=re.escape(f"{reg} is not valid JSON")) as e:
        registry.load(reg)
    assert "\n" not in str(e.value)


def test_load_non_utf8_names_the_file(reg: Path) -> None:
    reg.write_bytes(b'\xff\xfe{"a": {}}')
    with pytest.raises(TallyError, match=re.escape(str(reg))):
        registry.load(reg)


def test_load_unreadable_path_names_it(reg: Path) -> None:
    reg.mkdir()
    with pytest.raises(TallyError, match=re.escape(f"cannot read {reg}")):
        registry.load(reg)


@pytest.mark.parametrize(
    "data, names",
    [
        ([OLD], []),
        ("feature-auth", []),
        ({"feature-auth": None}, ["'feature-auth'", "must be an object"]),
        ({"feature-auth": ["x"]}, ["'feature-auth'", "must be an object"]),
        ({"x": {"backend_port": "8000"}}, ["'x'", "'backend_port'", "port number"]),
        ({"x": {"backend_port": True}}, ["'x'", "'backend_port'", "port number"]),
        ({"x": {"backend_port": 0}}, ["'x'", "'backend_port'", "port number"]),
        ({"x": {"frontend_port": 65536}}, ["'x'", "'frontend_port'", "port number"]),
        ({"x": {"frontend_port": 5000.0}}, ["'x'", "'frontend_port'", "port number"]),
        ({"x": {"branch": 5}}, ["'x'", "'branch'", "must be a string"]),
        ({"x": {"worktree": None}}, ["'x'", "'worktree'", "must be a string"]),
        ({"x": {"worktree": "."}}, ["'x'", "'worktree'", "absolute path"]),
        ({"$(touch${IFS}/tmp/P)": {}}, ["'$(touch${IFS}/tmp/P)'", "may only contain"]),
        ({"a`id`": {}}, ["'a`id`'", "may only contain"]),
        ({"-rf": {}}, ["'-rf'", "not a valid branch name"]),
        ({"a b": {}}, ["'a b'", "may only contain"]),
        ({"": {}}, ["session name is empty"]),
        ({"x" * 101: {}}, ["too long"]),
    ],
    ids=[
        "top-level-list",
        "top-level-string",
        "entry-null",
        "entry-list",
        "port-as-string",
        "port-bool",
        "port-zero",
        "port-too-big",
        "port-float",
        "branch-int",
        "worktree-null",
        "worktree-relative",
        "name-command-substitution",
        "name-backticks",
        "name-leading-dash",
        "name-space",
        "name-empty",
        "name-too-long",
    ],
)
def test_load_wrong_shape_names_file_and_key(reg: Path, data: Any, names: list[str]) -> None:
    reg.write_text(json.dumps(data))
    with pytest.raises(TallyError) as e:
        registry.load(reg)
    message = str(e.value)
    assert str(reg) in message
    for part in names:
        assert part in message
    assert "\n" not in message


# --- write_atomic ---------------------------------------------------------------------------


@pytest.fixture
def umask() -> Iterator[None]:
    old = os.umask(0o027)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o644], ids=["0600", "0640", "0644"])
def test_write_atomic_keeps_an_existing_files_mode(reg: Path, mode: int) -> None:
    reg.write_text("{}\n")
    reg.chmod(mode)
    registry.write_atomic(reg, '{"a": {}}\n')
    assert reg.stat().st_mode & 0o7777 == mode
    assert reg.read_text() == '{"a": {}}\n'


def test_write_atomic_new_file_follows_umask(reg: Path, umask: None) -> None:
    registry.write_atomic(reg, "{}\n")
    assert reg.stat().st_mode & 0o7777 == 0o640


def test_write_atomic_new_file_with_a_mode(reg: Path, umask: None) -> None:
    registry.write_atomic(reg, "{}\n", mode=0o600)
    assert reg.stat().st_mode & 0o7777 == 0o600
    registry.write_atomic(reg, "{}\n", mode=0o644)  # an existing file keeps its own
    assert reg.stat().st_mode & 0o7777 == 0o600


def test_write_atomic_through_a_symlink_writes_its_target(reg: Path, tmp_path: Path) -> None:
    """A dotfiles manager's symlink stays a symlink; the file it points at is changed."""
    target = tmp_path / "dotfiles" / "sessions.json"
    target.parent.mkdir()
    target.write_text("{}\n")
    target.chmod(0o640)
    reg.symlink_to(target)
    registry.write_atomic(reg, '{"a": {}}\n')
    assert reg.is_symlink() and target.read_text() == '{"a": {}}\n'
    assert target.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in target.parent.iterdir()) == ["sessions.json"]


def test_write_atomic_replaces_the_file(reg: Path) -> None:
    reg.write_text("old\n")
    before = reg.stat().st_ino
    registry.write_atomic(reg, "new\n")
    assert reg.read_text() == "new\n"
    assert reg.stat().st_ino != before  # a new file renamed over: readers never see half
    assert leftovers(reg.parent) == []


def test_write_atomic_failing_write_leaves_the_old_file(reg: Path) -> None:
    reg.write_text("old\n")
    with pytest.raises(UnicodeEncodeError):
        registry.write_atomic(reg, "new \udc80\n")  # a lone surrogate cannot be encoded
    assert reg.read_text() == "old\n"
    assert leftovers(reg.parent) == []


def test_write_atomic_failing_replace_leaves_no_temp_file(reg: Path) -> None:
    reg.mkdir()
    (reg / "keep").write_text("x")
    with pytest.raises(OSError):
        registry.write_atomic(reg, "{}\n")
    assert (reg / "keep").read_text() == "x"
    assert leftovers(reg.parent) == []


def test_save_writes_indented_json(reg: Path) -> None:
    registry.save(reg, OLD)
    assert reg.read_text() == json.dumps(OLD, indent=2) + "\n"
    assert leftovers(reg.parent) == []


# --- locked ---------------------------------------------------------------------------------


def held_by_another(path: Path) -> bool:
    """True when some other open file holds the flock on `path`."""
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno in (errno.EAGAIN, errno.EACCES):
            return True
        raise
    finally:
        os.close(fd)
    return False


def test_locked_creates_the_lock_and_records_the_holder(lock: Path) -> None:
    with registry.locked(lock, timeout=1):
        assert held_by_another(lock)
        pid, since = lock.read_text().split()
        assert int(pid) == os.getpid()
        assert abs(float(since) - time.time()) < 60
    assert not held_by_another(lock)


def test_locked_times_out_naming_the_holder(lock: Path) -> None:
    with registry.locked(lock, timeout=1):
        start = time.monotonic()
        with pytest.raises(TallyError) as e:
            with registry.locked(lock, timeout=0.2, what="the registry"):
                pass
        assert time.monotonic() - start >= 0.2
    message = str(e.value)
    assert "another tally-session is holding the registry" in message
    assert "since" in message
    assert f"pid {os.getpid()}" in message
    assert "\n" not in message


def test_locked_is_released_when_the_body_fails(lock: Path) -> None:
    with pytest.raises(RuntimeError):
        with registry.locked(lock, timeout=1):
            raise RuntimeError("boom")
    with registry.locked(lock, timeout=0):
        pass


def test_lock_of_a_killed_process_does_not_block(lock: Path) -> None:
    lock.parent.mkdir(parents=True)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time\n"
            "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "time.sleep(60)\n",
            str(lock),
        ]
    )
    try:
        poll(lambda: held_by_another(lock), timeout=5, interval=0.01)
        with pytest.raises(TallyError, match="another tally-session is holding"):
            with registry.locked(lock, timeout=0.05):
                pass
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=5)
        with registry.locked(lock, timeout=2):
            assert lock.read_text().split()[0] == str(os.getpid())
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


# --- editing --------------------------------------------------------------------------------


def test_editing_without_change_creates_nothing(reg: Path, lock: Path) -> None:
    with registry.editing(reg, lock, timeout=1) as entries:
        assert entries == {}
    assert not reg.exists()


def test_editing_without_change_leaves_the_file_alone(reg: Path, lock: Path) -> None:
    reg.write_text(json.dumps(OLD))  # compact, as the old script wrote it
    before = reg.stat()
    with registry.editing(reg, lock, timeout=1) as entries:
        entries["feature-auth"]["backend_port"] = 8000  # same value: no change
    after = reg.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert reg.read_text() == json.dumps(OLD)


def test_editing_saves_a_change(reg: Path, lock: Path) -> None:
    reg.write_text(json.dumps(OLD))
    with registry.editing(reg, lock, timeout=1) as entries:
        assert held_by_another(lock)
        entries["bugfix"] = {"backend_port": 8001, "worktree": "/b", "branch": "bugfix"}
    assert registry.load(reg) == {
        **OLD,
        "bugfix": {"backend_port": 8001, "worktree": "/b", "branch": "bugfix"},
    }
    assert leftovers(reg.parent) == []


def test_editing_saves_nothing_when_the_body_fails(reg: Path, lock: Path) -> None:
    reg.write_text(json.dumps(OLD))
    with pytest.raises(RuntimeError):
        with registry.editing(reg, lock, timeout=1) as entries:
            entries.clear()
            raise RuntimeError("boom")
    assert registry.load(reg) == OLD
    with registry.locked(lock, timeout=0):
        pass
