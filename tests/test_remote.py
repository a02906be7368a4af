"""Remote hosts over SSH, against two real OpenSSH servers on 127.0.0.1.

Each "host" is its own sshd with a throwaway host key, an authorized key, and `SetEnv`
giving its sessions their own HOME and tmux socket, so the two hosts' main checkouts,
registries and tmux servers are separate, and nothing touches the real HOME.
"""

from __future__ import annotations

import json
import os
import pty
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import VENV_BIN, Sample, make_sample, poll, run_cli

from tally_tasks import remote
from tally_tasks.errors import TallyError
from tally_tasks.ports import is_free
from tally_tasks.registry import ports_of

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
pytestmark = pytest.mark.skipif(
    not Path(SSHD).exists(), reason="OpenSSH server not installed (.ci/run installs it)"
)


@dataclass
class FakeHost:
    name: str
    port: int
    home: Path
    tmux_dir: Path
    sample: Sample

    def tmux(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "TMUX_TMPDIR": str(self.tmux_dir)}
        return subprocess.run(["tmux", *args], env=env, capture_output=True, text=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_sshd(root: Path, key: Path, port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    host_key = root / "host_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)], check=True)
    Path("/run/sshd").mkdir(exist_ok=True)  # privilege separation dir sshd insists on
    setenv = " ".join(f"{k}={v}" for k, v in env.items())
    config = root / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\n"
        f"AuthorizedKeysFile {key}.pub\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n"
        "StrictModes no\nUsePAM no\nAllowTcpForwarding yes\n"
        f"PidFile {root}/sshd.pid\nSetEnv {setenv}\n"
    )
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stderr=subprocess.DEVNULL)

    def listening() -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    poll(listening, timeout=10)
    return proc


@pytest.fixture
def hosts(isolated_env: Path, sample: Sample) -> Iterator[dict[str, FakeHost]]:
    """Two hosts (box1, box2) with their own main checkouts, plus the laptop's config."""
    key = isolated_env / "client_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    result: dict[str, FakeHost] = {}
    procs = []
    for name in ("box1", "box2"):
        root = isolated_env / name
        root.mkdir()
        s = make_sample(root, parent="Dev")
        s.write_config(
            windows=[
                {
                    "name": "backend",
                    "dir": "backend",
                    "cmd": f"{sys.executable} -m http.server {{backend_port}} --bind 127.0.0.1",
                },
                {"name": "agent", "dir": "", "cmd": "claude -n {session}"},
            ]
        )
        tmux_dir = Path(tempfile.mkdtemp(prefix="tr", dir="/tmp"))
        home = root / "home"
        home.mkdir()
        (home / ".profile").write_text((sample.home / ".profile").read_text())
        (home / ".claude.json").write_text(
            json.dumps({"projects": {str(s.main): {"allowedTools": ["Bash(ls)"]}}})
        )
        port = _free_port()
        env = {
            "HOME": str(home),
            "TMUX_TMPDIR": str(tmux_dir),
            "PATH": f"{isolated_env / 'bin'}:{VENV_BIN}:/usr/bin:/bin",
            "SHELL": "/bin/sh",
            "GIT_CONFIG_NOSYSTEM": "1",
        }
        procs.append(_start_sshd(root, key, port, env))
        result[name] = FakeHost(name, port, home, tmux_dir, s)
    laptop_hosts = {
        n: {"host": "root@127.0.0.1", "port": h.port, "key": str(key), "main": str(h.sample.main)}
        for n, h in result.items()
    }
    sample.write_config(hosts=laptop_hosts)
    yield result
    for h in result.values():
        h.tmux("kill-server")
        shutil.rmtree(h.tmux_dir, ignore_errors=True)
    for p in procs:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=10)


def test_add_list_resume_remove_on_a_host(sample: Sample, hosts: dict[str, FakeHost]) -> None:
    box1 = hosts["box1"]
    r = run_cli(["inv", "session.add", "feat", "--host", "box1"], sample.main)
    assert r.returncode == 0, r.stderr
    assert "✓ worktree" in r.stdout and "Session feat is ready" in r.stdout  # streamed back
    assert "feat" in box1.sample.registry() and sample.registry() == {}
    assert "tally-feat" in box1.tmux("ls").stdout
    claude_json = json.loads((box1.home / ".claude.json").read_text())
    wt = box1.sample.main.parent / "tally-feat"
    assert claude_json["projects"][str(wt)]["allowedTools"] == ["Bash(ls)"]  # the host's file

    r = run_cli(["inv", "session.list", "--host", "box1", "--json"], sample.main)
    assert [row["name"] for row in json.loads(r.stdout)] == ["feat"]

    box1.tmux("kill-server")
    r = run_cli(["tally-session", "resume", "--host", "box1"], sample.main)
    assert r.returncode == 0, r.stderr
    assert "started tally-feat" in r.stdout
    assert "tally-feat" in box1.tmux("ls").stdout

    r = run_cli(["inv", "session.remove", "feat", "--host", "box1"], sample.main)
    assert r.returncode == 0, r.stderr
    assert box1.sample.registry() == {} and not wt.exists()


def test_remote_errors_keep_their_one_line_and_status(
    sample: Sample, hosts: dict[str, FakeHost]
) -> None:
    r = run_cli(["inv", "session.remove", "nope", "--host", "box2"], sample.main)
    assert r.returncode == 1
    assert "no session named 'nope'" in r.stderr and "Traceback" not in r.stderr
    r = run_cli(["inv", "session.add", "x", "--host", "mars"], sample.main)
    assert r.returncode == 1 and "no host named 'mars'" in r.stderr


def test_auto_picks_the_host_with_fewest_sessions_and_lists_all_hosts(
    sample: Sample, hosts: dict[str, FakeHost]
) -> None:
    assert run_cli(["inv", "session.add", "a", "--host", "box1", "-q"], sample.main).returncode == 0
    r = run_cli(["inv", "session.add", "b", "--host", "auto"], sample.main)
    assert r.returncode == 0, r.stderr
    assert "box2 (fewest sessions)" in r.stdout
    assert "b" in hosts["box2"].sample.registry()
    r = run_cli(["inv", "session.add", "c", "--host", "auto", "-q"], sample.main)
    assert "c" in hosts["box1"].sample.registry()  # tie 1:1 -> the first host
    assert run_cli(["inv", "session.add", "here", "-q"], sample.main).returncode == 0

    r = run_cli(["inv", "session.list", "--all-hosts"], sample.main)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split()[:2] == ["HOST", "NAME"]
    found = {tuple(line.split()[:2]) for line in lines[1:]}
    assert {("local", "here"), ("box1", "a"), ("box1", "c"), ("box2", "b")} <= found
    r = run_cli(["inv", "session.list", "--all-hosts", "--json"], sample.main)
    data = json.loads(r.stdout)
    assert data["unreachable"] == {} and len(data["sessions"]) == 4


def test_unreachable_host_is_reported_not_hung(sample: Sample, hosts: dict[str, FakeHost]) -> None:
    config = json.loads((sample.main / "invoke.yaml").read_text())["tally"]
    config["hosts"]["down"] = {"host": "root@127.0.0.1", "port": _free_port(), "main": "/x"}
    sample.write_config(**config)
    r = run_cli(["inv", "session.list", "--all-hosts"], sample.main, timeout=30)
    assert r.returncode == 0, r.stderr
    assert "down" in r.stdout and "unreachable" in r.stdout and "cannot reach host" in r.stdout
    r = run_cli(["inv", "session.add", "x", "--host", "down"], sample.main, timeout=30)
    assert r.returncode == 1 and "cannot reach host down" in r.stderr
    assert "Traceback" not in r.stderr


def test_host_without_the_package_names_what_to_install(
    sample: Sample, hosts: dict[str, FakeHost]
) -> None:
    config = json.loads((sample.main / "invoke.yaml").read_text())["tally"]
    config["hosts"]["box1"]["command"] = "tally-session-not-here"
    sample.write_config(**config)
    r = run_cli(["inv", "session.list", "--host", "box1"], sample.main)
    assert r.returncode == 1
    assert "tally-session-not-here is not installed on box1" in r.stderr
    assert "pip install tally-tasks" in r.stderr


def test_forward_brings_a_remote_dev_server_to_localhost(
    sample: Sample, hosts: dict[str, FakeHost]
) -> None:
    box2 = hosts["box2"]
    assert (
        run_cli(["inv", "session.add", "web", "--host", "box2", "-q"], sample.main).returncode == 0
    )
    port = box2.sample.registry()["web"]["backend_port"]

    def serving(p: int) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{p}/", timeout=1) as resp:
                return resp.status == 200
        except OSError:
            return False

    poll(lambda: serving(port), timeout=20)  # the host's own server
    # "laptop" and host are one machine here: shift every port to a free one
    offset = _free_offset(ports_of(box2.sample.registry()["web"]).values())
    proc = _forward(sample, "web", "box2", offset)
    try:
        poll(lambda: serving(port + offset), timeout=20)
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert f"http://localhost:{port + offset}/" in out and "stopped" in out


def _forward(sample: Sample, name: str, host: str, offset: int) -> subprocess.Popen[str]:
    """`inv session.forward` running, as a user starts it (Ctrl-C ends it)."""
    argv = [str(VENV_BIN / "inv"), "session.forward", name, "--host", host]
    return subprocess.Popen(
        [*argv, f"--offset={offset}"],
        cwd=sample.main,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _free_offset(numbers: Iterable[int]) -> int:
    numbers = list(numbers)
    for _ in range(100):
        offset = random.randrange(1024, 65000) - min(numbers)
        if all(1024 <= n + offset <= 65535 and is_free(n + offset) for n in numbers):
            return offset
    raise RuntimeError("no free offset")


def test_forward_refuses_ports_it_cannot_bind(sample: Sample, hosts: dict[str, FakeHost]) -> None:
    assert (
        run_cli(["inv", "session.add", "web", "--host", "box2", "-q"], sample.main).returncode == 0
    )
    entry = hosts["box2"].sample.registry()["web"]
    r = run_cli(["inv", "session.forward", "web", "--host", "box2", "--offset=70000"], sample.main)
    assert r.returncode == 1 and "outside 1-65535" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    # the host's own server already holds its port here: forwarding onto it must say so
    poll(lambda: not is_free(entry["backend_port"]), timeout=20)
    r = run_cli(["inv", "session.forward", "web", "--host", "box2"], sample.main, timeout=30)
    assert r.returncode == 1 and "already in use here" in r.stderr, r.stderr
    assert f"backend {entry['backend_port']}" in r.stderr and "--offset" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_local_commands_do_not_import_fabric(sample: Sample) -> None:
    code = (
        "import sys, runpy; sys.argv = ['inv', 'session.list'];"
        "from invoke.main import program\n"
        "try:\n program.run(sys.argv)\n"
        "except SystemExit: pass\n"
        "print('paramiko' in sys.modules or 'fabric' in sys.modules)"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], cwd=sample.main, capture_output=True, text=True
    )
    assert r.stdout.strip().splitlines()[-1] == "False", r.stdout + r.stderr


def _with_host(sample: Sample, name: str, **spec: object) -> None:
    config = json.loads((sample.main / "invoke.yaml").read_text())["tally"]
    config["hosts"][name] = {**config["hosts"].get(name, {}), **spec}
    sample.write_config(**config)


def test_auto_only_places_new_sessions(sample: Sample, hosts: dict[str, FakeHost]) -> None:
    assert run_cli(["inv", "session.add", "a", "--host", "box1", "-q"], sample.main).returncode == 0
    for task in ("session.remove", "session.doctor", "session.relink"):
        r = run_cli(["inv", task, "--name", "a", "--host", "auto"], sample.main)
        assert r.returncode == 1 and "--host auto only places new sessions" in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
    assert "a" in hosts["box1"].sample.registry()


def test_step_tasks_and_doctor_run_there_with_their_flags_and_hints(
    sample: Sample, hosts: dict[str, FakeHost]
) -> None:
    box1 = hosts["box1"]
    assert run_cli(["inv", "session.add", "s", "--host", "box1", "-q"], sample.main).returncode == 0
    wt = box1.sample.main.parent / "tally-s"
    (wt / "frontend" / "node_modules").unlink()
    r = run_cli(["inv", "session.doctor", "--host", "box1"], sample.main)
    assert r.returncode == 1 and "link frontend/node_modules is missing" in r.stdout
    r = run_cli(["tally-session", "relink", "s", "--host", "box1"], sample.main)
    assert r.returncode == 0, r.stderr
    assert (wt / "frontend" / "node_modules").is_symlink()
    (wt / "backend" / ".env").write_text("MINE=1\n")
    r = run_cli(["inv", "session.env", "s", "--force", "--host", "box1"], sample.main)
    assert r.returncode == 0 and "backend/.env copied" in r.stdout  # --force got there
    assert (wt / "backend" / ".env").read_text() == "SECRET_KEY=s3cret\n"
    # a hint from the host is spelled for the laptop that asked
    r = run_cli(["inv", "session.tmux", "nope", "--host", "box1"], sample.main)
    assert r.returncode == 1
    assert "inv session.add --name nope --host box1" in r.stderr, r.stderr
    r = run_cli(["tally-session", "tmux", "nope", "--host", "box1"], sample.main)
    assert "tally-session add nope --host box1" in r.stderr, r.stderr
    r = run_cli(["inv", "session.add", "t", "--host", "box1"], sample.main)
    assert "inv session.forward --name t --host box1" in r.stdout
    assert "inv session.attach --name t --host box1" in r.stdout


def test_dash_h_is_still_help(sample: Sample) -> None:
    for argv in (
        ["inv", "session.list", "-h"],
        ["inv", "session.add", "--help"],
        ["tally-session", "add", "-h"],
        ["tally-session", "remove", "--help"],
    ):
        r = run_cli(argv, sample.main)
        assert r.returncode == 0 and "Usage:" in r.stdout and "--host" in r.stdout, r.stderr


def test_a_missing_main_checkout_or_a_command_with_arguments(
    sample: Sample, hosts: dict[str, FakeHost]
) -> None:
    _with_host(sample, "box1", main="/no/such/checkout")
    r = run_cli(["inv", "session.list", "--host", "box1"], sample.main)
    assert r.returncode == 1 and "/no/such/checkout does not exist on box1" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    _with_host(
        sample,
        "box1",
        main=str(hosts["box1"].sample.main),
        command=f"{VENV_BIN / 'python'} -m tally_tasks.cli",
    )
    r = run_cli(["inv", "session.list", "--host", "box1", "--json"], sample.main)
    assert r.returncode == 0 and json.loads(r.stdout) == [], r.stderr


def _silent_server(kind: str) -> tuple[int, Callable[[], None]]:
    """A TCP port that accepts and then says nothing ("silent") or speaks HTTP ("http")."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            if kind == "http":
                conn.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n")
                conn.close()
            else:
                held.append(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()

    def close() -> None:
        stop.set()
        thread.join()
        for c in held:
            c.close()
        server.close()

    return int(server.getsockname()[1]), close


@pytest.mark.parametrize("kind", ["silent", "http"])
def test_a_host_that_does_not_speak_ssh_is_one_line_and_bounded(
    sample: Sample, hosts: dict[str, FakeHost], kind: str
) -> None:
    port, close = _silent_server(kind)
    try:
        _with_host(sample, "odd", host="root@127.0.0.1", port=port, main="/x", timeout=2)
        t = time.monotonic()
        r = run_cli(["inv", "session.list", "--all-hosts"], sample.main, timeout=30)
        assert time.monotonic() - t < 15
        assert r.returncode == 0, r.stderr
        assert "Traceback" not in r.stderr and "Exception" not in r.stderr, r.stderr
        odd = [ln for ln in r.stdout.splitlines() + r.stderr.splitlines() if "odd" in ln]
        assert len(odd) == 1 and "unreachable: cannot reach host odd" in odd[0], r.stdout
        assert "no SSH server answered within 2 s" in odd[0]
        r = run_cli(["inv", "session.add", "x", "--host", "odd"], sample.main, timeout=30)
        assert r.returncode == 1 and "cannot reach host odd" in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    finally:
        close()


def test_forward_keeps_going_while_a_port_has_nothing_behind_it(
    sample: Sample, hosts: dict[str, FakeHost]
) -> None:
    box2 = hosts["box2"]
    assert (
        run_cli(["inv", "session.add", "web", "--host", "box2", "-q"], sample.main).returncode == 0
    )
    entry = box2.sample.registry()["web"]
    backend, frontend = entry["backend_port"], entry["frontend_port"]  # no frontend window
    offset = _free_offset([backend, frontend])
    proc = _forward(sample, "web", "box2", offset)
    late: subprocess.Popen[bytes] | None = None
    try:
        poll(lambda: _get(backend + offset) == 200, timeout=20)
        assert _get(frontend + offset) is None  # refused at once, not hung
        assert _get(backend + offset) == 200  # and the tunnel lives on
        late = subprocess.Popen(
            [sys.executable, "-m", "http.server", str(frontend), "--bind", "127.0.0.1"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        poll(lambda: _get(frontend + offset) == 200, timeout=20)  # Vite came up late
    finally:
        if late is not None:
            late.terminate()
            late.wait()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "nothing answers on box2" in out and "answers now" in out and "stopped" in out


def _get(port: int) -> int | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as resp:
            return int(resp.status)
    except OSError:
        return None


def _in_pty(argv: list[str], cwd: Path) -> tuple[subprocess.Popen[bytes], Callable[[], str]]:
    """Run `argv` with a terminal for stdin and stdout; returns it and a reader of its output."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(argv, cwd=cwd, stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    seen: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                return
            if not chunk:
                return
            seen.append(chunk)

    threading.Thread(target=drain, daemon=True).start()
    return proc, lambda: b"".join(seen).decode(errors="replace")


def test_ctrl_c_reaches_the_task_on_the_host_which_undoes_its_add(
    sample: Sample, hosts: dict[str, FakeHost]
) -> None:
    box1 = hosts["box1"]
    config = json.loads((box1.sample.main / "invoke.yaml").read_text())["tally"]
    box1.sample.write_config(**{**config, "hooks": {"post_add": ["sleep 60"]}})
    proc, output_ = _in_pty(
        [str(VENV_BIN / "inv"), "session.add", "slow", "--host", "box1"], sample.main
    )
    try:
        poll(lambda: "(backend, agent)" in output_(), timeout=30)  # the tmux step's line
        t = time.monotonic()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 130, output_()
        assert time.monotonic() - t < 15  # not the hook's 60 s
    finally:
        proc.kill()
        proc.wait()
    poll(lambda: box1.sample.registry() == {}, timeout=10)  # the host undid its add
    assert not (box1.sample.main.parent / "tally-slow").exists()
    assert "tally-slow" not in box1.tmux("ls").stdout


def test_a_remote_run_that_dies_is_reported_not_silent(
    sample: Sample, hosts: dict[str, FakeHost]
) -> None:
    box1 = hosts["box1"]
    mark = box1.home / "paused"
    _with_host(
        sample,
        "box1",
        env={"TALLY_TEST_FAULT": "pause:ports", "TALLY_TEST_FAULT_MARK": str(mark)},
    )
    proc = subprocess.Popen(
        [str(VENV_BIN / "inv"), "session.add", "dies", "--host", "box1"],
        cwd=sample.main,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    poll(mark.exists, timeout=30)
    found = subprocess.run(
        ["pgrep", "-f", "tally-session add --name dies"], capture_output=True, text=True
    ).stdout.split()
    for pid in found:
        os.kill(int(pid), signal.SIGKILL)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1, (out, err)
    assert "ended without an exit status" in err and "session.list --host box1" in err, err


def test_attach_runs_the_hosts_own_attach_over_ssh(
    sample: Sample, hosts: dict[str, FakeHost]
) -> None:
    assert (
        run_cli(["inv", "session.add", "at", "--host", "box1", "-q"], sample.main).returncode == 0
    )
    r = run_cli(["inv", "session.attach", "at", "--host", "box1"], sample.main)
    assert r.returncode == 1 and "not a terminal; run: ssh -t" in r.stderr
    assert "tally-session attach at" in r.stderr
    # a real user has the host in known_hosts; ssh reads the real HOME's, so: none
    known = ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]
    _with_host(sample, "box1", ssh_args=[*known, "-o", "LogLevel=ERROR"])
    proc, output_ = _in_pty(
        [str(VENV_BIN / "inv"), "session.attach", "at", "--host", "box1"], sample.main
    )
    try:
        try:
            poll(lambda: "[tally-at]" in output_(), timeout=15)  # tmux's status line, over ssh
        except AssertionError:
            raise AssertionError(repr(output_())) from None
        assert hosts["box1"].tmux("list-clients", "-F", "#{session_name}").stdout.split() == [
            "tally-at"
        ]
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize(
    ("host", "port", "expected"),
    [
        ("me@box", None, ("me@box", None)),
        ("me@box:2222", None, ("me@box", 2222)),
        ("me@box:2222", 22, ("me@box", 22)),
        ("box", 2200, ("box", 2200)),
        ("[::1]:22", None, ("[::1]:22", None)),
        ("fe80::1", None, ("fe80::1", None)),
    ],
    ids=["plain", "port-in-host", "explicit-port-wins", "explicit", "ipv6-bracket", "ipv6"],
)
def test_address_splits_a_port_off_the_host(
    host: str, port: int | None, expected: tuple[str, int | None]
) -> None:
    assert remote._address(remote.Host("b", host, "/m", port)) == expected


def test_ssh_argv_for_attach_has_port_key_and_extra_arguments() -> None:
    host = remote.Host("b", "me@box:2222", "/m", key="~/.ssh/id_b", ssh_args=("-o", "A=1"))
    argv = remote.ssh_argv(host, "true")
    assert argv[:4] == ["ssh", "-t", "-p", "2222"]
    assert argv[4:6] == ["-i", os.path.expanduser("~/.ssh/id_b")]
    assert argv[6:] == ["-o", "A=1", "--", "me@box", "true"]


def test_the_remote_command_line_runs_as_written_in_a_real_shell(tmp_path: Path) -> None:
    """Quoting of main, command and arguments, checked by a shell (as sshd would run it)."""
    main = tmp_path / "My Dev" / "it's $HOME"
    main.mkdir(parents=True)
    prog = tmp_path / "bin dir" / "tally-session"
    prog.parent.mkdir()
    prog.write_text('#!/bin/sh\nprintf "%s|" "$PWD" "$TALLY_VIA" "$LANG" "$@"\n')
    prog.chmod(0o755)
    host = remote.Host("box 1", "h", str(main), command=f"'{prog}' --flag", env={"LANG": "C x"})
    line = remote.command_line(host, ["add", "--name", "a b;$(id)"], caller="tally-session")
    r = subprocess.run(["sh", "-c", line], capture_output=True, text=True)
    assert r.stdout == f"{main}|tally-session box 1|C x|--flag|add|--name|a b;$(id)|"
    missing = remote.Host("b", "h", str(tmp_path / "nope"), command=str(prog))
    r = subprocess.run(["sh", "-c", remote.command_line(missing, ["list"])], capture_output=True)
    assert r.returncode == remote.NO_CHECKOUT and r.stderr == b""
    absent = remote.Host("b", "h", str(main), command="no-such-tally-session")
    r = subprocess.run(["sh", "-c", remote.command_line(absent, ["list"])], capture_output=True)
    assert r.returncode == remote.NOT_INSTALLED


def test_the_hosts_env_holds_for_finding_the_command(tmp_path: Path) -> None:
    """`env: {PATH: ...}` in the host's config is how a venv's tally-session is found."""
    bin_dir = tmp_path / "venv bin"
    bin_dir.mkdir()
    (bin_dir / "tally-x").write_text("#!/bin/sh\necho found\n")
    (bin_dir / "tally-x").chmod(0o755)
    host = remote.Host(
        "b", "h", str(tmp_path), command="tally-x", env={"PATH": f"{bin_dir}:/usr/bin:/bin"}
    )
    r = subprocess.run(["sh", "-c", remote.command_line(host, ["list"])], capture_output=True)
    assert (r.returncode, r.stdout) == (0, b"found\n")


def test_a_host_whose_key_changed_is_refused(sample: Sample, hosts: dict[str, FakeHost]) -> None:
    """~/.ssh/known_hosts is read as ssh reads it: a changed key is not talked to."""
    other = sample.root / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    ssh = sample.home / ".ssh"
    ssh.mkdir(mode=0o700, exist_ok=True)
    pub = (other.with_suffix(".pub")).read_text().split()
    (ssh / "known_hosts").write_text(f"[127.0.0.1]:{hosts['box1'].port} {pub[0]} {pub[1]}\n")
    r = run_cli(["inv", "session.list", "--host", "box1"], sample.main)
    assert r.returncode == 1 and "answers with another key" in r.stderr, r.stderr
    assert f"ssh-keygen -R '[127.0.0.1]:{hosts['box1'].port}'" in r.stderr
    assert len(r.stderr.splitlines()) == 1
    r = run_cli(["inv", "session.list", "--host", "box2"], sample.main)  # not listed: accepted
    assert r.returncode == 0, r.stderr


def test_the_laptops_hints_do_not_leak_into_the_hosts_windows(
    sample: Sample, hosts: dict[str, FakeHost]
) -> None:
    box1 = hosts["box1"]
    assert run_cli(["inv", "session.add", "v", "--host", "box1", "-q"], sample.main).returncode == 0
    env = box1.tmux("show-environment", "-g").stdout
    assert "TALLY_VIA" not in env
    # a command the user must run on the host is said to be the host's
    box1.tmux(
        "new-session", "-d", "-s", "tally-ghost", "-c", str(box1.sample.main.parent / "tally-v")
    )
    r = run_cli(["inv", "session.list", "--host", "box1"], sample.main)
    assert "on box1: tmux kill-session -t =tally-ghost" in r.stdout + r.stderr


def test_forward_passes_a_half_close_on_and_still_gets_the_answer(
    sample: Sample, hosts: dict[str, FakeHost]
) -> None:
    box2 = hosts["box2"]
    assert (
        run_cli(["inv", "session.add", "hc", "--host", "box2", "-q"], sample.main).returncode == 0
    )
    entry = box2.sample.registry()["hc"]
    backend = entry["backend_port"]
    poll(lambda: _get(backend) == 200, timeout=20)
    offset = _free_offset(ports_of(entry).values())
    proc = _forward(sample, "hc", "box2", offset)
    try:
        poll(lambda: _get(backend + offset) == 200, timeout=20)
        with socket.create_connection(("127.0.0.1", backend + offset), timeout=10) as s:
            s.sendall(b"GET / HTTP/1.0\r\n\r\n")
            s.shutdown(socket.SHUT_WR)  # done asking; the answer must still come
            answer = b""
            while chunk := s.recv(65536):
                answer += chunk
        assert answer.startswith(b"HTTP/1.0 200")
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=20)


def test_env_values_expand_on_the_host_and_attach_explains_a_missing_checkout(
    tmp_path: Path,
) -> None:
    bin_dir = tmp_path / "host bin"
    bin_dir.mkdir()
    (bin_dir / "tally-x").write_text('#!/bin/sh\necho "$PATH"\n')
    (bin_dir / "tally-x").chmod(0o755)
    host = remote.Host("b", "h", str(tmp_path), command="tally-x", env={"PATH": f"{bin_dir}:$PATH"})
    r = subprocess.run(["sh", "-c", remote.command_line(host, [])], capture_output=True, text=True)
    assert r.stdout.startswith(f"{bin_dir}:") and "$PATH" not in r.stdout
    gone = remote.Host("b", "h", str(tmp_path / "nope"))
    line = remote.command_line(gone, ["attach", "x"], explain=True)
    r = subprocess.run(["sh", "-c", line], capture_output=True, text=True)
    assert r.returncode == remote.NO_CHECKOUT and "does not exist on b" in r.stderr


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ({"main": "/m"}, "tally.hosts.b.host"),
        ({"host": "h"}, "tally.hosts.b.main"),
        ({"host": "h", "main": "/m", "port": 70000}, "tally.hosts.b.port"),
        ({"host": "h", "main": "/m", "timeout": "5"}, "tally.hosts.b.timeout"),
        ({"host": "h", "main": "/m", "env": {"A;rm": "1"}}, "is not a variable name"),
        ({"host": "h", "main": "/m", "ssh_args": "-v"}, "tally.hosts.b.ssh_args"),
        (
            {"host": "h", "main": "/m", "comand": "x"},
            "tally.hosts.b.comand is unknown; did you mean command?",
        ),
    ],
    ids=["no-host", "no-main", "port", "timeout", "env-name", "ssh-args", "unknown-key"],
)
def test_a_wrong_host_entry_names_its_key(spec: dict[str, object], says: str) -> None:
    with pytest.raises(TallyError, match=re.escape(says)):
        remote.hosts_from({"b": spec})
