"""Port allocation: pure choice of the lowest free offset, plus the bind probe."""

from __future__ import annotations

import contextlib
import errno
import socket
from collections.abc import Callable, Iterable, Mapping

from .errors import TallyError

MAX_OFFSET = 1000

# 127.0.0.1 and 0.0.0.0 both: a server on all addresses blocks loopback and the other
# way round (macOS's AirPlay Receiver holds 5000 and 7000 on every address).
_PROBES = [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET, "0.0.0.0")]
if socket.has_ipv6:
    _PROBES += [(socket.AF_INET6, "::1"), (socket.AF_INET6, "::")]


def is_free(port: int) -> bool:
    """True when nothing on this machine listens on `port` (probe by binding)."""
    for family, host in _PROBES:
        with contextlib.closing(socket.socket(family, socket.SOCK_STREAM)) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                s.bind((host, port))
            except OSError as e:
                if e.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
                    continue  # no such address family here: nothing can listen on it
                return False
    return True


def is_listening(port: int, host: str = "127.0.0.1", timeout: float = 0.2) -> bool:
    """True when something accepts connections on `port`."""
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
    for k in range(limit):
        ports = [base + k for base in bases.values()]
        if any(p > 65535 for p in ports):
            break
        if not taken.intersection(ports) and all(free(p) for p in ports):
            return k
    names = ", ".join(f"{n} from {b}" for n, b in bases.items())
    raise TallyError(
        f"no free ports ({names}) in the first {limit} tries; "
        "remove old sessions or change tally.ports in invoke.yaml"
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
