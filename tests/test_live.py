"""live.py: each session's agent and window states from one pane snapshot, the state
files and the ports, with the stand-in claude running real hooks in a real tmux pane."""

from __future__ import annotations

import json
import os
import shlex
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from subprocess import Popen

import libtmux
import pytest
from conftest import Sample, poll

from tally_tasks import agent, claude, live, panes, ports, tmux
from tally_tasks.session import Project, Session
from tally_tasks.tmux import WindowRun

PY = shlex.quote(sys.executable)


def _config(sample: Sample) -> dict[str, object]:
    return {
        "windows": [
            {
                "name": "backend",
                "dir": "",
                "cmd": f"{PY} -m http.server {{backend_port}} --bind 127.0.0.1",
            },
            {"name": "frontend", "dir": "", "cmd": "sleep 60 # {frontend_port}"},
            {"name": "claude", "dir": "", "cmd": "claude -n {session}"},
        ],
    }


def _start(sample: Sample, srv: libtmux.Server, name: str) -> tuple[Project, Session]:
    project = sample.project(**_config(sample))
    wt = sample.root / f"wt-{name}"
    wt.mkdir()
    offset = {"x": 0, "y": 1}[name]
    entry = {
        "worktree": str(wt),
        "branch": name,
        "backend_port": project.settings.ports["backend"] + offset,
        "frontend_port": project.settings.ports["frontend"] + offset,
    }
    reg = sample.main / ".tally-sessions"
    entries = json.loads(reg.read_text()) if reg.exists() else {}
    reg.write_text(json.dumps({**entries, name: entry}))
    session = project.session(name, entry)
    state = agent.state_path(project.common_dir, session.slug)
    command = agent.hook_command(state, wt, project.main, name)
    assert claude.install_hooks(wt, agent.EVENTS, command, agent.HOOK_FLAG).ok
    runs = []
    for win in project.settings.windows:
        line = win.cmd
        for key, value in session.values(project).items():
            line = line.replace("{" + key + "}", str(value))
        runs.append(WindowRun(win.name, wt, line))
    tmux.create(srv, session.tmux_name, runs, session.env())
    return project, session


def _gather(project: Project, srv: libtmux.Server, *sessions: Session) -> dict[str, live.Live]:
    snap = panes.snapshot(srv)
    numbers = [p for s in sessions for p in s.ports.values()]
    up = ports.listening(numbers)
    return live.gather(project, {s.name: s for s in sessions}, snap, up, ports.holders(up))


def _say(srv: libtmux.Server, session: Session, line: str) -> None:
    tmux.type_line(srv, f"={session.tmux_name}:=claude", line)


def _agent_state(project: Project, srv: libtmux.Server, session: Session) -> str:
    found = _gather(project, srv, session)[session.name].agent
    return found["state"] if found else ""


@pytest.fixture
def started(sample: Sample, srv: libtmux.Server, standin_claude: Path) -> tuple[Project, Session]:
    return _start(sample, srv, "x")


def test_states_as_the_agent_goes(started: tuple[Project, Session], srv: libtmux.Server) -> None:
    project, session = started
    poll(lambda: _agent_state(project, srv, session) == "idle")
    poll(lambda: _gather(project, srv, session)["x"].windows["backend"] == "up")
    state = _gather(project, srv, session)["x"]
    assert state.windows == {"backend": "up", "frontend": "down", "claude": "idle"}
    assert state.status() == "idle, frontend down"

    def reason() -> str:
        return str((_gather(project, srv, session)["x"].agent or {}).get("reason"))

    steps = [("prompt", "working", ""), ("ask permission", "waiting", "permission")]
    steps += [("finish", "waiting", "done")]
    for line, want, why in steps:
        _say(srv, session, line)
        poll(
            lambda want=want, why=why: (
                (_agent_state(project, srv, session), reason()) == (want, why)
            )
        )
    _say(srv, session, "idle")  # Claude's idle prompt: the same wait
    state_file = agent.state_path(project.common_dir, session.slug)
    poll(lambda: (agent.read(state_file) or {}).get("event") == "Notification")
    found = _gather(project, srv, session)["x"].agent or {}
    assert found["state"] == "waiting" and found["reason"] == "done" and found["session_id"]
    assert _gather(project, srv, session)["x"].status().startswith("waiting ")
    _say(srv, session, "exit")
    poll(lambda: _agent_state(project, srv, session) == "exited")


def test_a_killed_agent_is_exited(started: tuple[Project, Session], srv: libtmux.Server) -> None:
    project, session = started
    poll(lambda: _agent_state(project, srv, session) == "idle")
    _say(srv, session, "prompt")
    poll(lambda: _agent_state(project, srv, session) == "working")
    pid = (agent.read(agent.state_path(project.common_dir, session.slug)) or {})["pid"]
    os.kill(pid, signal.SIGKILL)
    poll(lambda: _agent_state(project, srv, session) == "exited")
    # the state file still says working: the pane is believed, not the file
    assert (agent.read(agent.state_path(project.common_dir, session.slug)) or {})[
        "state"
    ] == "working"


def test_a_stale_state_file_is_not_working(
    sample: Sample, srv: libtmux.Server, tmp_path: Path
) -> None:
    """A state left by an earlier agent (its process gone) while another program runs in
    the window, that has not reported: never `working`."""
    project = sample.project(**_config(sample))
    session = _start_plain(sample, srv, project)
    state = agent.state_path(project.common_dir, session.slug)
    state.parent.mkdir(parents=True)
    state.write_text(json.dumps({"state": "working", "since": 1.0, "at": 1.0, "pid": 999999999}))
    poll(lambda: _gather(project, srv, session)["x"].windows.get("claude") == "running")
    assert _agent_state(project, srv, session) == "running"


def _start_plain(sample: Sample, srv: libtmux.Server, project: Project) -> Session:
    wt = sample.root / "wt-plain"
    wt.mkdir()
    session = Session("x", "x", wt, "tally-x", dict(project.settings.ports))
    runs = [WindowRun(w.name, wt, "sleep 60") for w in project.settings.windows]
    tmux.create(srv, session.tmux_name, runs, {})
    return session


def test_another_programs_server_is_other(
    sample: Sample, srv: libtmux.Server, serve: Callable[[int, Path], Popen[bytes]], tmp_path: Path
) -> None:
    project = sample.project(**_config(sample))
    session = _start_plain(sample, srv, project)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    serve(session.ports["frontend"], elsewhere)
    poll(lambda: _gather(project, srv, session)["x"].windows.get("backend") == "down")
    assert _gather(project, srv, session)["x"].windows["frontend"] == "other"


def test_not_running(sample: Sample, srv: libtmux.Server) -> None:
    project = sample.project()
    session = Session("x", "x", sample.root, "tally-x", {})
    state = _gather(project, srv, session)["x"]
    assert (state.running, state.agent, state.status()) == (False, None, "stopped")


def test_next_picks_the_longest_waiting(
    sample: Sample, srv: libtmux.Server, standin_claude: Path
) -> None:
    project, x = _start(sample, srv, "x")
    _, y = _start(sample, srv, "y")
    for s in (x, y):
        poll(lambda s=s: _agent_state(project, srv, s) == "idle")
    assert live.longest_waiting(_gather(project, srv, x, y)) is None
    _say(srv, y, "ask permission")
    poll(lambda: _agent_state(project, srv, y) == "waiting")
    _say(srv, x, "question")
    poll(lambda: _agent_state(project, srv, x) == "waiting")
    assert live.longest_waiting(_gather(project, srv, x, y)) == "y"


@pytest.mark.parametrize(
    ("agent_state", "windows", "expected"),
    [
        ({"state": "working", "window": "c"}, {"b": "up", "c": "working"}, "working"),
        (
            {"state": "waiting", "since": 1000.0 - 190, "window": "c"},
            {"b": "up", "c": "waiting"},
            "waiting 3m",
        ),
        (
            {"state": "idle", "window": "c"},
            {"b": "exited", "f": "down", "c": "idle"},
            "idle, b exited, f down",
        ),
        (None, {"b": "up", "w": "running"}, "up"),
        (None, {"b": "missing"}, "b missing"),
    ],
    ids=["working", "waiting", "servers-down", "no-agent", "missing"],
)
def test_status_text(
    agent_state: dict[str, object] | None, windows: dict[str, str], expected: str
) -> None:
    assert live.Live(True, agent_state, windows).status(now=1000.0) == expected
