"""When an agent starts waiting for the user: say so, once, where the user will see it.

The state hook (agent.py) starts ``python -m tally_tasks.attention --session NAME`` in the
main checkout, detached, on the first record of a ``waiting`` (never again while it
holds). Unless a tmux client already shows the agent's window: a ``display-message`` in
each client of the server (``attention.message``), the bell in the agent's window
(``attention.bell``: tmux marks the window and its session), and the ``hooks.on_waiting``
commands, run as every hook is, with ``TALLY_AGENT_STATE``, ``TALLY_AGENT_REASON`` and
``TALLY_AGENT_MESSAGE`` set.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from . import agent, panes, registry, tmux
from .config import DEFAULTS, settings_from
from .errors import TallyError
from .repo import find_main
from .session import Project, Session

REASONS = {
    "done": "you: its turn is done",
    "error": "you: its turn failed",
    "permission": "a permission prompt",
    "question": "a question",
    "input": "your input",
}


def load_project(folder: Path) -> Project:
    """The project around `folder` with its settings, as `inv` would read them."""
    from invoke import Config

    main, common = find_main(folder)
    config = Config(defaults={**Config.global_defaults(), "tally": DEFAULTS}, project_location=main)
    config.load_project()
    config.load_shell_env()
    return Project(main, common, settings_from(config.get("tally")))


def looking(srv: tmux.TmuxServer, session: str, window: str) -> bool:
    """Does a client of the server show that window right now?"""
    out, err = tmux._cmd(srv, "list-clients", "-F", "#{session_name}\t#{window_name}")
    return not err and f"{session}\t{window}" in out


def clients(srv: tmux.TmuxServer) -> list[str]:
    out, err = tmux._cmd(srv, "list-clients", "-F", "#{client_name}")
    return [] if err else [c for c in out if c]


def ring(srv: tmux.TmuxServer, target: str) -> None:
    """The bell in the pane `target`: BEL written to its terminal, as its program would."""
    out, err = tmux._cmd(srv, "display-message", "-p", "-t", target, "#{pane_tty}")
    if err or not out or not out[0]:
        return
    try:
        fd = os.open(out[0], os.O_WRONLY | os.O_NOCTTY | os.O_NONBLOCK)
    except OSError:
        return
    try:
        os.write(fd, b"\a")
    except OSError:
        pass
    finally:
        os.close(fd)


def attend(
    project: Project, session: Session, srv: tmux.TmuxServer, state: agent.State
) -> list[str]:
    """Tell the user the agent of `session` waits; returns what was done (for tests)."""
    window = panes.agent_window(project.settings.windows)
    if window is None or state.get("state") != "waiting":
        return []
    if looking(srv, session.tmux_name, window):
        return []
    done = []
    reason = REASONS.get(str(state.get("reason")), "you")
    if project.settings.attention_message:
        text = f"tally: {session.name} is waiting for {reason}".replace("#", "##")
        for client in clients(srv):
            tmux._cmd(srv, "display-message", "-c", client, text)
            done.append(f"message {client}")
    if project.settings.attention_bell:
        ring(srv, f"={session.tmux_name}:={window}")
        done.append("bell")
    if project.settings.hooks.get("on_waiting"):
        from .hooks import run as run_hooks

        extra = {
            "TALLY_AGENT_STATE": "waiting",
            "TALLY_AGENT_REASON": str(state.get("reason", "")),
            "TALLY_AGENT_MESSAGE": str(state.get("message", "")),
        }
        try:
            run_hooks(project, session, "on_waiting", extra)
            done.append("on_waiting")
        except TallyError:
            done.append("on_waiting failed")
    return done


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "--session":
        return 2
    name = argv[1]
    try:
        project = load_project(Path.cwd())
        entries = registry.load(project.registry_path)
        if name not in entries:
            return 0
        session = project.session(name, entries[name])
        state = agent.read(agent.state_path(project.common_dir, session.slug))
        if state is None:
            return 0
        attend(project, session, tmux.server(project.settings.tmux_socket), state)
    except (TallyError, OSError):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
