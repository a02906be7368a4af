"""operations/live.py through the command line, as a user types it: readiness after add,
preflight, restart, doctor --fix of a dead server, the agent's states in list, on_waiting
once, next. Real tmux, real processes; the stand-in claude runs its hooks."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from subprocess import Popen
from typing import Any

import libtmux
import pytest
from conftest import VENV_BIN, Sample, in_group, pane, poll, preflights_in, run_cli

from tally_tasks import agent, ports, tmux

BACKEND = {"name": "backend", "dir": "backend", "cmd": "python manage.py runserver {backend_port}"}
FRONTEND = {"name": "frontend", "dir": "frontend", "cmd": "npm run dev -- --port {frontend_port}"}
CLAUDE = {
    "name": "claude",
    "dir": "",
    "cmd": "claude -n {session}",
    "resume_cmd": "claude {claude_resume} || claude -n {session}",
}


def inv(sample: Sample, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return run_cli(["inv", *args], sample.main, timeout=timeout)


def lines(r: subprocess.CompletedProcess[str], start: str) -> list[str]:
    return [ln for ln in r.stdout.splitlines() if ln.startswith(start)]


def listed(sample: Sample) -> dict[str, Any]:
    r = inv(sample, "session.list", "--json", "--brief")
    assert r.returncode == 0, r.stderr
    return {row["name"]: row for row in json.loads(r.stdout)}


def test_add_waits_and_says_each_window_is_up(sample: Sample, srv: libtmux.Server) -> None:
    r = inv(sample, "session.add", "x")
    assert r.returncode == 0, r.stdout + r.stderr
    (backend,) = lines(r, "✓ backend")
    assert backend.split()[2:5] == ["up", "on", f":{sample.config['ports']['backend']}"]
    assert lines(r, "✓ frontend") and lines(r, "✓ claude       running")
    assert "Session x is ready" in r.stdout
    row = listed(sample)["x"]
    assert row["windows"] == {"backend": "up", "frontend": "up", "claude": "running"}
    assert row["status"] == "running"


def test_a_server_that_exits_at_once(sample: Sample, srv: libtmux.Server) -> None:
    broken = {**BACKEND, "cmd": "echo 'ImportError: no module named django' && false"}
    sample.write_config(windows=[broken, FRONTEND, CLAUDE])
    r = inv(sample, "session.add", "x")
    assert r.returncode == 1
    (line,) = lines(r, "✗ backend")
    assert "exited: " in line and "ImportError: no module named django" in line
    assert "tmux attach -t =tally-x" in line
    assert "Session x started with problems" in r.stdout
    assert "session x started with problems (backend exited); it is kept" in r.stderr
    assert "x" in sample.registry() and "tally-x" in tmux.running(srv)  # kept, to look at
    assert listed(sample)["x"]["windows"]["backend"] == "exited"


def test_a_port_held_by_another_program(
    sample: Sample, srv: libtmux.Server, serve: Callable[[int, Path], Popen[bytes]], tmp_path: Path
) -> None:
    """After a reboot another program has taken the session's port: resume says whose it
    is, never that the session's backend is up."""
    assert inv(sample, "session.add", "x").returncode == 0
    tmux.kill(srv, "tally-x")
    port = sample.registry()["x"]["backend_port"]
    poll(lambda: not ports.is_listening(port))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    other = serve(port, elsewhere)
    r = inv(sample, "session.resume", "--name", "x")
    assert r.returncode == 1
    (line,) = lines(r, "✗ backend")
    assert f"port {port} answered by pid {other.pid}" in line and "outside the worktree" in line
    assert "1 session(s) started with problems: x (backend foreign)" in r.stderr


def test_a_slow_server_is_waited_for(sample: Sample, srv: libtmux.Server) -> None:
    sample.write_config(windows=[{**BACKEND, "cmd": "sleep 5 && " + BACKEND["cmd"]}, CLAUDE])
    r = inv(sample, "session.add", "x")
    assert r.returncode == 0, r.stdout + r.stderr
    (line,) = lines(r, "✓ backend")
    seconds = float(line.split("(")[1].split()[0])
    assert 5.0 <= seconds < 20


def test_no_wait(sample: Sample, srv: libtmux.Server) -> None:
    sample.write_config(windows=[{**BACKEND, "cmd": "sleep 30"}, CLAUDE])
    started = time.monotonic()
    r = inv(sample, "session.add", "x", "--no-wait")
    assert r.returncode == 0 and time.monotonic() - started < 20
    assert not lines(r, "✓ backend") and not lines(r, "✗ backend")
    assert "Session x is ready" in r.stdout


def test_ready_timeout(sample: Sample, srv: libtmux.Server) -> None:
    sample.write_config(windows=[{**BACKEND, "cmd": "sleep 30 # {backend_port}"}], ready_timeout=2)
    r = inv(sample, "session.add", "x")
    assert r.returncode == 1
    (line,) = lines(r, "✗ backend")
    assert "no answer on :" in line and "after 2 s" in line


# --- restart, and doctor --fix of a server that died -------------------------------------


def _server_pid(port: int) -> int:
    return poll(lambda: (h := ports.holders([port]).get(port)) and h[0].pid)


def test_restart_a_dead_and_a_live_server(sample: Sample, srv: libtmux.Server) -> None:
    assert inv(sample, "session.add", "x").returncode == 0
    backend = sample.registry()["x"]["backend_port"]
    first = _server_pid(backend)
    r = inv(sample, "session.restart", "x", "--window", "backend")
    assert r.returncode == 0, r.stdout + r.stderr
    assert lines(r, "✓ backend      restarted") and lines(r, "✓ backend      up on")
    second = _server_pid(backend)
    assert second != first and not ports.is_alive(first)
    # the server dies inside its window: restart brings it back
    subprocess.run(["kill", str(second)], check=True)
    poll(lambda: listed(sample)["x"]["windows"]["backend"] == "exited")
    r = inv(sample, "session.restart", "x", "--window", "backend")
    assert r.returncode == 0, r.stdout + r.stderr
    assert listed(sample)["x"]["windows"]["backend"] == "up"


def test_restart_refuses_an_unknown_window(sample: Sample, srv: libtmux.Server) -> None:
    assert inv(sample, "session.add", "x").returncode == 0
    r = inv(sample, "session.restart", "x", "--window", "nope")
    assert r.returncode == 1
    assert "session x has no window 'nope' (it has: backend, frontend, claude)" in r.stderr


def test_doctor_fix_restarts_a_dead_server_and_leaves_a_live_one(
    sample: Sample, srv: libtmux.Server
) -> None:
    assert inv(sample, "session.add", "x").returncode == 0
    reg = sample.registry()["x"]
    backend, frontend = reg["backend_port"], reg["frontend_port"]
    alive = _server_pid(frontend)
    subprocess.run(["kill", str(_server_pid(backend))], check=True)
    poll(lambda: listed(sample)["x"]["windows"]["backend"] == "exited")
    # (a window's shell is taken as still starting for its first 3 s: poll past that)
    died = "programs that have died in tmux windows: backend"
    r = poll(lambda: (d := inv(sample, "session.doctor")) and died in d.stdout and d, timeout=30)
    assert r.returncode == 1
    r = inv(sample, "session.doctor", "--fix")
    assert r.returncode == 0, r.stdout + r.stderr
    assert lines(r, "✓ backend      up on")
    assert _server_pid(frontend) == alive  # the live one untouched
    assert listed(sample)["x"]["windows"]["backend"] == "up"


def test_tmux_restarts_a_dead_window_only(sample: Sample, srv: libtmux.Server) -> None:
    assert inv(sample, "session.add", "x").returncode == 0
    reg = sample.registry()["x"]
    alive = _server_pid(reg["frontend_port"])
    subprocess.run(["kill", str(_server_pid(reg["backend_port"]))], check=True)
    poll(lambda: listed(sample)["x"]["windows"]["backend"] == "exited")
    r = poll(lambda: (t := inv(sample, "session.tmux", "x")) and "restarted" in t.stdout and t)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "tally-x: restarted backend" in r.stdout
    assert _server_pid(reg["frontend_port"]) == alive


# --- preflight ----------------------------------------------------------------------------


def _login_path(sample: Sample, shell: str) -> None:
    import os

    path = os.environ["PATH"]
    if shell == "fish":
        conf = sample.home / ".config" / "fish"
        conf.mkdir(parents=True, exist_ok=True)
        (conf / "config.fish").write_text(f"set -gx PATH {' '.join(path.split(':'))}\n")


@pytest.mark.parametrize("shell", [s for s in ("bash", "fish") if shutil.which(s)])
def test_preflight_names_a_missing_workon(sample: Sample, srv: libtmux.Server, shell: str) -> None:
    _login_path(sample, shell)
    sample.write_config(activate="workon {project}")
    r = run_cli(
        ["inv", "session.add", "x", "--no-wait"],
        sample.main,
        env={"SHELL": str(shutil.which(shell))},
    )
    (line,) = lines(r, "! preflight")
    assert f"`workon tally` fails in your login shell ({shell})" in line
    assert "tally.activate" in line
    assert lines(r, "✓ ports")  # a warning: add goes on
    # its shell ran while add checked git and tmux; its line still comes first
    assert r.stdout.splitlines()[0] == line


def test_preflight_names_a_missing_program(sample: Sample, srv: libtmux.Server) -> None:
    sample.write_config(windows=[BACKEND, {**FRONTEND, "cmd": "vite --port {frontend_port}"}])
    r = inv(sample, "session.add", "x", "--dry-run")
    (line,) = lines(r, "! preflight")
    assert line.split()[2:5] == ["vite", "is", "not"] and "frontend" in line
    assert r.stdout.splitlines()[0] == line  # before the plan's first line


def _said(sample: Sample, *args: str) -> tuple[int, list[str]]:
    """`inv ARGS`: its status, and its stdout and stderr lines in the order written."""
    r = subprocess.run(
        [str(VENV_BIN / "inv"), *args],
        cwd=sample.main,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=90,
    )
    return r.returncode, r.stdout.splitlines()


@pytest.mark.parametrize("dry_run", [False, True], ids=["add", "dry-run"])
def test_an_add_its_checks_refuse_says_the_preflight_first(
    sample: Sample, srv: libtmux.Server, dry_run: bool
) -> None:
    assert inv(sample, "session.add", "x", "-q", "--no-wait").returncode == 0
    sample.write_config(activate="workon {project}")
    code, said = _said(sample, "session.add", "x", *(["--dry-run"] if dry_run else []))
    assert code == 1
    assert [ln.split()[:2] for ln in said] == [["!", "preflight"], ["✗", "session"]], said
    assert "already exists" in said[1]


def test_ctrl_c_while_the_preflights_shell_runs_ends_it_and_makes_nothing(
    sample: Sample, srv: libtmux.Server
) -> None:
    (sample.home / ".profile").write_text("sleep 30\n")  # a login shell that hangs
    proc = Popen(
        [str(VENV_BIN / "inv"), "session.add", "x", "--no-wait"],
        cwd=sample.main,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own group, as a terminal's foreground job
    )
    [shell] = poll(lambda: preflights_in(sample.main), timeout=30)
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=10)  # not the shell's 30 s, nor the 20 s timeout
    assert proc.returncode == 130, out + err
    assert "interrupted" in err and "Traceback" not in err
    poll(lambda: not in_group(shell), timeout=5)  # the shell and its rc file's sleep
    assert sample.registry() == {}
    assert not (sample.main.parent / "tally-x").exists()


# --- the agent: states in list, on_waiting once, next --------------------------------------


def _say(srv: libtmux.Server, name: str, line: str) -> None:
    tmux.type_line(srv, f"=tally-{name}:=claude", line)


def _agent(sample: Sample, name: str) -> dict[str, Any]:
    return listed(sample)[name]["agent"] or {}


def test_agent_states_in_list_and_on_waiting_once(
    sample: Sample, srv: libtmux.Server, standin_claude: Path, tmp_path: Path
) -> None:
    said = tmp_path / "said"
    sample.write_config(
        hooks={"on_waiting": [f'echo "{{name}} $TALLY_AGENT_REASON" >> {said}']},
    )
    assert inv(sample, "session.add", "x").returncode == 0
    poll(lambda: _agent(sample, "x").get("state") == "idle", timeout=20)
    for line, want in (("prompt", "working"), ("ask permission", "waiting")):
        _say(srv, "x", line)
        poll(lambda want=want: _agent(sample, "x").get("state") == want, timeout=20)
    found = _agent(sample, "x")
    assert found["reason"] == "permission" and found["session_id"] and found["since"]
    r = inv(sample, "session.list")
    assert "waiting 0s" in r.stdout or "waiting 1s" in r.stdout or "waiting " in r.stdout
    poll(lambda: said.exists() and said.read_text(), timeout=30)
    state_file = agent.state_path(sample.project().common_dir, "x")
    _say(srv, "x", "idle")  # Claude's idle prompt while it waits: the wait holds
    poll(lambda: (agent.read(state_file) or {}).get("event") == "Notification", timeout=20)
    assert (agent.read(state_file) or {}).get("notify") is False  # not said again
    _say(srv, "x", "prompt")  # answered: it works again
    poll(lambda: _agent(sample, "x").get("state") == "working", timeout=20)
    assert said.read_text() == "x permission\n"
    _say(srv, "x", "finish")  # a turn done: the user is needed again
    poll(lambda: said.read_text() == "x permission\nx done\n", timeout=30)
    _say(srv, "x", "exit")
    poll(lambda: _agent(sample, "x").get("state") == "exited", timeout=20)


def test_send_types_a_line_into_the_agents_window(
    sample: Sample, srv: libtmux.Server, standin_claude: Path
) -> None:
    assert inv(sample, "session.add", "x").returncode == 0
    poll(lambda: _agent(sample, "x").get("state") == "idle", timeout=20)
    r = inv(sample, "session.send", "x", "ask permission")
    assert r.returncode == 0, r.stderr
    assert lines(r, "✓ send         x: typed into claude")
    poll(lambda: _agent(sample, "x").get("state") == "waiting", timeout=20)
    r = run_cli(["tally-session", "send", "x", "--text=prompt"], sample.main)  # the answer
    assert r.returncode == 0, r.stderr
    poll(lambda: _agent(sample, "x").get("state") == "working", timeout=20)
    # another window, and a line a shell and tmux would otherwise read: typed as it is
    line = "echo '#{session_name} $HOME;'"
    r = inv(sample, "session.send", "x", line, "--window", "backend")
    assert r.returncode == 0, r.stderr
    assert lines(r, "✓ send         x: typed into backend")
    poll(lambda: line in pane(srv, "=tally-x:=backend"))


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["x", "hi", "--window", "nope"], "session x has no window 'nope' (it has: backend, "),
        (["nope", "hi"], "no session named 'nope'"),
        (["x", "hi"], "session x is not running; start it with: inv session.resume --name x"),
    ],
    ids=["unknown-window", "unknown-session", "not-running"],
)
def test_send_refuses_in_one_line(
    sample: Sample, srv: libtmux.Server, args: list[str], says: str
) -> None:
    assert inv(sample, "session.add", "x", "--no-wait").returncode == 0
    srv.cmd("kill-session", "-t", "=tally-x")
    r = inv(sample, "session.send", *args)
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.startswith(f"✗ {says}") and len(r.stderr.splitlines()) == 1, r.stderr


def test_next_goes_to_the_longest_waiting(
    sample: Sample, srv: libtmux.Server, standin_claude: Path
) -> None:
    r = inv(sample, "session.next")
    assert (r.returncode, r.stdout.strip()) == (0, "no agent is waiting for you")
    for name in ("a", "b"):
        assert inv(sample, "session.add", name).returncode == 0
        poll(lambda name=name: _agent(sample, name).get("state") == "idle", timeout=20)
    assert inv(sample, "session.next").stdout.strip() == "no agent is waiting for you"
    _say(srv, "b", "question")
    poll(lambda: _agent(sample, "b").get("state") == "waiting", timeout=20)
    _say(srv, "a", "ask permission")
    poll(lambda: _agent(sample, "a").get("state") == "waiting", timeout=20)
    r = inv(sample, "session.next")  # no terminal here: it says what to run
    assert "b: its agent waits" in r.stdout
    assert "tmux attach -t =tally-b" in r.stderr


def test_exact_resume_with_the_recorded_conversation(
    sample: Sample, srv: libtmux.Server, standin_claude: Path
) -> None:
    assert inv(sample, "session.add", "x").returncode == 0
    poll(lambda: _agent(sample, "x").get("state") == "idle", timeout=20)
    _say(srv, "x", "prompt")
    poll(lambda: _agent(sample, "x").get("state") == "working", timeout=20)
    sid = _agent(sample, "x")["session_id"]
    tmux.kill(srv, "tally-x")
    assert inv(sample, "session.resume", "--name", "x").returncode == 0
    # the stand-in resumed the same conversation: SessionStart(resume) with the same id
    poll(lambda: _agent(sample, "x").get("state") == "idle", timeout=20)
    assert _agent(sample, "x")["session_id"] == sid
    assert _agent(sample, "x")["reason"] == "resume"
