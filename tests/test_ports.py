"""Port allocation: the pure choice of an offset, and the bind probe against real sockets.

Every socket here is bound to port 0, so the kernel picks a free high port: nothing
touches 8000 or 5000.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
from conftest import proc_walks

from tally_tasks import ports
from tally_tasks.errors import TallyError

BASES = {"backend": 8000, "frontend": 5000}


class Free:
    """A stand-in for `is_free`: every port is free except `busy`; records each probe."""

    def __init__(self, busy: Iterable[int] = ()) -> None:
        self.busy = set(busy)
        self.asked: list[int] = []

    def __call__(self, port: int) -> bool:
        self.asked.append(port)
        return port not in self.busy


def never(port: int) -> bool:
    raise AssertionError(f"probed port {port}, but nothing needed probing")


# --- next_offset ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "taken, busy, expected",
    [
        ((), (), 0),
        ((8000,), (), 1),
        ((5000,), (), 1),
        ((8000, 5001), (), 2),
        ((8000, 8001, 8002, 5003), (), 4),
        ((8001, 5002), (), 0),
        ((), (5000,), 1),
        ((), (8000, 5001), 2),
        ((8000,), (5001,), 2),
    ],
    ids=[
        "all-free",
        "backend-taken",
        "frontend-taken",
        "one-of-each-taken",
        "run-taken",
        "gap-at-zero",
        "busy-frontend-moves-both",
        "busy-on-both-bases",
        "taken-then-busy",
    ],
)
def test_next_offset(taken: tuple[int, ...], busy: tuple[int, ...], expected: int) -> None:
    free = Free(busy)
    assert ports.next_offset(BASES, taken, free) == expected
    assert all((p - 8000 if p >= 8000 else p - 5000) <= expected for p in free.asked)


def test_next_offset_probes_only_untaken_offsets() -> None:
    free = Free()
    assert ports.next_offset(BASES, [8000, 8001], free) == 2
    assert sorted(free.asked) == [5002, 8002]


@pytest.mark.parametrize(
    "bases, taken, busy",
    [
        ({"backend": 65535}, [65535], ()),
        ({"backend": 65530, "frontend": 5000}, [], range(5000, 5006)),
        ({"backend": 30000}, [], range(30000, 30000 + ports.MAX_OFFSET)),
    ],
    ids=["past-65535", "past-65535-with-a-lower-base", "all-busy"],
)
def test_next_offset_gives_up_naming_the_setting(
    bases: dict[str, int], taken: list[int], busy: Iterable[int]
) -> None:
    with pytest.raises(TallyError, match=r"tally\.ports") as e:
        ports.next_offset(bases, taken, Free(busy))
    assert "backend from" in str(e.value)


def test_next_offset_never_probes_above_65535() -> None:
    free = Free()
    with pytest.raises(TallyError):
        ports.next_offset({"backend": 65534}, [65534, 65535], free)
    assert free.asked == []


# --- allocate -------------------------------------------------------------------------------


def test_allocate_a_new_session_takes_one_offset_for_all() -> None:
    assert ports.allocate(BASES, {}, [8000, 5000, 8001], Free()) == {
        "backend": 8002,
        "frontend": 5002,
    }


def test_allocate_keeps_what_the_session_has() -> None:
    have = {"backend": 8003, "frontend": 5007}
    assert ports.allocate(BASES, have, [8000, 5000], never) == have


def test_allocate_finds_only_a_newly_configured_port() -> None:
    bases = {**BASES, "storybook": 6006}
    have = {"backend": 8002, "frontend": 5002}
    free = Free(busy=[6007])
    got = ports.allocate(bases, have, [8000, 5000, 6006], free)
    assert got == {"backend": 8002, "frontend": 5002, "storybook": 6008}
    assert list(got) == ["backend", "frontend", "storybook"]  # in config order
    assert set(free.asked) <= {6006, 6007, 6008}  # the kept ports are not probed


def test_allocate_new_port_avoids_the_sessions_own_ports() -> None:
    # a new base that lands on a port this session already has
    got = ports.allocate({"backend": 8000, "extra": 8001}, {"backend": 8001}, [], Free())
    assert got == {"backend": 8001, "extra": 8002}


def test_allocate_drops_a_port_removed_from_config() -> None:
    have = {"backend": 8001, "frontend": 5001}
    assert ports.allocate({"backend": 8000}, have, [], never) == {"backend": 8001}


# --- probes against real sockets ------------------------------------------------------------


@contextlib.contextmanager
def listener(family: socket.AddressFamily, host: str, reuse: bool = False) -> Iterator[int]:
    """A socket listening on a kernel-chosen port; yields the port."""
    s = socket.socket(family, socket.SOCK_STREAM)
    try:
        if reuse:  # as Node and Python's socketserver do
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, 0))
        except OSError as e:
            if e.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
                pytest.skip(f"no {host} on this machine")
            raise
        s.listen()
        port = s.getsockname()[1]
        assert port not in (8000, 5000)
        yield port
    finally:
        s.close()


@pytest.mark.parametrize(
    "family, host, reuse",
    [
        (socket.AF_INET, "127.0.0.1", False),
        (socket.AF_INET, "0.0.0.0", False),
        (socket.AF_INET, "127.0.0.1", True),
        (socket.AF_INET, "0.0.0.0", True),
        (socket.AF_INET6, "::1", False),
        (socket.AF_INET6, "::", False),
    ],
    ids=["loopback", "all-addresses", "loopback-reuseaddr", "all-reuseaddr", "ipv6-lo", "ipv6-any"],
)
def test_is_free_sees_a_listener(family: socket.AddressFamily, host: str, reuse: bool) -> None:
    with listener(family, host, reuse) as port:
        assert not ports.is_free(port)
    assert ports.is_free(port)


@pytest.mark.parametrize(
    "host, probe",
    [("127.0.0.1", "127.0.0.1"), ("0.0.0.0", "127.0.0.1")],
    ids=["loopback", "all-addresses"],
)
def test_is_listening(host: str, probe: str) -> None:
    with listener(socket.AF_INET, host) as port:
        assert ports.is_listening(port, probe)
        assert port in ports.listening([port])
    assert not ports.is_listening(port, probe)
    assert port not in ports.listening([port])


def test_holders_names_this_process() -> None:
    with listener(socket.AF_INET, "127.0.0.1") as port:
        found = ports.holders([port])
        assert [h.pid for h in found[port]] == [os.getpid()]
        assert found[port][0].describe().startswith(f"pid {os.getpid()} (")
    assert ports.holders([port]) == {}


def test_holders_are_looked_up_only_for_ports_something_listens_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """While the ports bind, /proc is not walked (nor lsof run, where there is no /proc):
    the kernel's socket tables say first whether anything listens."""
    walked = proc_walks(monkeypatch)
    with listener(socket.AF_INET, "127.0.0.1") as free:
        pass
    assert ports.holders([free]) == {} and walked == []
    with listener(socket.AF_INET, "127.0.0.1") as port:
        assert ports.holders([port, free])[port] and walked == ["/proc"]
        asked: list[set[int]] = []
        monkeypatch.setattr(ports, "_lsof_holders", lambda ps: asked.append(ps) or {})
        monkeypatch.setattr(ports.Path, "exists", lambda self: str(self) != "/proc/net/tcp")
        ports.holders([port, free])
    assert asked == [{port}]


def test_holders_know_each_holders_folder(tmp_path: Path) -> None:
    """Whose dev server is it? Decided by the holder's working folder."""
    with listener(socket.AF_INET, "127.0.0.1") as port:
        found = ports.holders([port])
        assert found[port][0].cwd == os.getcwd()


@pytest.mark.skipif(shutil.which("lsof") is None, reason="lsof is not installed")
def test_the_lsof_path_for_machines_without_proc_finds_pid_command_and_folder(
    tmp_path: Path,
) -> None:
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", "0", "--bind", "127.0.0.1"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()  # "Serving HTTP on 127.0.0.1 port N ..."
        port = int(line.split(" port ")[1].split()[0])
        found = ports._lsof_holders({port})
        [holder] = found[port]
        assert holder.pid == server.pid
        assert holder.cwd == str(tmp_path)
        assert holder.command.startswith("python")
    finally:
        server.terminate()
        server.wait()


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="Linux only")
def test_the_kernels_listening_sockets_are_what_proc_net_lists() -> None:
    """sock_diag (asked over netlink) and /proc/net/tcp{,6} name the same listening sockets:
    on 127.0.0.1, 0.0.0.0 and ::1, not one only bound, not a connection."""
    opened = []
    try:
        for family, host, listen in [
            (socket.AF_INET, "127.0.0.1", True),
            (socket.AF_INET, "0.0.0.0", True),
            (socket.AF_INET6, "::1", True),
            (socket.AF_INET, "127.0.0.1", False),  # bound only
        ]:
            s = socket.socket(family)
            opened.append(s)
            s.bind((host, 0))
            if listen:
                s.listen()
        client = socket.create_connection(opened[0].getsockname()[:2])
        opened.append(client)
        wanted = {s.getsockname()[1] for s in opened}
        asked = ports._sock_diag_listening()
        assert asked is not None
        from_kernel = {inode: port for inode, port in asked if port in wanted}
        assert from_kernel == ports._proc_net_listening(wanted)
        assert set(from_kernel.values()) == {s.getsockname()[1] for s in opened[:3]}
    finally:
        for s in opened:
            s.close()


def test_without_sock_diag_proc_net_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        monkeypatch.setattr(ports, "_sock_diag_listening", lambda: None)
        assert ports.listening([port, 1]) == {port}
