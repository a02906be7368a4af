"""tmux sessions: created in one chained tmux call, always targeted exactly (``=name``).

``-t name`` matches by prefix (``tally-a`` would hit ``tally-ab``), so every target here
is ``=name``. Windows are targeted as ``=session:=window`` for the same reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import libtmux
from libtmux import exc as tmux_exc

from .errors import TallyError


@dataclass(frozen=True)
class WindowRun:
    name: str
    dir: Path
    keys: str  # the shell line typed into the window ("" = an idle shell)


def server(socket_name: str = "") -> libtmux.Server:
    return libtmux.Server(socket_name=socket_name or None)


def _cmd(srv: libtmux.Server, *args: str) -> tuple[list[str], list[str]]:
    try:
        proc = srv.cmd(*args)
    except tmux_exc.TmuxCommandNotFound:
        raise TallyError(
            "tmux is not installed or not on PATH; install it (apt-get install tmux, "
            "brew install tmux) and run the command again"
        ) from None
    return proc.stdout, proc.stderr


def _no_server(stderr: list[str]) -> bool:
    text = " ".join(stderr)
    return (
        "no server running" in text
        or "error connecting" in text
        or ("No such file or directory" in text)
    )


def running(srv: libtmux.Server) -> set[str]:
    """Names of every session on the server, in one tmux call."""
    out, err = _cmd(srv, "list-sessions", "-F", "#{session_name}")
    if err and not _no_server(err):
        raise TallyError("tmux list-sessions failed: " + " ".join(err))
    return set(out)


def pane_paths(srv: libtmux.Server) -> dict[str, set[str]]:
    """Session name -> the folders its panes are in, for every session, in one call."""
    out, err = _cmd(srv, "list-panes", "-a", "-F", "#{session_name}\t#{pane_current_path}")
    if err and not _no_server(err):
        raise TallyError("tmux list-panes failed: " + " ".join(err))
    result: dict[str, set[str]] = {}
    for line in out:
        name, _, path = line.partition("\t")
        result.setdefault(name, set()).add(path)
    return result


def exists(srv: libtmux.Server, name: str) -> bool:
    _, err = _cmd(srv, "has-session", "-t", f"={name}")
    return not err


def window_names(srv: libtmux.Server, name: str) -> list[str]:
    out, err = _cmd(srv, "list-windows", "-t", f"={name}", "-F", "#{window_name}")
    return [] if err else out


def _typed(keys: str) -> str:
    # tmux takes an argument ending in ";" as a command separator; a trailing space
    # keeps the shell line the same.
    return keys + " " if keys.endswith(";") else keys


def create(
    srv: libtmux.Server,
    name: str,
    windows: Sequence[WindowRun],
    env: Mapping[str, str],
) -> None:
    """Start detached session `name` with `windows`, typing each window's line into its shell."""
    if not windows:
        raise TallyError("tally.windows is empty; configure at least one window")
    env_args: list[str] = []
    for key, value in env.items():
        env_args += ["-e", f"{key}={value}"]
    args: list[str] = []
    for i, win in enumerate(windows):
        if i == 0:
            args += ["new-session", "-d", "-s", name, "-n", win.name, "-c", str(win.dir), *env_args]
        else:
            args += [";", "new-window", "-d", "-t", f"={name}:", "-n", win.name, "-c", str(win.dir)]
        if win.keys:
            target = f"={name}:={win.name}"
            args += [";", "send-keys", "-t", target, "-l", "--", _typed(win.keys)]
            args += [";", "send-keys", "-t", target, "Enter"]
    _, err = _cmd(srv, *args)
    if err:
        message = " ".join(err)
        if "duplicate session" in message:
            raise TallyError(f"tmux session {name} already exists")
        kill(srv, name)  # leave nothing half-made
        raise TallyError(f"tmux could not start session {name}: {message}")


def add_windows(
    srv: libtmux.Server, name: str, windows: Sequence[WindowRun], env: Mapping[str, str]
) -> None:
    """Add missing windows to a running session (a window the user closed, say)."""
    args: list[str] = []
    for win in windows:
        if args:
            args.append(";")
        args += ["new-window", "-d", "-t", f"={name}:", "-n", win.name, "-c", str(win.dir)]
        for key, value in env.items():
            args += ["-e", f"{key}={value}"]
        if win.keys:
            target = f"={name}:={win.name}"
            args += [";", "send-keys", "-t", target, "-l", "--", _typed(win.keys)]
            args += [";", "send-keys", "-t", target, "Enter"]
    _, err = _cmd(srv, *args)
    if err:
        raise TallyError(f"tmux could not add windows to {name}: " + " ".join(err))


def kill(srv: libtmux.Server, name: str) -> bool:
    """Kill session `name`; False when there was none."""
    _, err = _cmd(srv, "kill-session", "-t", f"={name}")
    return not err


def attach(socket_name: str, name: str) -> None:
    """Become `tmux attach` (or `switch-client` inside tmux); does not return on success."""
    if shutil.which("tmux") is None:
        raise TallyError("tmux is not installed or not on PATH; install it first")
    sock = ["-L", socket_name] if socket_name else []
    verb = ["switch-client", "-t"] if os.environ.get("TMUX") else ["attach-session", "-t"]
    args = ["tmux", *sock, *verb, f"={name}"]
    if os.environ.get("TMUX"):
        proc = subprocess.run(args, capture_output=True, text=True)
        if proc.returncode != 0:
            raise TallyError(f"tmux switch-client failed: {proc.stderr.strip()}")
        return
    if not os.isatty(0):
        raise TallyError(f"not a terminal; run: {' '.join(args)}")
    os.execvp("tmux", args)
