"""The live side of the operations: preflight before a session is made, readiness after its
windows start, restarting windows, and going to the agent that waits longest."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from .. import output, sessions, tmux
from .. import ports as ports_
from .. import shell as shell_
from ..errors import TallyError
from ..session import Project, Session, render
from ..steps.tmux import attach_line, wait_for, window_runs, window_shell

if TYPE_CHECKING:  # imported where windows are waited for (`add --no-wait` waits for
    # none), a preflight runs (not with --quiet), panes are read or restarted
    from .. import preflight as preflight_
    from .. import readiness


@contextlib.contextmanager
def _preflight_started(
    project: Project, session: Session, srv: tmux.TmuxServer | None = None, shell: str = ""
) -> Iterator[preflight_.Running]:
    """The preflight's login shell, started (`preflight_.started`): the windows' shell
    (`shell` when known, else tmux's default-shell on `srv`, else $SHELL)."""
    from .. import preflight as preflight_

    s = project.settings
    shell = shell or (window_shell(srv) if srv is not None else shell_.login_shell())
    kind = shell_.kind(shell)
    activate = render(s.activate, session.values(project), shell_.quoter(kind)).strip()
    cwd = session.worktree if session.worktree.is_dir() else project.main
    with preflight_.started(shell, activate, s.windows, cwd, session.env()) as running:
        yield running


def _split(running: preflight_.Running) -> tuple[list[str], list[str]]:
    from .. import preflight as preflight_

    return preflight_.split(running.finding(), running.shell, running.activate)


def preflight_split(
    project: Project, session: Session, srv: tmux.TmuxServer | None = None, shell: str = ""
) -> tuple[list[str], list[str]]:
    """What the windows' shell (as `_preflight_started` picks it) says, as (the activation
    fails, programs some windows lack)."""
    with _preflight_started(project, session, srv, shell) as running:
        return _split(running)


@contextlib.contextmanager
def preflight(project: Project, session: Session, shell: str) -> Iterator[Callable[[], None]]:
    """The preflight, its login shell started at once to run while the caller checks other
    things; the function given waits for it and says its warnings (the first time it is
    called: `add` calls it before its first line, or its error). A shell still running at
    the end (Ctrl-C, an error) is ended. With --quiet, which would show none of its
    warnings, no shell is started."""
    if output.is_quiet():
        yield lambda: None
        return
    with _preflight_started(project, session, shell=shell) as running:
        said = False

        def say() -> None:
            nonlocal said
            if said:
                return
            said = True
            broken, missing = _split(running)
            for line in broken + missing:
                output.warn("preflight", line)

        yield say


def ready(
    project: Project, session: Session, srv: tmux.TmuxServer, windows: list[str] | None = None
) -> list[readiness.Ready]:
    """Wait for the session's windows (or those named) and print a line for each."""
    return wait_for(project, session, srv, windows)


def ready_many(
    project: Project, todo: list[Session], srv: tmux.TmuxServer
) -> dict[str, list[readiness.Ready]]:
    """`ready` for several sessions at once (their windows started together): the waits
    overlap; the lines come out session by session."""
    from concurrent.futures import ThreadPoolExecutor  # here: only resume starts many

    from .. import readiness

    if not todo:
        return {}
    windows = list(project.settings.windows)
    timeout = project.settings.ready_timeout
    with ThreadPoolExecutor(max_workers=min(8, len(todo))) as pool:
        found = list(pool.map(lambda s: readiness.check(s, windows, srv, timeout), todo))
    for session, results in zip(todo, found, strict=True):
        if not all(r.ok for r in results):
            output.info(f"{session.name}:")
        readiness.report(results, session, attach_line(project, session))
    return {s.name: r for s, r in zip(todo, found, strict=True)}


def problems(results: list[readiness.Ready]) -> str:
    return ", ".join(f"{r.window} {r.state}" for r in results if not r.ok)


def wait(
    project: Project, session: Session, srv: tmux.TmuxServer, windows: list[str] | None = None
) -> None:
    """`ready`; the windows that did not come up are the error (with how to look)."""
    found = problems(ready(project, session, srv, windows))
    if found:
        raise TallyError(
            f"session {session.name}: {found}; look at it with: " + attach_line(project, session)
        )


def _known_window(project: Project, session: Session, window: str | None) -> None:
    """A clear error when `window` (None: any) is not one of the session's windows."""
    names = [w.name for w in project.settings.windows]
    if window is not None and window not in names:
        raise TallyError(
            f"session {session.name} has no window {window!r} (it has: {', '.join(names)})"
        )


def restart_windows(
    project: Project,
    session: Session,
    srv: tmux.TmuxServer,
    window: str | None = None,
    live: bool = True,
) -> list[str]:
    """Restart the session's windows (or one) with their resume commands; `live`: a
    program that runs is stopped and started again too. Returns the windows restarted."""
    if not session.worktree.is_dir():
        raise TallyError(
            f"worktree {session.worktree} is missing; make it again with: "
            + output.command("worktree", session.name)
        )
    _known_window(project, session, window)
    if session.tmux_name not in tmux.running(srv):
        raise TallyError(
            f"tmux session {session.tmux_name} is not running; start it with: "
            + output.command("tmux", session.name)
        )
    from .. import readiness, restart

    wanted = readiness.window_ports(project.settings.windows, session.ports)
    done = []
    for run in window_runs(project, session, resume=True, shell=window_shell(srv)):
        if window is not None and run.name != window:
            continue
        what = restart.restart(srv, session, run, wanted[run.name], live=live)
        if what == "running":
            output.step(run.name, "running, left alone")
        else:
            output.step(run.name, what)
            done.append(run.name)
    return done


def send(
    project: Project, session: Session, srv: tmux.TmuxServer, text: str, window: str | None = None
) -> str:
    """Type `text` and Enter into the session's agent window (or `window`), as a user types
    it there (a prompt, or "yes" to a permission question). Returns the window."""
    from .. import panes

    _known_window(project, session, window)
    target = window or panes.agent_or_last(project.settings.windows)
    if target is None:
        raise TallyError("tally.windows is empty; configure at least one window")
    if not tmux.exists(srv, session.tmux_name):
        raise TallyError(
            f"session {session.name} is not running; start it with: "
            + output.command("resume", session.name)
        )
    tmux.type_line(srv, f"={session.tmux_name}:={target}", text)
    return target


def next_waiting(project: Project, srv: tmux.TmuxServer) -> Session | None:
    """The session whose agent has waited longest, or None."""
    from .. import live as live_
    from .. import panes

    known = {n: project.session(n, e) for n, e in sessions.load(project).items()}
    numbers = [p for s in known.values() for p in s.ports.values()]
    up = ports_.listening(numbers)
    states = live_.gather(project, known, panes.snapshot(srv), up, ports_.holders(up) if up else {})
    name = live_.longest_waiting(states)
    return known[name] if name else None


def at_agent(project: Project, srv: tmux.TmuxServer, tmux_name: str) -> None:
    """Make the agent's window the one a client switching to the session sees."""
    from .. import panes

    window = panes.agent_window(project.settings.windows)
    if window:
        srv.cmd("select-window", "-t", f"={tmux_name}:={window}")


def go(project: Project, session: Session) -> None:
    """Switch the client to (or attach) the session, at its agent's window."""
    sock = project.settings.tmux_socket
    at_agent(project, tmux.server(sock), session.tmux_name)
    tmux.attach(sock, session.tmux_name)
