"""What runs in every tmux pane, from one ``list-panes -a`` call, and what it shows.

A window's command is typed into its interactive shell, so "its program runs" means
something other than that shell holds the pane's terminal: on Linux, the terminal's
foreground process group (``tpgid`` in /proc/<shell>/stat) is not the shell's own, and
that group's leader tells when the program started. Elsewhere, tmux's
``pane_current_command`` not being a shell stands for it, with no start time.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple

from . import agent, tmux
from .config import Window
from .errors import TallyError
from .session import programs

# the agents of the README's presets; only Claude Code reports its state through hooks
AGENTS = ("claude", "codex", "aider", "gemini")

_FORMAT = "\t".join(
    "#{" + f + "}"
    for f in (
        "session_name",
        "window_name",
        "pane_pid",
        "pane_current_command",
        "pane_dead",
        "pane_dead_status",
        "pane_current_path",
        "pane_id",
    )
)
# with /proc: the command is read there with the rest (tmux's reading of it for every
# pane was a quarter of the call: 1.8 of 8 ms for 150 panes)
_FORMAT_PROC = _FORMAT.replace("#{pane_current_command}", "")


class Pane(NamedTuple):
    """One pane of a session's window, as tmux lists it."""

    session: str
    window: str
    pid: int  # the pane's own process: the window's shell
    command: str  # the name of what runs in it (tmux's pane_current_command, or /proc's)
    dead: bool  # the shell itself has exited (remain-on-exit keeps the pane)
    dead_status: int | None
    path: str
    id: str  # %N
    program: int | None  # leader of the foreground group when a program runs, else None
    started: float | None  # when that program started (epoch seconds), where known
    shell_started: float | None = None  # when the pane's shell started, where known

    @property
    def running(self) -> bool:
        return not self.dead and self.program is not None


def _boot_time() -> float | None:
    try:
        with open("/proc/stat") as f:
            for line in f:
                if line.startswith("btime "):
                    return float(line.split()[1])
    except OSError:
        pass
    return None


def foreground(
    found: tuple[str, list[str]] | None, command: str
) -> tuple[int | None, int | None, str]:
    """(leader pid of the program holding the shell's terminal, its start tick, its name),
    from the shell's /proc stat (`agent.proc_stat`; None: no /proc, tmux's `command`
    says); the program is None while the shell itself waits at its prompt, and the name
    is then the shell's."""
    if found is None:  # no /proc: tmux's word for what runs
        return (None if os.path.basename(command) in agent.SHELLS else -1), None, command
    try:
        pgrp, tpgid = int(found[1][2]), int(found[1][5])
    except (IndexError, ValueError):
        return None, None, found[0]
    if tpgid <= 0 or tpgid == pgrp:
        return None, None, found[0]
    leader = agent.proc_stat(tpgid)
    try:
        return tpgid, int(leader[1][19]) if leader else None, leader[0] if leader else ""
    except (IndexError, ValueError):
        return tpgid, None, leader[0] if leader else ""


class Snapshot(NamedTuple):
    """Every pane on the server: session -> window -> its (first) pane, and session ->
    the folders all its panes are in."""

    sessions: dict[str, dict[str, Pane]]
    paths: dict[str, set[str]]

    def get(self, session: str) -> dict[str, Pane]:
        return self.sessions.get(session, {})


def snapshot(srv: tmux.TmuxServer) -> Snapshot:
    """What runs in every pane of the server, in one tmux call."""
    return snapshot_begun(srv)()


def snapshot_begun(srv: tmux.TmuxServer) -> Callable[[], Snapshot]:
    """`snapshot`, its tmux call started now and read when the returned function is
    first called (it gives that snapshot again after): tmux answers while the caller
    works."""
    boot = _boot_time()
    answer = tmux.begun(srv, "list-panes", "-a", "-F", _FORMAT if boot is None else _FORMAT_PROC)
    made: list[Snapshot] = []

    def snapshot() -> Snapshot:  # the one answer, made once however often it is asked
        if not made:
            made.append(_snapshot(answer, boot))
        return made[0]

    return snapshot


def _snapshot(answer: Callable[[], tuple[list[str], list[str]]], boot: float | None) -> Snapshot:
    out, err = answer()
    if err and not tmux._no_server(err):
        raise TallyError("tmux list-panes failed: " + " ".join(err))
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    result: dict[str, dict[str, Pane]] = {}
    paths: dict[str, set[str]] = {}
    for line in out:
        fields = line.split("\t")
        if len(fields) != 8:
            continue
        session, window, pid, command, dead, status, path, pane_id = fields
        paths.setdefault(session, set()).add(path)
        if window in result.get(session, {}):
            continue
        # the shell's /proc stat, read once: what runs in it, and when it started
        stat = agent.proc_stat(int(pid or 0)) if dead != "1" or boot is not None else None
        if dead == "1":
            program, start = None, None
        else:
            program, start, command = foreground(stat, command)
        started = boot + start / tick if boot is not None and start is not None else None
        shell = stat if boot is not None else None
        try:
            shell_started = boot + int(shell[1][19]) / tick if boot and shell else None
        except (IndexError, ValueError):
            shell_started = None
        result.setdefault(session, {})[window] = Pane(
            session=session,
            window=window,
            pid=int(pid or 0),
            command=command,
            dead=dead == "1",
            dead_status=int(status) if status.lstrip("-").isdigit() else None,
            path=path,
            id=pane_id,
            program=program,
            started=started,
            shell_started=shell_started,
        )
    return Snapshot(result, paths)


def last_lines(srv: tmux.TmuxServer, pane: str, count: int = 5) -> list[str]:
    """The pane's last `count` non-blank lines, as the user would see them on attaching."""
    out, err = tmux._cmd(srv, "capture-pane", "-p", "-J", "-t", pane, "-S", "-200")
    if err:
        return []
    lines = [ln.rstrip() for ln in out]
    return [ln for ln in lines if ln.strip()][-count:]


def agent_window(windows: Iterable[Window]) -> str | None:
    """The window that runs the session's agent (the first that starts one)."""
    for win in windows:
        if programs(win.cmd + " ; " + win.resume_cmd).intersection(AGENTS):
            return win.name
    return None


def agent_or_last(windows: Sequence[Window]) -> str | None:
    """The agent's window (`agent_window`), else the last one: where a line for the agent
    goes, and what the dashboard previews."""
    return agent_window(windows) or (windows[-1].name if windows else None)


def agent_status(state: agent.State | None, pane: Pane | None) -> tuple[str, float | None]:
    """What an agent's window shows: (state, since). The recorded state is believed only
    while the program that recorded it still runs in the pane; otherwise the pane says
    ``exited`` (nothing runs) or ``running`` (a program runs that has not reported: an
    agent without hooks, or one started after the state was written)."""
    if pane is None or not pane.running:
        since = state.get("at") if state and state.get("state") == "exited" else None
        return "exited", since
    if state is None or state.get("state") == "exited":
        return "running", pane.started
    pid, pid_start = state.get("pid"), state.get("pid_start")
    known_start = pid_start if isinstance(pid_start, int) else None
    if isinstance(pid, int) and not agent.alive(pid, known_start):
        return "running", pane.started  # the Claude that wrote it is gone
    at = state.get("at")
    if pane.started is not None and isinstance(at, (int, float)) and at < pane.started - 1:
        return "running", pane.started  # written before the pane's program started
    since = state.get("since")
    return str(state["state"]), float(since) if isinstance(since, (int, float)) else None


def age(since: float | None, now: float | None = None) -> str:
    """``3m``: how long a state has held (for ``waiting 3m``)."""
    if since is None:
        return ""
    secs = max(0.0, (time.time() if now is None else now) - since)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if secs >= size:
            return f"{int(secs // size)}{unit}"
    return f"{int(secs)}s"
