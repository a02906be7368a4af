"""The live state of sessions, as `list`, `list --json` and `next` show it.

From one pane snapshot (one ``tmux list-panes -a``), the agents' state files, and the
listening ports with their holders: per session, its agent's state (checked against its
pane, see `panes.agent_status`) and each window's: a window with ports is ``up`` (a
process working in the worktree answers), ``down`` (its program runs, nothing answers
yet), ``other`` (another program holds its port), or ``exited`` (its program is gone); a
window without one is ``running`` or ``exited``; ``missing`` when it is not there.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, NamedTuple

from . import agent, panes
from . import ports as ports_
from .session import Project, Session, window_ports
from .sessions import works_in


class Live(NamedTuple):
    """A session's live state: tmux there, its agent's state, each window's."""

    running: bool  # the tmux session is there
    agent: dict[str, Any] | None = None  # state, since, reason, session_id, window
    windows: dict[str, str] = {}  # shared by the stopped: never changed

    def status(self, now: float | None = None) -> str:
        """The STATUS column: the agent's state (``waiting 3m``), then each window
        that is not up or running (``frontend exited``); ``stopped`` without tmux."""
        if not self.running:
            return "stopped"
        parts = []
        if self.agent is not None:
            state = self.agent["state"]
            since = self.agent.get("since")
            shown = f"{state} {panes.age(since, now)}" if state == "waiting" else state
            parts.append(shown.strip())
        agent_window = self.agent["window"] if self.agent else None
        for name, state in self.windows.items():
            if name != agent_window and state not in ("up", "running"):
                parts.append(f"{name} {state}")
        return ", ".join(parts) or "up"


def gather(
    project: Project,
    sessions: Mapping[str, Session],
    snap: panes.Snapshot,
    up: set[int],
    held: dict[int, list[ports_.Holder]],
) -> dict[str, Live]:
    """Each session's live state (no tmux or process calls here: all is given)."""
    windows = project.settings.windows
    agent_window = panes.agent_window(windows)
    result: dict[str, Live] = {}
    for name, session in sessions.items():
        if session.tmux_name not in snap.sessions:
            result[name] = Live(running=False)
            continue
        have = snap.get(session.tmux_name)
        agent_state: dict[str, Any] | None = None
        shown_windows: dict[str, str] = {}
        for win, numbers in window_ports(windows, session.ports).items():
            pane = have.get(win)
            if win == agent_window:
                state = agent.read(agent.state_path(project.common_dir, session.slug))
                shown, since = panes.agent_status(state, pane)
                recorded = state or {}
                believed = shown == recorded.get("state")
                agent_state = {
                    "state": shown,
                    "since": since,
                    "reason": recorded.get("reason", "") if believed else "",
                    "session_id": recorded.get("session_id") or None,
                    "window": win,
                }
                shown_windows[win] = shown
            else:
                shown_windows[win] = _window(session, numbers, pane, up, held)
        result[name] = Live(True, agent_state, shown_windows)
    return result


def _window(
    session: Session,
    numbers: list[int],
    pane: panes.Pane | None,
    up: set[int],
    held: dict[int, list[ports_.Holder]],
) -> str:
    if pane is None:
        return "missing"
    if any(n in up and any(works_in(session, h.cwd) for h in held.get(n, [])) for n in numbers):
        return "up"
    if not pane.running:
        return "exited"
    if not numbers:
        return "running"
    return "other" if any(n in up for n in numbers) else "down"


def longest_waiting(states: dict[str, Live]) -> str | None:
    """The session whose agent has waited longest (None when none waits)."""
    waiting = [
        (live.agent.get("since") or time.time(), name)
        for name, live in states.items()
        if live.agent and live.agent["state"] == "waiting"
    ]
    return min(waiting)[1] if waiting else None
