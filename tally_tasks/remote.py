"""Sessions on other machines: the same tasks, run there over SSH with Fabric.

One implementation, two transports: a task given ``--host NAME`` runs ``tally-session
<task> ...`` in the host's main checkout through a ``fabric.Connection``, streams its
step lines back and exits with its status. Fabric (and paramiko) are imported only here,
only when a remote operation runs: local commands never pay for them.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from .errors import TallyError

NOT_INSTALLED = 127


@dataclass(frozen=True)
class Host:
    name: str
    host: str  # [user@]hostname[:port]
    main: str  # the main checkout there; ~ is the remote HOME
    port: int | None = None
    key: str | None = None
    command: str = "tally-session"
    env: dict[str, str] = field(default_factory=dict)


def hosts_from(raw: Any) -> dict[str, Host]:
    """Check `tally.hosts` and return its hosts by name."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise TallyError("config key tally.hosts must be a mapping of name: {host, main, ...}")
    hosts = {}
    for name, spec in raw.items():
        key = f"tally.hosts.{name}"
        if spec is None:
            continue  # a host dropped in a higher config layer
        if not isinstance(spec, Mapping):
            raise TallyError(f"config key {key} must be a mapping with host and main")
        host, main = spec.get("host"), spec.get("main")
        if not isinstance(host, str) or not host:
            raise TallyError(f"config key {key}.host must be user@hostname, got {host!r}")
        if not isinstance(main, str) or not main:
            raise TallyError(f"config key {key}.main must be the main checkout's path there")
        port = spec.get("port")
        if port is not None and (isinstance(port, bool) or not isinstance(port, int)):
            raise TallyError(f"config key {key}.port must be a port number, got {port!r}")
        keyfile = spec.get("key")
        if keyfile is not None and not isinstance(keyfile, str):
            raise TallyError(f"config key {key}.key must be a path, got {keyfile!r}")
        command = spec.get("command") or "tally-session"
        env = spec.get("env") or {}
        if not isinstance(command, str) or not isinstance(env, Mapping):
            raise TallyError(f"config key {key}: command must be a string and env a mapping")
        hosts[str(name)] = Host(
            str(name), host, main, port, keyfile, command, {str(k): str(v) for k, v in env.items()}
        )
    return hosts


def pick(hosts: Mapping[str, Host], name: str) -> Host:
    if name not in hosts:
        known = ", ".join(hosts) or "none configured"
        raise TallyError(f"no host named {name!r} in tally.hosts (hosts: {known})")
    return hosts[name]


def _path(path: str) -> str:
    """A remote path for the shell: ``~/x`` stays relative to the remote HOME."""
    if path == "~":
        return '"$HOME"'
    if path.startswith("~/"):
        return '"$HOME"/' + shlex.quote(path[2:])
    return shlex.quote(path)


def command_line(host: Host, argv: Sequence[str]) -> str:
    """The shell line run on the host: cd to its main checkout, run the same task."""
    env = " ".join(f"{k}={shlex.quote(v)}" for k, v in host.env.items())
    prog = _path(host.command) if "/" in host.command else shlex.quote(host.command)
    args = " ".join(shlex.quote(a) for a in argv)
    check = f"command -v {prog} >/dev/null 2>&1 || exit {NOT_INSTALLED}"
    return f"cd {_path(host.main)} && {check} && {env + ' ' if env else ''}{prog} {args}"


def connect(host: Host, timeout: float = 10.0) -> Any:
    import fabric  # here: paramiko costs every local command 50-200 ms

    kwargs: dict[str, Any] = {}
    if host.key:
        import os

        kwargs["key_filename"] = os.path.expanduser(host.key)
    return fabric.Connection(
        host.host, port=host.port, connect_timeout=timeout, connect_kwargs=kwargs
    )


def _describe(host: Host) -> str:
    return f"{host.name} ({host.host}{f':{host.port}' if host.port else ''})"


def _reason(e: BaseException) -> str:
    """One line for any error: invoke's ThreadException wraps a thread's traceback."""
    inner = getattr(e, "exceptions", None)
    if inner and hasattr(inner[0], "value"):
        e = inner[0].value
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return lines[0] if lines else type(e).__name__


def _unreachable(host: Host, e: BaseException) -> TallyError:
    reason = _reason(e)
    return TallyError(
        f"cannot reach host {_describe(host)}: {reason}; check tally.hosts.{host.name}"
    )


def run(
    host: Host, argv: Sequence[str], capture: bool = False, timeout: float | None = None
) -> Any:
    """Run the task there; output streams through unless `capture`. Returns invoke's Result."""
    line = command_line(host, argv)
    try:
        with connect(host) as conn:
            result = conn.run(
                line, warn=True, hide=capture, in_stream=False, pty=False, timeout=timeout
            )
    except TallyError:
        raise
    except Exception as e:  # paramiko, socket and invoke errors: one plain line
        raise _unreachable(host, e) from None
    if result.exited == NOT_INSTALLED:
        raise TallyError(
            f"{host.command} is not installed on {_describe(host)} (or {host.main} is missing): "
            f"run `pip install tally-tasks` there, or set tally.hosts.{host.name}.command"
        )
    return result


def sessions(host: Host, timeout: float = 8.0) -> list[dict[str, Any]]:
    """The host's sessions (`list --json --brief`), or TallyError when it cannot say."""
    result = run(host, ["list", "--json", "--brief"], capture=True, timeout=timeout)
    if result.exited != 0:
        last = (result.stderr.strip().splitlines() or ["exit status " + str(result.exited)])[-1]
        raise TallyError(f"{host.name}: {last}")
    try:
        rows = json.loads(result.stdout)
    except json.JSONDecodeError:
        raise TallyError(f"{host.name}: unexpected answer from {host.command} list") from None
    return rows if isinstance(rows, list) else []


def all_sessions(
    hosts: Mapping[str, Host], timeout: float = 8.0
) -> dict[str, list[dict[str, Any]] | str]:
    """Every host's sessions, asked in parallel: rows, or the reason it could not answer."""

    def one(host: Host) -> list[dict[str, Any]] | str:
        try:
            return sessions(host, timeout)
        except TallyError as e:
            return str(e)

    if not hosts:
        return {}
    with ThreadPoolExecutor(max_workers=min(8, len(hosts))) as pool:
        return dict(zip(hosts, pool.map(one, hosts.values()), strict=True))


def least_busy(hosts: Mapping[str, Host], timeout: float = 8.0) -> Host:
    """The reachable host with the fewest sessions (ties: the first configured)."""
    if not hosts:
        raise TallyError("--host auto needs hosts in tally.hosts")
    answers = all_sessions(hosts, timeout)
    counts = {n: len(r) for n, r in answers.items() if isinstance(r, list)}
    if not counts:
        reasons = "; ".join(str(r) for r in answers.values())
        raise TallyError(f"no host answered: {reasons}")
    best = min(counts, key=lambda n: (counts[n], list(hosts).index(n)))
    return hosts[best]


def find_session(host: Host, name: str) -> dict[str, Any]:
    for row in sessions(host):
        if row.get("name") == name:
            return row
    raise TallyError(f"no session named {name!r} on {host.name}")


def forward(host: Host, ports: Mapping[str, int], offset: int = 0) -> None:
    """Forward the ports from the host to localhost (+offset) until Ctrl-C."""
    import contextlib
    import threading

    from . import output
    from .ports import is_free

    local = {name: number + offset for name, number in ports.items()}
    outside = [f"{name} {number}" for name, number in local.items() if not 0 < number < 65536]
    if outside:
        raise TallyError(
            f"--offset {offset} puts {', '.join(outside)} outside 1-65535; pick another offset"
        )
    # the tunnel binds in a background thread: a taken port would only show at Ctrl-C
    taken = [f"{name} {number}" for name, number in local.items() if not is_free(number)]
    if taken:
        raise TallyError(
            f"local port(s) {', '.join(taken)} already in use here; "
            "forward to other local ports with --offset N"
        )
    try:
        with connect(host) as conn, contextlib.ExitStack() as stack:
            for port_name, number in ports.items():
                stack.enter_context(
                    conn.forward_local(local_port=local[port_name], remote_port=number)
                )
                output.step(
                    "forward",
                    f"{port_name}: http://localhost:{local[port_name]}/ → {host.name}:{number}",
                )
            output.info("forwarding; press Ctrl-C to stop")
            threading.Event().wait()
    except KeyboardInterrupt:
        output.step("forward", "stopped")
    except TallyError:
        raise
    except Exception as e:
        raise _unreachable(host, e) from None


def ssh_argv(host: Host, remote_cmd: str) -> list[str]:
    """An interactive `ssh -t` command line for the host (for attach)."""
    argv = ["ssh", "-t"]
    if host.port:
        argv += ["-p", str(host.port)]
    if host.key:
        argv += ["-i", host.key]
    return [*argv, host.host, remote_cmd]
