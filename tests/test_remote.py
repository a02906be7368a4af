"""Remote hosts over SSH, against two real OpenSSH servers on 127.0.0.1.

Each "host" is its own sshd with a throwaway host key, an authorized key, and `SetEnv`
giving its sessions their own HOME and tmux socket, so the two hosts' main checkouts,
registries and tmux servers are separate, and nothing touches the real HOME.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import VENV_BIN, Sample, make_sample, poll, run_cli

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
    proc = subprocess.Popen(
        [str(VENV_BIN / "inv"), "session.forward", "web", "--host", "box2", f"--offset={offset}"],
        cwd=sample.main,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        poll(lambda: serving(port + offset), timeout=20)
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert f"http://localhost:{port + offset}/" in out and "stopped" in out


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
