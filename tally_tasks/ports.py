"""Port allocation: pure choice of the lowest free offset, plus the bind probe."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from .errors import TallyError

MAX_OFFSET = 1000


def _probes() -> list[tuple[int, str]]:
    # `_socket`, socket's C half, here and in is_free: `socket` itself makes enums of
    # every constant as it is imported (3 ms), and a bind needs none of them. Imported
    # here: `list` reads /proc, it binds and connects nothing.
    import _socket

    # 127.0.0.1 and 0.0.0.0 both: a server on all addresses blocks loopback and the other
    # way round (macOS's AirPlay Receiver holds 5000 and 7000 on every address).
    found = [(_socket.AF_INET, "127.0.0.1"), (_socket.AF_INET, "0.0.0.0")]
    if _socket.has_ipv6:
        found += [(_socket.AF_INET6, "::1"), (_socket.AF_INET6, "::")]
    return found


def is_free(port: int) -> bool:
    """True when nothing on this machine listens on `port` (probe by binding)."""
    import _socket

    for family, host in _probes():
        with contextlib.closing(_socket.socket(family, _socket.SOCK_STREAM)) as s:
            s.setsockopt(_socket.SOL_SOCKET, _socket.SO_REUSEADDR, 1)
            if family == _socket.AF_INET6:
                s.setsockopt(_socket.IPPROTO_IPV6, _socket.IPV6_V6ONLY, 1)
            try:
                s.bind((host, port))
            except OSError as e:
                if e.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
                    continue  # no such address family here: nothing can listen on it
                return False
    return True


def is_listening(port: int, host: str = "127.0.0.1", timeout: float = 0.2) -> bool:
    """True when something accepts connections on `port`."""
    import socket

    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def next_offset(
    bases: Mapping[str, int],
    taken: Iterable[int],
    free: Callable[[int], bool] = is_free,
    limit: int = MAX_OFFSET,
) -> int:
    """The lowest k for which every base+k is neither taken nor in use."""
    taken = set(taken)
    tried = 0
    for k in range(limit):
        ports = [base + k for base in bases.values()]
        if any(p > 65535 for p in ports):
            break
        tried += 1
        if not taken.intersection(ports) and all(free(p) for p in ports):
            return k
    names = ", ".join(f"{n} from {b}" for n, b in bases.items())
    where = f"in the first {limit} tries" if tried == limit else "up to port 65535"
    raise TallyError(
        f"no free ports ({names}) {where}; remove old sessions or change tally.ports in invoke.yaml"
    )


def allocate(
    bases: Mapping[str, int],
    have: Mapping[str, int],
    taken: Iterable[int],
    free: Callable[[int], bool] = is_free,
) -> dict[str, int]:
    """Ports for a session: keep those it `have`s, find the missing ones.

    A new session takes one offset for all its ports (8001 with 5001); a port added to
    the config later is found on its own.
    """
    missing = {n: b for n, b in bases.items() if n not in have}
    if not missing:
        return {n: have[n] for n in bases}
    taken = set(taken) | set(have.values())
    if not have:
        k = next_offset(missing, taken, free)
        return {n: b + k for n, b in missing.items()}
    found = dict(have)
    for n, b in missing.items():
        found[n] = b + next_offset({n: b}, taken, free)
        taken.add(found[n])
    return {n: found[n] for n in bases}


class Holder(NamedTuple):
    """A process listening on a port (what ``lsof -i :PORT`` would show)."""

    pid: int
    command: str
    cwd: str | None

    def describe(self) -> str:
        cmd = " ".join(self.command.split())
        return f"pid {self.pid} ({cmd[:57] + '...' if len(cmd) > 60 else cmd})"


def listening(ports: Iterable[int]) -> set[int]:
    """Which of `ports` something listens on (one read of /proc/net, else a connect each)."""
    wanted = set(ports)
    if Path("/proc/net/tcp").exists():
        return set(_listening_inodes(wanted).values())
    return {p for p in wanted if is_listening(p) or is_listening(p, "::1")}


def _listening_inodes(ports: set[int]) -> dict[str, int]:
    """socket inode -> port, for LISTEN sockets on `ports` (Linux: the kernel's sock_diag,
    else /proc/net)."""
    asked = _sock_diag_listening()
    if asked is not None:
        return {inode: port for inode, port in asked if port in ports}
    return _proc_net_listening(ports)


# sock_diag (linux/netlink.h, sock_diag.h, inet_diag.h): what `ss -tln` asks
_NETLINK_SOCK_DIAG, _SOCK_DIAG_BY_FAMILY, _NLMSG_ERROR, _NLMSG_DONE = 4, 20, 2, 3
_NLM_F_REQUEST_DUMP = 0x1 | 0x300
_TCP_LISTEN = 10


def _sock_diag_listening() -> list[tuple[str, int]] | None:
    """(socket inode, port) of every listening TCP socket in this network namespace, asked
    of the kernel over netlink; None where it cannot be asked (not Linux, refused).

    /proc/net/tcp and tcp6 are made by walking the kernel's whole socket tables: 1.5 ms
    each here with one socket open, every time; this asks for the listening ones only."""
    import _socket  # socket's C half, as in _probes: without the 3 ms of socket's enums
    import struct

    if not hasattr(_socket, "AF_NETLINK"):
        return None
    found: list[tuple[str, int]] = []
    try:
        asking = _socket.socket(_socket.AF_NETLINK, _socket.SOCK_RAW, _NETLINK_SOCK_DIAG)
        with contextlib.closing(asking) as nl:
            for seq, family in enumerate((_socket.AF_INET, _socket.AF_INET6), 1):
                # inet_diag_req_v2: family, protocol, ext, pad, states; a zero socket id
                req = struct.pack("=BBBxI", family, _socket.IPPROTO_TCP, 0, 1 << _TCP_LISTEN)
                req += bytes(48)
                head = struct.pack(
                    "=IHHII", 16 + len(req), _SOCK_DIAG_BY_FAMILY, _NLM_F_REQUEST_DUMP, seq, 0
                )
                nl.sendall(head + req)
                if not _read_diag(nl, seq, found):
                    return None
    except OSError:
        return None
    return found


def _read_diag(nl: Any, seq: int, found: list[tuple[str, int]]) -> bool:
    """Read one dump's answers into `found` (inode, port); False on an error message."""
    import struct

    while True:
        data = nl.recv(65536)
        if not data:
            return False
        at = 0
        while at + 16 <= len(data):
            length, kind, _flags, got_seq, _pid = struct.unpack_from("=IHHII", data, at)
            if length < 16:
                return False
            if got_seq == seq:
                if kind == _NLMSG_DONE:
                    return True
                if kind == _NLMSG_ERROR:
                    return False
                if kind == _SOCK_DIAG_BY_FAMILY and length >= 16 + 72:
                    # inet_diag_msg: family, state, timer, retrans, then the socket id
                    # (sport big-endian first, 48 bytes), expires, rqueue, wqueue, uid, inode
                    (port,) = struct.unpack_from(">H", data, at + 16 + 4)
                    (inode,) = struct.unpack_from("=I", data, at + 16 + 68)
                    found.append((str(inode), port))
            at += (length + 3) & ~3


def _proc_net_listening(ports: set[int]) -> dict[str, int]:
    found: dict[str, int] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[3] != "0A":  # 0A = LISTEN
                continue
            port = int(fields[1].rsplit(":", 1)[1], 16)
            if port in ports:
                found[fields[9]] = port
    return found


def _proc_cmd(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        return raw.replace(b"\0", b" ").decode(errors="replace").strip() or "?"
    except OSError:
        return "?"


def holders(ports: Iterable[int]) -> dict[int, list[Holder]]:
    """For each port that something listens on: the processes holding it (when visible).
    Only the ports something listens on are looked up (every process's open files, or
    lsof): while they all bind, nothing is."""
    wanted = set(ports)
    result: dict[int, list[Holder]] = {}
    if Path("/proc/net/tcp").exists():
        inodes = _listening_inodes(wanted)
        if not inodes:
            return {}
        targets = {f"socket:[{inode}]": port for inode, port in inodes.items()}
        for pid_dir in Path("/proc").iterdir():
            if not pid_dir.name.isdigit():
                continue
            try:
                fds = list((pid_dir / "fd").iterdir())
            except OSError:
                continue
            ports_held = set()
            for fd in fds:
                try:
                    link = os.readlink(fd)
                except OSError:
                    continue
                if link in targets:
                    ports_held.add(targets[link])
            if not ports_held:
                continue
            pid = int(pid_dir.name)
            try:
                cwd: str | None = os.readlink(pid_dir / "cwd")
            except OSError:
                cwd = None
            for port in ports_held:
                result.setdefault(port, []).append(Holder(pid, _proc_cmd(pid), cwd))
        for port in set(inodes.values()) - set(result):
            result[port] = []  # listening, but the holder is not ours to see
        return result
    return _lsof_holders({p for p in wanted if not is_free(p)})


def _lsof_holders(ports: set[int]) -> dict[int, list[Holder]]:
    result: dict[int, list[Holder]] = {}
    for port in sorted(ports):
        try:
            proc = subprocess.run(
                ["lsof", "-nP", f"-iTCP:{port}", "-sTCP:LISTEN", "-Fpc"],
                capture_output=True,
                text=True,
            )
        except OSError:
            return {p: [] for p in ports if not is_free(p)}
        pid = 0
        for line in proc.stdout.splitlines():
            if line.startswith("p"):
                pid = int(line[1:])
            elif line.startswith("c") and pid:
                result.setdefault(port, []).append(Holder(pid, line[1:], None))
    cwds = _lsof_cwds({h.pid for hs in result.values() for h in hs})
    return {
        port: [Holder(h.pid, h.command, cwds.get(h.pid)) for h in hs] for port, hs in result.items()
    }


def _lsof_cwds(pids: set[int]) -> dict[int, str]:
    """pid -> working folder, where /proc is missing (macOS): whose dev server is it?"""
    if not pids:
        return {}
    arg = ",".join(str(p) for p in sorted(pids))
    try:
        proc = subprocess.run(
            ["lsof", "-a", "-p", arg, "-d", "cwd", "-Fn"], capture_output=True, text=True
        )
    except OSError:
        return {}
    found: dict[int, str] = {}
    pid = 0
    for line in proc.stdout.splitlines():
        if line.startswith("p"):
            pid = int(line[1:])
        elif line.startswith("n") and pid:
            found[pid] = line[1:]
    return found


def stop(pids: Iterable[int], grace: float = 3.0) -> list[int]:
    """SIGTERM, then SIGKILL after `grace` seconds for those still alive; returns those ended."""
    pids = [p for p in set(pids) if p != os.getpid()]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    alive = set(pids)
    while alive and time.monotonic() < deadline:
        alive = {p for p in alive if is_alive(p)}
        if alive:
            time.sleep(0.05)
    for pid in alive:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    return [p for p in pids if not is_alive(p) or p in alive]


def process_start(pid: int) -> str | None:
    """When `pid` started, as "<boot id>:<start tick>" (Linux); None where unknown. Two
    processes with one pid have different starts: a pid reused is told apart."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        stat = Path(f"/proc/{pid}/stat").read_text()
        return f"{boot}:{stat.rsplit(')', 1)[1].split()[19]}"
    except (OSError, IndexError):
        return None


def is_alive(pid: int) -> bool:
    """True while process `pid` runs (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child of ours is gone for our purposes
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except (OSError, IndexError):
        return True
