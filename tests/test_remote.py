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
from conftest import (
    VENV_BIN,
    Sample,
    git,
    imported_by,
    make_sample,
    poll,
    run_cli,
    silent_server,
)

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
    assert not {"paramiko", "fabric"} & imported_by(["inv", "session.list"], sample.main)


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


def test_send_types_into_the_hosts_agent_window(sample: Sample, hosts: dict[str, FakeHost]) -> None:
    box1 = hosts["box1"]
    assert run_cli(["inv", "session.add", "s", "--host", "box1", "-q"], sample.main).returncode == 0
    line = "yes; #{session_name} '$HOME' -- --window"
    r = run_cli(["tally-session", "send", "s", line, "--host", "box1"], sample.main)
    assert r.returncode == 0, r.stderr
    assert "✓ send         s: typed into agent" in r.stdout
    poll(lambda: line in box1.tmux("capture-pane", "-p", "-t", "=tally-s:=agent").stdout)
    box1.tmux("kill-session", "-t", "=tally-s")
    r = run_cli(["inv", "session.send", "s", "hi", "--host", "box1"], sample.main)
    assert r.returncode == 1
    assert r.stderr == (
        "✗ session s is not running; start it with: inv session.resume --name s --host box1\n"
    )


def test_land_prune_and_pr_run_there_with_their_flags(
    sample: Sample, hosts: dict[str, FakeHost]
) -> None:
    box1 = hosts["box1"]
    for key, value in (("user.name", "Box"), ("user.email", "box@example.invalid")):
        git(box1.sample.main, "config", key, value)  # the squash commit is made there
    for name in ("feat", "other"):
        r = run_cli(["inv", "session.add", name, "--host", "box1", "-q"], sample.main)
        assert r.returncode == 0, r.stderr
    wt = box1.sample.main.parent / "tally-feat"
    (wt / "feature.txt").write_text("f\n")
    git(wt, "add", "feature.txt")
    git(wt, "commit", "-q", "-m", "feature")
    r = run_cli(
        ["inv", "session.land", "feat", "--squash", "-e", "Land it", "--host", "box1"], sample.main
    )
    assert r.returncode == 0, r.stderr
    assert "✓ main" in r.stdout  # streamed back
    assert git(box1.sample.main, "log", "-1", "--format=%s").strip() == "Land it"
    assert set(box1.sample.registry()) == {"other"} and not wt.exists()
    r = run_cli(["tally-session", "prune", "--merged", "--dry-run", "--host", "box1"], sample.main)
    assert (r.returncode, r.stdout.splitlines()[-1]) == (0, "nothing to prune"), r.stderr
    r = run_cli(["inv", "session.pr", "other", "--host", "box1"], sample.main)
    assert r.returncode == 1
    assert "no remote to push to; add one with: on box1: git remote add origin URL" in r.stderr


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


@pytest.mark.parametrize("kind", ["silent", "http"])
def test_a_host_that_does_not_speak_ssh_is_one_line_and_bounded(
    sample: Sample, hosts: dict[str, FakeHost], kind: str
) -> None:
    port, close = silent_server(kind)
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


def _streaming(argv: list[str], cwd: Path) -> tuple[subprocess.Popen[str], Callable[[], str]]:
    """Run `argv` without a terminal (stdin /dev/null, output pipes); a reader of its
    stdout and stderr so far."""
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    seen: list[str] = []

    def drain() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            seen.append(line)

    threading.Thread(target=drain, daemon=True).start()
    return proc, lambda: "".join(seen)


@pytest.mark.parametrize("terminal", [True, False], ids=["terminal", "no-terminal"])
def test_ctrl_c_reaches_the_task_on_the_host_which_undoes_its_add(
    sample: Sample, hosts: dict[str, FakeHost], terminal: bool
) -> None:
    """At a terminal or not (a script, a CI job), Ctrl-C ends the add on the host, which
    undoes it there, instead of leaving it to run to its end unseen."""
    box1 = hosts["box1"]
    config = json.loads((box1.sample.main / "invoke.yaml").read_text())["tally"]
    box1.sample.write_config(**{**config, "hooks": {"post_add": ["sleep 60"]}})
    argv = [str(VENV_BIN / "inv"), "session.add", "slow", "--host", "box1"]
    proc, output_ = (_in_pty if terminal else _streaming)(argv, sample.main)
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


ENV_VALUES = [
    # (id, the value in tally.hosts.<name>.env, what the host's shell makes of it)
    ("variable", "$HOME/bin", "{home}/bin"),
    ("braced", "${HOME}x", "{home}x"),
    ("command-substitution", "$(touch {planted})", "$(touch {planted})"),
    ("backticks", "`touch {planted}`", "`touch {planted}`"),
    ("default-running-a-command", "${NOPE:-$(touch {planted})}", "${NOPE:-$(touch {planted})}"),
    ("arithmetic", "$((1+1))", "$((1+1))"),
    ("special-parameters", "$$ $? $1 $", "$$ $? $1 $"),
    ("quotes-and-backslashes", 'a"b\\c\\$HOME', 'a"b\\c\\{home}'),
]


@pytest.mark.parametrize("shell", ["sh", "bash"])
@pytest.mark.parametrize(
    ("value", "expected"), [c[1:] for c in ENV_VALUES], ids=[c[0] for c in ENV_VALUES]
)
def test_env_values_expand_variables_only_on_the_host(
    tmp_path: Path, shell: str, value: str, expected: str
) -> None:
    planted = tmp_path / "PWNED"
    prog = tmp_path / "show"
    prog.write_text('#!/bin/sh\nprintf "%s" "$SHOWN"\n')
    prog.chmod(0o755)
    home = os.environ["HOME"]
    spec = value.replace("{planted}", str(planted))
    host = remote.Host("b", "h", str(tmp_path), command=str(prog), env={"SHOWN": spec})
    line = remote.command_line(host, [])
    r = subprocess.run([shell, "-c", line], capture_output=True, text=True)
    assert (r.returncode, r.stderr) == (0, "")
    assert r.stdout == expected.replace("{planted}", str(planted)).replace("{home}", home)
    assert not planted.exists()


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


# --- trust on first use, stderr at a terminal, Ctrl-C without one (issue 12) ----------------

KNOWN = [
    # (id, ~/.ssh/config, known_hosts before, whether the new line is hashed)
    ("hashed-as-ssh-config-says", None, None, True),
    ("plain-file-stays-plain", "HashKnownHosts no\n", "other.example ssh-ed25519 AAAA\n", False),
    (
        "hashed-file-stays-hashed",
        "HashKnownHosts no\n",
        "|1|c2FsdA==|aGFzaA== ssh-ed25519 AAAA",
        True,
    ),
]


@pytest.mark.parametrize(
    ("ssh_config", "before", "hashed"), [c[1:] for c in KNOWN], ids=[c[0] for c in KNOWN]
)
def test_a_new_host_key_is_recorded_as_accept_new_does(
    sample: Sample,
    hosts: dict[str, FakeHost],
    ssh_config: str | None,
    before: str | None,
    hashed: bool,
) -> None:
    """Trust on first use is written down, so a later change of the key is refused."""
    ssh = sample.home / ".ssh"
    known = ssh / "known_hosts"
    if ssh_config is not None:
        ssh.mkdir(mode=0o700)
        (ssh / "config").write_text(ssh_config)
    if before is not None:
        known.write_text(before)
    box1 = hosts["box1"]
    r = run_cli(["inv", "session.list", "--host", "box1", "--json"], sample.main)
    assert (r.returncode, json.loads(r.stdout)) == (0, []), r.stderr
    assert ssh.stat().st_mode & 0o777 == 0o700
    name = f"[127.0.0.1]:{box1.port}"
    added = known.read_text().removeprefix(before or "").lstrip("\n")
    assert added.count("\n") == 1 and added.startswith("|1|" if hashed else f"{name} ")
    found = subprocess.run(
        ["ssh-keygen", "-F", name, "-f", str(known)], capture_output=True, text=True
    )
    host_key = (box1.sample.root / "host_key.pub").read_text().split()[:2]
    assert found.returncode == 0 and " ".join(host_key) in found.stdout, found.stdout
    written = known.read_text()
    assert run_cli(["inv", "session.list", "--host", "box1"], sample.main).returncode == 0
    assert known.read_text() == written  # known now: not added twice


def test_at_a_terminal_a_remote_error_goes_to_stderr(
    sample: Sample, hosts: dict[str, FakeHost]
) -> None:
    master, slave = pty.openpty()
    try:
        r = subprocess.run(
            [str(VENV_BIN / "inv"), "session.remove", "nope", "--host", "box2"],
            cwd=sample.main,
            stdin=slave,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        os.close(slave)
        os.close(master)
    assert r.returncode == 1
    assert "no session named 'nope'" in r.stderr and "no session named" not in r.stdout


def test_ctrl_c_after_the_task_is_past_stopping_says_it_finished_there(
    sample: Sample, hosts: dict[str, FakeHost], tmp_path: Path
) -> None:
    """A task that does not stop (it ignores SIGINT, or had just finished): said plainly."""
    script = tmp_path / "stubborn"
    script.write_text("#!/bin/sh\ntrap '' INT\necho started\nsleep 2\necho finished\n")
    script.chmod(0o755)
    _with_host(sample, "box1", command=str(script))
    proc, said = _streaming([str(VENV_BIN / "inv"), "session.list", "--host", "box1"], sample.main)
    try:
        poll(lambda: "started" in said(), timeout=30)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0, said()
    finally:
        proc.kill()
        proc.wait()
    assert "finished" in said()
    assert "Ctrl-C came after list had finished on box1: nothing was undone there" in said()


@pytest.mark.parametrize("shell", ["sh", "bash"])
def test_the_watched_line_interrupts_the_task_when_stdin_ends(tmp_path: Path, shell: str) -> None:
    """The remote line as sshd runs it: stdin (the channel) closed -> SIGINT to the task,
    whose own status comes back; a task that ends first leaves no watcher behind."""
    prog = tmp_path / "task"
    prog.write_text(
        "#!/bin/sh\ntrap 'echo undone; exit 130' INT\necho started\n"
        'read -r line && echo "read $line"\n'  # its stdin is /dev/null, never the channel
        'if [ "$1" = slow ]; then sleep 30 >/dev/null & wait; fi\necho done\n'
    )
    prog.chmod(0o755)
    host = remote.Host("b", "h", str(tmp_path), command=str(prog))

    def start(arg: str) -> subprocess.Popen[str]:
        line = remote.command_line(host, [arg], watch=True)
        return subprocess.Popen(
            ["setsid", shell, "-c", line],  # its own process group, as sshd gives it
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    slow = start("slow")
    assert slow.stdout is not None and slow.stdin is not None
    assert slow.stdout.readline() == "started\n"
    slow.stdin.close()  # what Ctrl-C on the laptop does
    assert slow.wait(timeout=10) == 130
    assert slow.stdout.read() == "undone\n"

    quick = start("quick")
    assert quick.stdout is not None and quick.stdin is not None
    out = quick.stdout.read()  # stdin stays open: the task ends on its own
    assert (quick.wait(timeout=10), out) == (0, "started\ndone\n")
    quick.stdin.close()


def test_colour_travels_to_the_host_unless_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    host = remote.Host("b", "h", "/m")
    monkeypatch.delenv("NO_COLOR")
    assert "TALLY_COLOR=1" in remote.command_line(host, ["list"], color=True)
    assert "TALLY_COLOR" not in remote.command_line(host, ["list"])
    monkeypatch.setenv("NO_COLOR", "1")
    line = remote.command_line(host, ["list"], color=True)
    assert "NO_COLOR=1" in line and "TALLY_COLOR" not in line
