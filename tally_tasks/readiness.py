"""Are the session's windows up? Waited for after they start, checked against the pane.

A window has the ports its command names (``{backend_port}``). It is ``up`` when one of
those ports answers from a process working inside the session's worktree (a server of
another program on the port is ``foreign``, never up); a window without a port is
``running`` as soon as its program runs (not the idle shell). A window whose program is
gone is ``exited``, with the pane's last lines. A port that has not answered by the
deadline is ``timeout``.

A shell that has just started may still be reading its rc files before it runs the typed
line (and a line typed again into an old shell has not run yet either), so "nothing runs"
counts as ``exited`` only once the program was seen running, or `SETTLE` seconds after
both the shell's start and the start of the wait.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from . import output, panes, tmux
from . import ports as ports_
from .config import Window
from .session import Session, window_ports
from .sessions import works_in

SETTLE = 3.0


@dataclass
class Ready:
    """How a window came up (or did not), with what says why."""

    window: str
    state: str  # up, running, exited, foreign, timeout, missing
    port: int | None = None
    seconds: float = 0.0
    lines: list[str] = field(default_factory=list)
    holder: str = ""

    @property
    def ok(self) -> bool:
        return self.state in ("up", "running")


def check(
    session: Session,
    windows: Iterable[Window],
    srv: tmux.TmuxServer,
    timeout: float,
    clock: Callable[[], float] = time.monotonic,
    interval: float = 0.1,
    among: Iterable[Window] = (),
) -> list[Ready]:
    """Wait (at most `timeout` s) until every window is up, running or has failed; a
    window without a command (an idle shell by design) is not waited for. `among`: all
    the session's windows, when `windows` are some of them (which window serves a port
    two of them name: `window_ports`)."""
    windows = [w for w in windows if w.cmd.strip() or w.resume_cmd.strip()]
    served = window_ports([*among] or windows, session.ports)
    wanted = {w.name: served.get(w.name, []) for w in windows}
    start, wall = clock(), time.time()
    seen_running: set[str] = set()
    done: dict[str, Ready] = {}
    while True:
        now = clock()
        snap = panes.snapshot(srv).get(session.tmux_name)
        pending = [w for w in wanted if w not in done]
        listening = ports_.listening(p for w in pending for p in wanted[w])
        held = ports_.holders(listening) if listening else {}
        for name in pending:
            pane = snap.get(name)
            if pane is None:
                done[name] = Ready(name, "missing")
                continue
            if pane.running:
                seen_running.add(name)
            result = _one(name, wanted[name], pane, held, session, name in seen_running, wall)
            if result is not None:
                result.seconds = now - start
                if result.state == "exited":
                    result.lines = panes.last_lines(srv, pane.id)
                done[name] = result
        if len(done) == len(wanted):
            break
        if now - start >= timeout:
            for name in wanted:
                if name not in done:
                    port = wanted[name][0] if wanted[name] else None
                    done[name] = Ready(name, "timeout", port, now - start)
            break
        time.sleep(interval)
    return [done[w] for w in wanted]


def _one(
    name: str,
    ports: list[int],
    pane: panes.Pane,
    held: dict[int, list[ports_.Holder]],
    session: Session,
    seen_running: bool,
    began: float,
) -> Ready | None:
    """The window's result, or None while it is still coming up."""
    for port in ports:
        holders = held.get(port)
        if holders is None:
            continue
        if any(works_in(session, h.cwd) for h in holders):
            return Ready(name, "up", port)
        who = ", ".join(h.describe() for h in holders) or "another program"
        return Ready(name, "foreign", port, holder=who)
    if pane.running:
        return None if ports else Ready(name, "running")
    # from the later of the shell's start and this wait's: a line just typed again into an
    # old shell (a restart) has not run yet either
    born = max(began, pane.shell_started or 0.0)
    if seen_running or time.time() - born >= SETTLE:
        return Ready(name, "exited", ports[0] if ports else None)
    return None


def report(results: list[Ready], session: Session, attach: str) -> bool:
    """One line per window; True when all are up or running."""
    for r in results:
        if r.state == "up":
            output.step(r.window, f"up on :{r.port} ({r.seconds:.1f} s)")
        elif r.state == "running":
            output.step(r.window, "running")
        elif r.state == "exited":
            said = " | ".join(r.lines[-3:]) or "no output"
            output.failed(r.window, f"exited: {said}  (see it: {attach})")
        elif r.state == "foreign":
            output.failed(r.window, f"port {r.port} answered by {r.holder} outside the worktree")
        elif r.state == "timeout":
            output.failed(r.window, f"no answer on :{r.port} after {r.seconds:.0f} s ({attach})")
        else:
            output.failed(r.window, f"window missing from {session.tmux_name}")
    return all(r.ok for r in results)
