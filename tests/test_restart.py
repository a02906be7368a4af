"""restart.py: one window's program restarted, against real tmux and real processes."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import libtmux
from conftest import free_base, poll

from tally_tasks import panes, ports, restart, tmux
from tally_tasks.session import Session
from tally_tasks.tmux import WindowRun

PY = shlex.quote(sys.executable)


def _session(folder: Path) -> Session:
    return Session("x", "x", folder, "s", {})


def _count(log: Path) -> int:
    return len(log.read_text().splitlines()) if log.exists() else 0


def _line(log: Path, then: str) -> str:
    return f"echo started >> {shlex.quote(str(log))}; {then}"


def _pane(srv: libtmux.Server, window: str = "w") -> panes.Pane | None:
    return panes.snapshot(srv).get("s").get(window)


def test_a_program_that_died_is_typed_again(srv: libtmux.Server, tmp_path: Path) -> None:
    log = tmp_path / "runs.log"
    run = WindowRun("w", tmp_path, _line(log, "false"))
    tmux.create(srv, "s", [run], {})
    poll(lambda: _count(log) == 1)
    assert restart.restart(srv, _session(tmp_path), run, []) == "restarted"
    poll(lambda: _count(log) == 2)


def test_a_dead_pane_is_respawned(srv: libtmux.Server, tmp_path: Path) -> None:
    log = tmp_path / "runs.log"
    run = WindowRun("w", tmp_path, _line(log, "sleep 60"))
    tmux.create(srv, "s", [WindowRun("w", tmp_path, "")], {})
    srv.cmd("set-option", "-w", "-t", "=s:=w", "remain-on-exit", "on")
    tmux.type_line(srv, "=s:=w", "exit 3")  # the window's shell itself ends
    poll(lambda: (p := _pane(srv)) and p.dead)
    assert restart.restart(srv, _session(tmp_path), run, []) == "respawned"
    poll(lambda: _count(log) == 1)
    poll(lambda: (p := _pane(srv)) and p.running)


def test_a_live_program_is_left_alone_unless_asked(srv: libtmux.Server, tmp_path: Path) -> None:
    port = free_base()
    log = tmp_path / "runs.log"
    run = WindowRun("w", tmp_path, _line(log, f"{PY} -m http.server {port} --bind 127.0.0.1"))
    tmux.create(srv, "s", [run], {})
    poll(lambda: ports.is_listening(port))
    first = ports.holders([port])[port][0].pid
    assert restart.restart(srv, _session(tmp_path), run, [port]) == "running"
    assert ports.holders([port])[port][0].pid == first
    assert restart.restart(srv, _session(tmp_path), run, [port], live=True) == "restarted"
    poll(lambda: (h := ports.holders([port]).get(port)) and h[0].pid != first)
    assert not ports.is_alive(first)
    assert _count(log) == 2


def test_a_server_ignoring_hangups_is_stopped_too(srv: libtmux.Server, tmp_path: Path) -> None:
    """A server started with nohup, in the background, holding the window's port: the
    foreground group is not it; it is found as the worktree's holder of the port."""
    port = free_base()
    server = f"nohup {PY} -m http.server {port} --bind 127.0.0.1 >/dev/null 2>&1 & sleep 60"
    run = WindowRun("w", tmp_path, server)
    tmux.create(srv, "s", [run], {})
    poll(lambda: ports.is_listening(port))
    first = ports.holders([port])[port][0].pid
    restart.restart(srv, _session(tmp_path), run, [port], live=True, grace=2)
    poll(lambda: (h := ports.holders([port]).get(port)) and h[0].pid != first)
    assert not ports.is_alive(first)
    srv.cmd("kill-server")
    poll(lambda: not ports.is_listening(port) or _stop(port))


def _stop(port: int) -> bool:
    ports.stop(h.pid for h in ports.holders([port]).get(port, []))
    return True


def test_a_missing_window_is_made(srv: libtmux.Server, tmp_path: Path) -> None:
    log = tmp_path / "runs.log"
    tmux.create(srv, "s", [WindowRun("other", tmp_path, "")], {})
    run = WindowRun("w", tmp_path, _line(log, "sleep 60"))
    assert restart.restart(srv, _session(tmp_path), run, []) == "started"
    poll(lambda: _count(log) == 1)
