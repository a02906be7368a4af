"""Sessions on other machines: the same tasks, run there over SSH with Fabric.

One implementation, two transports: a task given ``--host NAME`` runs ``tally-session
<task> ...`` in the host's main checkout through a ``fabric.Connection``, streams its
step lines back and exits with its status. Fabric (and paramiko) are imported only here,
only when a remote operation runs: local commands never pay for them.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, TextIO

from . import output
from .config import check_keys
from .errors import TallyError

NOT_INSTALLED = 127
NO_CHECKOUT = 126
CONNECT_TIMEOUT = 10.0  # seconds for TCP, the SSH banner and auth, each
LIST_TIMEOUT = 5.0  # a listing asks every host: a silent one must not hold it up long


@dataclass
class Host:
    """A remote dev host from `tally.hosts`."""

    name: str
    host: str  # [user@]hostname[:port]
    main: str  # the main checkout there; ~ is the remote HOME
    port: int | None = None
    key: str | None = None
    command: str = "tally-session"
    env: dict[str, str] = field(default_factory=dict)
    timeout: float | None = None  # seconds to connect; None: CONNECT_TIMEOUT, LIST_TIMEOUT
    ssh_args: tuple[str, ...] = ()  # extra arguments for the interactive `ssh -t` (attach)


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
        check_keys(spec, [f.name for f in fields(Host) if f.name != "name"], f"hosts.{name}")
        host, main = spec.get("host"), spec.get("main")
        if not isinstance(host, str) or not host:
            raise TallyError(f"config key {key}.host must be user@hostname, got {host!r}")
        if not isinstance(main, str) or not main:
            raise TallyError(f"config key {key}.main must be the main checkout's path there")
        port = spec.get("port")
        if port is not None and (
            isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536
        ):
            raise TallyError(f"config key {key}.port must be a port number, got {port!r}")
        timeout = spec.get("timeout")
        if timeout is not None and (
            isinstance(timeout, bool)
            or not isinstance(timeout, (int, float))
            or not 0 < timeout < 3600
        ):
            raise TallyError(f"config key {key}.timeout must be seconds, got {timeout!r}")
        ssh_args = spec.get("ssh_args") or []
        if not isinstance(ssh_args, list) or not all(isinstance(a, str) for a in ssh_args):
            raise TallyError(
                f"config key {key}.ssh_args must be a list of ssh arguments, got {ssh_args!r}"
            )
        keyfile = spec.get("key")
        if keyfile is not None and not isinstance(keyfile, str):
            raise TallyError(f"config key {key}.key must be a path, got {keyfile!r}")
        command = spec.get("command") or "tally-session"
        env = spec.get("env") or {}
        if not isinstance(command, str) or not isinstance(env, Mapping):
            raise TallyError(f"config key {key}: command must be a string and env a mapping")
        bad = [k for k in env if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(k))]
        if bad:
            raise TallyError(f"config key {key}.env: {bad[0]!r} is not a variable name")
        hosts[str(name)] = Host(
            str(name),
            host,
            main,
            port,
            keyfile,
            command,
            {str(k): str(v) for k, v in env.items()},
            None if timeout is None else float(timeout),
            tuple(ssh_args),
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


def _program(command: str) -> list[str]:
    """``~/venv/bin/python -m tally_tasks.cli`` -> its words quoted, the first as a path."""
    try:
        words = shlex.split(command)
    except ValueError:
        words = [command]
    first = _path(words[0]) if "/" in words[0] else shlex.quote(words[0])
    return [first, *(shlex.quote(w) for w in words[1:])]


# `$NAME` or `${NAME}`: a variable, expanded on the host; any other `$` is a plain dollar
_VARIABLE = re.compile(r"\$(?:[A-Za-z_][A-Za-z0-9_]*|\{[A-Za-z_][A-Za-z0-9_]*\})")


def _expanding(value: str) -> str:
    """Double-quoted for the host's shell: `$VAR` and `${VAR}` expand there (`PATH:
    "/opt/v/bin:$PATH"`); nothing else does: no `$(...)`, backticks, `${VAR:-...}`."""
    out, last = [], 0
    for m in _VARIABLE.finditer(value):
        out += [_plain(value[last : m.start()]), m.group()]
        last = m.end()
    return '"' + "".join([*out, _plain(value[last:])]) + '"'


def _plain(text: str) -> str:
    """`text` inside double quotes, every character as itself."""
    return "".join("\\" + c if c in '"\\`$' else c for c in text)


def command_line(
    host: Host,
    argv: Sequence[str],
    caller: str = "inv",
    explain: bool = False,
    watch: bool = False,
    color: bool = False,
) -> str:
    """The shell line run on the host: cd to its main checkout, run the same task.

    ``TALLY_VIA`` tells the host's tally-session who asked, so the commands it suggests
    are the caller's (``inv session.resume --name x --host box1``); ``TALLY_COLOR`` that
    its lines are shown on a terminal. `watch`: the task gets SIGINT, as from Ctrl-C at
    a terminal, when its stdin (the SSH channel) is closed: see `_watched`.
    """
    ours = {"TALLY_VIA": f"{caller} {host.name}"}
    if os.environ.get("NO_COLOR"):
        ours["NO_COLOR"] = os.environ["NO_COLOR"]
    elif color:
        ours["TALLY_COLOR"] = "1"
    # exported first: the host's `env` (a PATH, say) holds for the "installed?" check too
    assigns = " ".join(
        [f"{k}={_expanding(v)}" for k, v in host.env.items()]
        + [f"{k}={shlex.quote(v)}" for k, v in ours.items()]
    )
    prog = _program(host.command)
    args = " ".join([*prog, *(shlex.quote(a) for a in argv)])

    def fail(code: int, why: str) -> str:
        # said by the host only where no one else will say it (attach's bare ssh)
        return f"{{ echo {shlex.quote(why)} >&2; exit {code}; }}" if explain else f"exit {code}"

    missing = fail(NO_CHECKOUT, f"tally-session: {host.main} does not exist on {host.name}")
    absent = fail(NOT_INSTALLED, f"tally-session: {host.command} is not installed on {host.name}")
    return (
        f"export {assigns}; "
        f"{{ cd {_path(host.main)} 2>/dev/null || {missing}; }} && "
        f"{{ command -v {prog[0]} >/dev/null 2>&1 || {absent}; }} && "
        f"{_watched(args) if watch else args}"
    )


def _watched(args: str) -> str:
    """`args` run so that the end of stdin interrupts it: Ctrl-C here closes the channel's
    stdin (without a pty there is no terminal to carry a ^C, and OpenSSH refuses signal
    requests in many setups), and so does a connection that drops.

    A watcher in the background waits for stdin's end (on fd 3: a background job's own
    stdin is /dev/null), then sends SIGINT to the session's process group, which sshd
    made for this command alone: the task gets it as from a terminal's Ctrl-C (it undoes
    its add); the shell's no-op trap keeps it alive to pass the task's status on. A task
    that ends first ends the watcher."""
    return (
        "{ exec 3<&0; trap : INT; "
        "{ cat <&3; kill -INT 0; } </dev/null >/dev/null 2>&1 & w=$!; "
        f"{args} </dev/null 3<&-; s=$?; kill $w 2>/dev/null; exit $s; }}"
    )


def _address(host: Host) -> tuple[str, int | None]:
    """``user@box:2222`` -> (``user@box``, 2222); an explicit `port` wins."""
    name, sep, port = host.host.rpartition(":")
    if sep and port.isdigit() and "]" not in port and ":" not in name:
        return name, host.port or int(port)
    return host.host, host.port


def connect(host: Host, timeout: float | None = None) -> Any:
    import logging

    import fabric  # here: paramiko costs every local command 50-200 ms

    # paramiko logs a failed handshake from its own thread as a traceback on stderr
    quiet = logging.getLogger("paramiko")
    if not quiet.handlers:
        quiet.addHandler(logging.NullHandler())
        quiet.propagate = False
    timeout = timeout or host.timeout or CONNECT_TIMEOUT
    kwargs: dict[str, Any] = {"banner_timeout": timeout, "auth_timeout": timeout}
    if host.key:
        kwargs["key_filename"] = os.path.expanduser(host.key)
    address, port = _address(host)
    conn = fabric.Connection(address, port=port, connect_timeout=timeout, connect_kwargs=kwargs)
    # ~/.ssh/known_hosts as ssh reads it: a host whose key changed is refused (paramiko
    # raises BadHostKeyException); one not in it yet is accepted and recorded there, as
    # `StrictHostKeyChecking=accept-new` does
    with contextlib.suppress(OSError):
        conn.client.load_system_host_keys()
    hashed = str(conn.ssh_config.get("hashknownhosts", "no")).lower() == "yes"
    conn.client.set_missing_host_key_policy(_AcceptNew(host, hashed))
    return conn


KNOWN_HOSTS = "~/.ssh/known_hosts"
_known_hosts_lock = threading.Lock()  # hosts are asked in parallel threads


@dataclass
class _AcceptNew:
    """paramiko's policy for a host not in known_hosts: trust it on first use and write
    its key into the user's ~/.ssh/known_hosts, as ssh's accept-new does (hashed when
    ssh's HashKnownHosts says so or the file already hashes its names)."""

    host: Host
    hash_names: bool

    def missing_host_key(self, client: Any, hostname: str, key: Any) -> None:
        path = os.path.expanduser(KNOWN_HOSTS)
        try:
            remember_host_key(path, hostname, key.get_name(), key.get_base64(), self.hash_names)
        except OSError as e:
            raise TallyError(
                f"cannot record the key of host {_describe(self.host)} in {path} "
                f"({e.strerror}); fix that file's permissions, or add the key with ssh"
            ) from None
        # quietly, unlike ssh: stdout may be --json, and an error stays one line
        client.get_host_keys().add(hostname, key.get_name(), key)


def remember_host_key(path: str, name: str, key_type: str, key: str, hash_names: bool) -> None:
    """Append `name`'s key to the known_hosts file at `path` (folder made 0700, as ssh
    does); hashed when `hash_names` or when the file hashes its names already."""
    from paramiko.hostkeys import HostKeys

    with _known_hosts_lock:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        try:
            with open(path, "rb") as f:
                have = f.read()
        except FileNotFoundError:
            have = b""
        if hash_names or any(ln.startswith(b"|1|") for ln in have.splitlines()):
            name = HostKeys.hash_host(name)
        line = f"{name} {key_type} {key}\n"
        if have and not have.endswith(b"\n"):
            line = "\n" + line
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        with os.fdopen(fd, "w") as f:
            f.write(line)


def _describe(host: Host) -> str:
    return f"{host.name} ({host.host}{f':{host.port}' if host.port else ''})"


def _reason(e: BaseException) -> str:
    """One line for any error: invoke's ThreadException wraps a thread's traceback."""
    inner = getattr(e, "exceptions", None)
    if inner and hasattr(inner[0], "value"):
        e = inner[0].value
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return lines[0] if lines else type(e).__name__


def _unreachable(host: Host, e: BaseException, timeout: float = CONNECT_TIMEOUT) -> TallyError:
    reason = _reason(e)
    # paramiko's words for a port that accepts but never speaks SSH (a hung sshd, a
    # firewall, a web server): a timeout or a banner it could not read
    silent = reason in ("No existing session", "timed out") or reason.startswith(
        "Error reading SSH protocol banner"
    )
    if isinstance(e, TimeoutError) or silent:
        reason = f"no SSH server answered within {timeout:g} s"
    if type(e).__name__ == "BadHostKeyException":  # not the config's fault
        address, port = _address(host)
        name = address.rpartition("@")[2]
        known = f"[{name}]:{port}" if port and port != 22 else name
        return TallyError(
            f"host {_describe(host)} answers with another key than ~/.ssh/known_hosts has "
            f"for it; if the host was really changed, forget the old key with: "
            f"ssh-keygen -R {shlex.quote(known)}"
        )
    return TallyError(
        f"cannot reach host {_describe(host)}: {reason}; check tally.hosts.{host.name}"
    )


def run(
    host: Host,
    argv: Sequence[str],
    capture: bool = False,
    timeout: float | None = None,
    caller: str = "inv",
    connect_timeout: float | None = None,
    streams: tuple[TextIO, TextIO] | None = None,
) -> Any:
    """Run the task there; output streams through unless `capture` (to `streams`, its
    stdout's and its stderr's, when given: a full-screen view's lines). Returns invoke's
    Result.

    Without a pty, so its errors stay on stderr. Ctrl-C here closes the task's stdin
    there, which interrupts it as a terminal's Ctrl-C would (it undoes its add); its
    lines, and its status, still come back. A second Ctrl-C stops waiting for it.
    """
    import sys

    out, err = streams or (sys.stdout, sys.stderr)
    color = not capture and output.use_color(out) and output.use_color(err)
    line = command_line(host, argv, caller, watch=True, color=color)
    connect_timeout = host.timeout or connect_timeout or CONNECT_TIMEOUT
    interrupted: list[bool] = []
    try:
        with connect(host, connect_timeout) as conn:
            conn.config.runners.remote = _interruptible(host, interrupted)
            result = conn.run(
                line,
                warn=True,
                hide=capture,
                in_stream=False,
                timeout=timeout,
                **({"out_stream": out, "err_stream": err} if streams else {}),
            )
    except (TallyError, BrokenPipeError):  # a closed pipe is the reader's, not the host's
        raise
    except Exception as e:  # paramiko, socket and invoke errors: one plain line
        raise _unreachable(host, e, connect_timeout) from None
    if interrupted and result.exited == 0:
        output.warn(
            "host",
            f"Ctrl-C came after {argv[0] if argv else 'the task'} had finished on "
            f"{host.name}: nothing was undone there",
            to_stderr=True,
        )
    if result.exited == NO_CHECKOUT:
        raise TallyError(
            f"{host.main} does not exist on {_describe(host)}; "
            f"set tally.hosts.{host.name}.main to the main checkout there"
        )
    if result.exited == NOT_INSTALLED:
        raise TallyError(
            f"{host.command} is not installed on {_describe(host)}: run "
            f"`pip install tally-tasks` there, or set tally.hosts.{host.name}.command"
        )
    if result.exited is None or result.exited < 0:
        raise TallyError(
            f"{host.command} on {host.name} ended without an exit status (killed, or the "
            "connection dropped); see what it left with: "
            + output.command("list", None, "--host", shlex.quote(host.name))
        )
    return result


def _interruptible(host: Host, interrupted: list[bool]) -> type:
    """Fabric's runner, with Ctrl-C passed on as the end of the task's stdin (see
    `_watched`); `interrupted` records that it was."""
    from fabric.runners import Remote

    class Interruptible(Remote):
        def send_interrupt(self, interrupt: KeyboardInterrupt) -> None:
            if interrupted:  # the second Ctrl-C: stop waiting
                self.channel.close()
                output.warn(
                    "host",
                    f"stopped waiting; the task goes on undoing on {host.name}; see: "
                    + output.command("list", None, "--host", shlex.quote(host.name)),
                    to_stderr=True,
                )
                raise interrupt
            interrupted.append(True)
            self.channel.shutdown_write()

    return Interruptible


def sessions(host: Host, timeout: float = LIST_TIMEOUT) -> list[dict[str, Any]]:
    """The host's sessions (`list --json --brief`), or TallyError when it cannot say."""
    result = run(
        host,
        ["list", "--json", "--brief"],
        capture=True,
        timeout=timeout + 10,  # the listing itself, once connected
        connect_timeout=timeout,
    )
    if result.exited != 0:
        last = (result.stderr.strip().splitlines() or ["exit status " + str(result.exited)])[-1]
        raise TallyError(f"{host.name}: {last}")
    try:
        rows = json.loads(result.stdout)
    except json.JSONDecodeError:
        raise TallyError(f"{host.name}: unexpected answer from {host.command} list") from None
    return rows if isinstance(rows, list) else []


def all_sessions(
    hosts: Mapping[str, Host], timeout: float = LIST_TIMEOUT
) -> dict[str, list[dict[str, Any]] | str]:
    """Every host's sessions, all asked at once: rows, or the reason it could not answer."""

    def one(host: Host) -> list[dict[str, Any]] | str:
        try:
            return sessions(host, timeout)
        except TallyError as e:
            return str(e)

    if not hosts:
        return {}
    # daemon threads: Ctrl-C (or the end) never waits for a silent host's timeout
    answers: dict[str, list[dict[str, Any]] | str] = {}
    threads = [
        threading.Thread(target=lambda n=n, h=h: answers.__setitem__(n, one(h)), daemon=True)
        for n, h in hosts.items()
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {n: answers.get(n, "no answer") for n in hosts}


def least_busy(hosts: Mapping[str, Host], timeout: float = LIST_TIMEOUT) -> Host:
    """The reachable host with the fewest sessions (ties: the first configured)."""
    if not hosts:
        raise TallyError("--host auto needs hosts in tally.hosts")
    answers = all_sessions(hosts, timeout)
    counts = {n: len(r) for n, r in answers.items() if isinstance(r, list)}
    if not counts:
        reasons = "; ".join(str(r) for r in answers.values())
        raise TallyError(f"no host answered: {reasons}")
    for n, r in answers.items():
        if isinstance(r, str):
            output.warn("host", f"skipped {n}: {r}")
    best = min(counts, key=lambda n: (counts[n], list(hosts).index(n)))
    return hosts[best]


def find_session(host: Host, name: str) -> dict[str, Any]:
    for row in sessions(host):
        if row.get("name") == name:
            return row
    raise TallyError(f"no session named {name!r} on {host.name}")


def forward(
    host: Host,
    ports: Mapping[str, int],
    offset: int = 0,
    stop: threading.Event | None = None,
    ready: Callable[[dict[str, int]], None] | None = None,
) -> None:
    """Forward the ports from the host to localhost (+offset) until Ctrl-C, or until
    `stop` is set (a caller's thread: the connection is closed as it returns); `ready` is
    given the local ports once they listen.

    Our own accept loop, not Fabric's ``forward_local``: there, one connection to a port
    nothing listens on yet (Vite still starting) kills the tunnel for good, and a local
    port it cannot bind only shows at Ctrl-C.
    """
    import socket

    from .ports import is_free

    local = {name: number + offset for name, number in ports.items()}
    outside = [f"{name} {number}" for name, number in local.items() if not 0 < number < 65536]
    if outside:
        raise TallyError(
            f"--offset {offset} puts {', '.join(outside)} outside 1-65535; pick another offset"
        )
    taken = [f"{name} {number}" for name, number in local.items() if not is_free(number)]
    if taken:
        raise TallyError(
            f"local port(s) {', '.join(taken)} already in use here; "
            "forward to other local ports with --offset N"
        )
    listeners: dict[socket.socket, tuple[str, int]] = {}
    try:
        with connect(host) as conn:
            conn.open()
            for port_name, number in ports.items():
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                listeners[sock] = (port_name, number)
                try:
                    sock.bind(("127.0.0.1", local[port_name]))
                except OSError as e:
                    raise TallyError(
                        f"cannot listen on local port {local[port_name]} ({e.strerror}); "
                        "forward to other local ports with --offset N"
                    ) from None
                sock.listen(64)
                output.step(
                    "forward",
                    f"{port_name}: http://localhost:{local[port_name]}/ → {host.name}:{number}",
                )
            # keepalives, and no Nagle delay on the SSH socket: a page of many small
            # requests (Vite's modules) is otherwise slow through the tunnel
            conn.transport.set_keepalive(15)
            with contextlib.suppress(OSError, AttributeError):
                conn.transport.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if stop is None:
                output.info("forwarding; press Ctrl-C to stop")
            if ready is not None:
                ready(local)
            _serve(conn.transport, listeners, host, stop)
    except KeyboardInterrupt:
        output.step("forward", "stopped")
    except TallyError:
        raise
    except Exception as e:
        raise _unreachable(host, e) from None
    finally:
        for sock in listeners:
            sock.close()


def _serve(
    transport: Any,
    listeners: Mapping[Any, tuple[str, int]],
    host: Host,
    stop: threading.Event | None = None,
) -> None:
    """Accept on every listener (until `stop` is set); each connection gets its own channel
    to the host's port, opened in its own thread (a slow one holds up nothing else)."""
    import selectors
    import time

    down: set[str] = set()
    lock = threading.Lock()

    def relay(client: Any, peer: Any, port_name: str, number: int) -> None:
        try:
            channel = transport.open_channel(
                "direct-tcpip", ("localhost", number), peer[:2], timeout=10
            )
        except Exception as e:  # nothing listens there (yet): refuse this one, go on
            client.close()
            with lock:
                if port_name in down:
                    return
                down.add(port_name)
            output.warn(
                "forward",
                f"{port_name}: nothing answers on {host.name}:{number} yet "
                f"({_reason(e)}); still forwarding",
            )
            return
        with lock:
            came_back = port_name in down
            down.discard(port_name)
        if came_back:
            output.step("forward", f"{port_name}: {host.name}:{number} answers now")
        _pipe(client, channel)

    sel = selectors.DefaultSelector()
    for sock in listeners:
        sel.register(sock, selectors.EVENT_READ)
    while stop is None or not stop.is_set():
        if not transport.is_active():
            raise TallyError(f"the connection to {host.name} was lost; run forward again")
        for key, _ in sel.select(0.5):
            port_name, number = listeners[key.fileobj]
            try:
                client, peer = key.fileobj.accept()  # type: ignore[union-attr]
            except OSError:  # out of file descriptors, say: keep serving the others
                time.sleep(0.1)
                continue
            args = (client, peer, port_name, number)
            threading.Thread(target=relay, args=args, daemon=True).start()


def _pipe(client: Any, channel: Any) -> None:
    """Copy bytes both ways; a side that is done writing is passed on as such (a client's
    half-close still gets its answer), and it ends when both sides are done."""
    import selectors
    import socket

    sel = selectors.DefaultSelector()
    sel.register(client, selectors.EVENT_READ)
    sel.register(channel, selectors.EVENT_READ)
    open_ = {client, channel}
    try:
        while open_:
            for key, _ in sel.select(1.0):
                src = key.fileobj
                dst = channel if src is client else client
                data = src.recv(65536)  # type: ignore[union-attr]
                if data:
                    dst.sendall(data)
                    continue
                sel.unregister(src)
                open_.discard(src)
                if dst is channel:
                    channel.shutdown_write()
                else:
                    client.shutdown(socket.SHUT_WR)
    except OSError:
        return
    finally:
        channel.close()
        client.close()


def attach_argv(host: Host, name: str, caller: str) -> list[str]:
    """``ssh -t`` to the host's own ``attach NAME`` (its tmux socket, its checks)."""
    return ssh_argv(host, command_line(host, ["attach", name], caller, explain=True))


def ssh_argv(host: Host, remote_cmd: str) -> list[str]:
    """An interactive `ssh -t` command line for the host (for attach)."""
    address, port = _address(host)
    argv = ["ssh", "-t"]
    if port:
        argv += ["-p", str(port)]
    if host.key:
        argv += ["-i", os.path.expanduser(host.key)]
    return [*argv, *host.ssh_args, "--", address, remote_cmd]
