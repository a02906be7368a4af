"""panes.py: what runs in each pane (one list-panes call, real tmux), and what an
agent's window shows."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import libtmux
import pytest
from conftest import poll

from tally_tasks import panes, tmux
from tally_tasks.tmux import WindowRun


def _start(srv: libtmux.Server, tmp_path: Path, lines: dict[str, str]) -> None:
    runs = [WindowRun(name, tmp_path, line) for name, line in lines.items()]
    tmux.create(srv, "s", runs, {})


def test_snapshot_tells_programs_from_idle_shells(srv: libtmux.Server, tmp_path: Path) -> None:
    _start(
        srv,
        tmp_path,
        {
            "idle": "",
            "sleep": "sleep 60",
            "grouped": "true && ( sleep 60 || true )",
            "ended": "true",
        },
    )
    snap = poll(
        lambda: (
            (s := panes.snapshot(srv).get("s"))
            and s["sleep"].running
            and s["grouped"].running
            and s
        )
    )
    assert not snap["idle"].running and not snap["ended"].running
    assert snap["sleep"].started is not None and abs(snap["sleep"].started - time.time()) < 30
    assert snap["sleep"].path == str(tmp_path)
    assert snap["idle"].shell_started is not None
    # what runs, named as tmux names it (read from /proc on Linux, tmux's word elsewhere)
    told = dict(
        line.split("\t")
        for line in srv.cmd(
            "list-panes", "-s", "-t", "=s", "-F", "#{window_name}\t#{pane_current_command}"
        ).stdout
    )
    assert {w: p.command for w, p in snap.items()} == told
    assert snap["sleep"].command == "sleep"


def test_a_dead_pane(srv: libtmux.Server, tmp_path: Path) -> None:
    srv.cmd("new-session", "-d", "-s", "d", "-n", "w", "sleep 60")
    srv.cmd("set-option", "-w", "-t", "=d:=w", "remain-on-exit", "on")
    # it lives a moment: a program that exits at once may leave its pane dead without a
    # status (tmux 3.3a, 5 runs in 40), which `list` then shows as "exited" alone
    srv.cmd("respawn-pane", "-k", "-t", "=d:=w", "sh -c 'echo gone-now; sleep 0.2; exit 3'")
    # the killed sleep may show as a dead pane (no status) before the new command runs
    pane = poll(lambda: (p := panes.snapshot(srv).get("d").get("w")) and p.dead_status == 3 and p)
    assert pane.dead and not pane.running
    # tmux may see the exit before it has read the last output from the pane's terminal
    poll(lambda: "gone-now" in panes.last_lines(srv, pane.id))


def test_no_server_is_no_panes(srv: libtmux.Server) -> None:
    assert panes.snapshot(srv).sessions == {}


def _pane(running: bool = True, started: float | None = 100.0) -> panes.Pane:
    return panes.Pane(
        "s", "claude", 1, "claude", False, None, "/w", "%1", 5 if running else None, started
    )


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


ME = os.getpid()


@pytest.mark.parametrize(
    ("state", "pane", "expected"),
    [
        (None, None, ("exited", None)),
        (
            {"state": "working", "at": 150.0, "since": 120.0, "pid": ME},
            _pane(running=False),
            ("exited", None),
        ),
        (
            {"state": "exited", "at": 150.0, "since": 150.0, "pid": ME},
            _pane(running=False),
            ("exited", 150.0),
        ),
        (None, _pane(), ("running", 100.0)),
        ({"state": "working", "at": 150.0, "since": 120.0, "pid": ME}, _pane(), ("working", 120.0)),
        ({"state": "waiting", "at": 150.0, "since": 140.0, "pid": ME}, _pane(), ("waiting", 140.0)),
        ({"state": "working", "at": 50.0, "since": 40.0, "pid": ME}, _pane(), ("running", 100.0)),
        (
            {"state": "working", "at": 150.0, "since": 120.0, "pid": "dead"},
            _pane(),
            ("running", 100.0),
        ),
        ({"state": "exited", "at": 150.0, "since": 150.0, "pid": ME}, _pane(), ("running", 100.0)),
        ({"state": "idle", "at": 150.0, "since": 150.0}, _pane(started=None), ("idle", 150.0)),
    ],
    ids=[
        "no-window",
        "working-but-pane-idle",
        "exited",
        "no-hooks",
        "working",
        "waiting",
        "older-than-program",
        "writer-gone",
        "exited-then-restarted",
        "no-start-time",
    ],
)
def test_agent_status(
    state: dict[str, Any] | None, pane: panes.Pane | None, expected: tuple[str, float | None]
) -> None:
    if state and state.get("pid") == "dead":
        state = {**state, "pid": _dead_pid()}
    assert panes.agent_status(state, pane) == expected


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [(None, ""), (5, "5s"), (185, "3m"), (7300, "2h"), (90000, "1d")],
    ids=str,
)
def test_age(seconds: float | None, expected: str) -> None:
    assert panes.age(None if seconds is None else 1000.0 - seconds, now=1000.0) == expected


def test_a_begun_snapshot_is_the_snapshot(srv: libtmux.Server, tmp_path: Path) -> None:
    """`snapshot_begun` on our own Server (tmux asked at once, read later) gives what
    `snapshot` gives, on libtmux's (asked when read) too; no server is no panes."""
    ours = tmux.server(srv.socket_name or "")
    assert panes.snapshot_begun(ours)() == panes.Snapshot({}, {})  # no server yet
    _start(srv, tmp_path, {"idle": "", "sleep": "sleep 60"})
    poll(lambda: (s := panes.snapshot(srv).get("s")) and s["sleep"].running)
    begun = panes.snapshot_begun(ours)
    assert begun() == panes.snapshot(ours) == panes.snapshot_begun(srv)()
    assert begun() is begun()  # tmux's one answer, made into a snapshot once


def test_begun_says_when_tmux_is_missing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with monkeypatch.context() as m, pytest.raises(tmux.TallyError, match="tmux is not installed"):
        m.setenv("PATH", str(tmp_path))  # no tmux on it
        panes.snapshot_begun(tmux.server("x"))
