"""Restarting one window's program: the dev server that died, or, on request, a live one.

A window is its interactive shell with the window's line typed into it, so a program
that died leaves the shell at its prompt: the line is typed again. A pane whose shell
itself is gone (``remain-on-exit``) gets a fresh shell first (``respawn-pane -k``). A
missing window is made again. A live program is restarted only when asked: its pane's
foreground process group is stopped (SIGTERM, then SIGKILL after `grace` seconds), then
any process still working in the worktree that holds one of the window's ports: nothing
outside the session is touched. ``respawn-pane -k`` alone would not do: tmux hangs the
pane up, and a server that ignores SIGHUP lives on holding its port.
"""

from __future__ import annotations

import os
import signal
import time

from . import panes, tmux
from . import ports as ports_
from .session import Session
from .sessions import works_in


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_group(pgid: int, grace: float = 5.0) -> None:
    """SIGTERM the process group, SIGKILL it if it outlives `grace` seconds."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 2.0)):
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not _group_alive(pgid):
                return
            time.sleep(0.05)


def restart(
    srv: tmux.TmuxServer,
    session: Session,
    run: tmux.WindowRun,
    ports: list[int],
    live: bool = False,
    grace: float = 5.0,
) -> str:
    """Restart window `run.name` of the session (its `ports`); returns what was done:
    ``started`` (the window was missing), ``respawned`` (its shell was dead),
    ``restarted`` (its program had died, or was stopped because `live`), ``running``
    (a live program, left alone)."""
    env = session.env()
    pane = panes.snapshot(srv).get(session.tmux_name).get(run.name)
    if pane is None:
        tmux.add_windows(srv, session.tmux_name, [run], env)
        return "started"
    if pane.dead:
        tmux.respawn(srv, pane.id, run.dir, env, run.keys)
        return "respawned"
    if pane.running:
        if not live:
            return "running"
        if pane.program is not None and pane.program > 0:
            stop_group(pane.program, grace)
        _wait_idle(srv, session.tmux_name, run.name)
        left = [
            h.pid
            for holders in ports_.holders(ports).values()
            for h in holders
            if works_in(session, h.cwd)
        ]
        if left:
            ports_.stop(left, grace)
    if run.keys:
        tmux.type_line(srv, pane.id, run.keys)
    return "restarted"


def _wait_idle(srv: tmux.TmuxServer, session: str, window: str, timeout: float = 3.0) -> None:
    """Until the pane's shell is back at its prompt (it reaps what was stopped)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pane = panes.snapshot(srv).get(session).get(window)
        if pane is None or not pane.running:
            return
        time.sleep(0.05)
