"""tmux sessions: created in one chained tmux call, always targeted exactly (``=name``).

Each window's line is typed in a second call, once the window's shell reads it with its
line editor (`_type_when_ready`): typed at once, it would show twice.

``-t name`` matches by prefix (``tally-a`` would hit ``tally-ab``), so every target here
is ``=name``. Windows are targeted as ``=session:=window`` for the same reason, and a
session where a window is expected (``list-panes -s``) as ``=name:``: tmux takes a bare
``=name`` there that names no session as a window, then a session by prefix.

tmux expands formats (``#(cmd)`` runs a command, ``#S`` is the session's name) in some
arguments: `literal` escapes every such string. Measured on tmux 3.3a: new-session's
``-s``, new-session's and new-window's ``-n`` and ``-c``, and respawn-pane's ``-c`` are
expanded; targets (``-t``), ``-e`` values, ``send-keys -l`` and ``set-environment`` values
are taken as given, so they are passed as they are (``##`` there would stay two
characters).

Every function takes a server with libtmux's ``cmd(*args)`` shape: a ``libtmux.Server``
(tests use one), or the `Server` here, which runs the same tmux commands without
importing libtmux (78 ms of every command's start-up, for calls that are raw tmux
command sequences anyway).
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import subprocess
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from .errors import TallyError


class TmuxServer(Protocol):
    socket_name: str | None

    def cmd(self, cmd: str, *args: Any) -> Any: ...


class _Result(NamedTuple):
    """What a tmux call gave back: its output lines and exit status."""

    stdout: list[str]
    stderr: list[str]
    returncode: int


class Server:
    """A tmux server (``tmux -L socket_name``, or the default one), libtmux-compatible ``cmd``."""

    def __init__(self, socket_name: str | None = None) -> None:
        self.socket_name = socket_name or None

    def cmd(self, cmd: str, *args: Any) -> _Result:
        return self.begin(cmd, *args)()

    def begin(self, cmd: str, *args: Any) -> Callable[[], _Result]:
        """`cmd`, started now and read when the returned function is called: tmux answers
        while the caller works (a read-only call: one not read runs to its end alone).
        Ctrl-C while it is read ends it, as ``subprocess.run`` ends its own."""
        # -u: in a C locale tmux would turn the tabs of our -F formats into "_"; always a
        # socket: without one, tmux run inside another server's pane ($TMUX) talks to that
        # server, where the sessions are not
        argv = ["tmux", "-u", f"-L{self.socket_name or 'default'}", cmd, *(str(a) for a in args)]
        try:
            proc = subprocess.Popen(
                argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace"
            )
        except FileNotFoundError:
            raise _NotFound() from None

        def result() -> _Result:
            try:
                out, err = proc.communicate()
            except BaseException:
                proc.kill()
                proc.wait()
                raise
            lines = [ln for ln in err.splitlines() if ln]
            if proc.returncode != 0 and not lines:
                lines = [f"tmux exited with status {proc.returncode}"]
            return _Result(out.splitlines(), lines, proc.returncode)

        return result

    def is_alive(self) -> bool:
        return self.cmd("list-sessions").returncode == 0

    def kill(self) -> None:
        self.cmd("kill-server")


class _NotFound(Exception):
    pass


class WindowRun(NamedTuple):
    """A window to start: its name, folder and the line typed into it."""

    name: str
    dir: Path
    keys: str  # the shell line typed into the window ("" = an idle shell)


def literal(text: str) -> str:
    """`text` for an argument tmux expands as a format (``-s``, ``-n``, ``-c``): ``#``
    doubled, so a folder named ``x#(touch y)`` or ``team#Sharp`` is that folder."""
    return text.replace("#", "##")


def server(socket_name: str = "") -> Server:
    return Server(socket_name or None)


def _cmd(srv: TmuxServer, *args: str) -> tuple[list[str], list[str]]:
    return begun(srv, *args)()


def begun(srv: TmuxServer, *args: str) -> Callable[[], tuple[list[str], list[str]]]:
    """A tmux call's (stdout, stderr) lines, the call started now where the server is
    ours (`Server.begin`) and read when the returned function is called; another server
    (libtmux's) is asked then. A tmux not installed is one plain error, either way."""
    begin = getattr(srv, "begin", None)
    with _said_if_missing():
        result = begin(*args) if begin is not None else lambda: srv.cmd(*args)

    def answer() -> tuple[list[str], list[str]]:
        with _said_if_missing():
            proc = result()
        return proc.stdout, proc.stderr

    return answer


@contextlib.contextmanager
def _said_if_missing() -> Iterator[None]:
    try:
        yield
    except Exception as e:  # libtmux raises its own TmuxCommandNotFound
        if not isinstance(e, _NotFound) and type(e).__name__ != "TmuxCommandNotFound":
            raise
        raise TallyError(
            "tmux is not installed or not on PATH; install it (apt-get install tmux, "
            "brew install tmux) and run the command again"
        ) from None


def _no_server(stderr: list[str]) -> bool:
    text = " ".join(stderr)
    return (
        "no server running" in text
        or "error connecting" in text
        or ("No such file or directory" in text)
        or "server exited unexpectedly" in text  # it was being killed as we asked
        or "no current target" in text  # its last session just ended: the server is exiting
    )


def running(srv: TmuxServer) -> set[str]:
    """Names of every session on the server, in one tmux call."""
    out, err = _cmd(srv, "list-sessions", "-F", "#{session_name}")
    if err and not _no_server(err):
        raise TallyError("tmux list-sessions failed: " + " ".join(err))
    return set(out)


def pane_paths(srv: TmuxServer) -> dict[str, set[str]]:
    """Session name -> the folders its panes are in, for every session, in one call."""
    out, err = _cmd(srv, "list-panes", "-a", "-F", "#{session_name}\t#{pane_current_path}")
    if err and not _no_server(err):
        raise TallyError("tmux list-panes failed: " + " ".join(err))
    result: dict[str, set[str]] = {}
    for line in out:
        name, _, path = line.partition("\t")
        result.setdefault(name, set()).add(path)
    return result


MIN_VERSION = (3, 2)  # new-session/new-window -e (the TALLY_* variables)


def version() -> tuple[int, int] | None:
    """tmux's version as (major, minor), None when unknown (``tmux next-3.4``, no tmux)."""
    try:
        out = subprocess.run(["tmux", "-V"], capture_output=True, text=True).stdout
    except OSError:
        return None
    m = re.search(r"(\d+)\.(\d+)", out)
    return (int(m.group(1)), int(m.group(2))) if m else None


def _too_old(message: str) -> str:
    if "unknown flag" not in message and "usage:" not in message:
        return ""
    have = version()
    if have is None or have >= MIN_VERSION:
        return ""
    return f" (this is tmux {have[0]}.{have[1]}; tally-tasks needs tmux 3.2 or newer)"


def current_session(srv: TmuxServer) -> str | None:
    """The session this process runs inside, when that is on `srv`'s server."""
    pane, inside = os.environ.get("TMUX_PANE"), os.environ.get("TMUX", "").split(",")[0]
    if not pane or not inside:
        return None
    out, err = _cmd(srv, "display-message", "-p", "-t", pane, "#{socket_path}\t#{session_name}")
    if err or not out:
        return None
    socket_path, _, name = out[0].partition("\t")
    same = os.path.realpath(socket_path) == os.path.realpath(inside)
    return name if same else None


def _list_panes(name: str) -> list[str]:
    # `=name:`: with no colon, tmux takes an absent session's name as a prefix (=tally-x
    # listed tally-xy's panes)
    return ["list-panes", "-s", "-t", f"={name}:", "-F", "#{window_name}\t#{pane_current_path}"]


def windows(srv: TmuxServer, name: str) -> dict[str, str] | None:
    """Window name -> the folder its pane works in, for session `name`, in one call; None
    when there is no such session."""
    out, err = _cmd(srv, *_list_panes(name))
    return None if err else _windows(out)


def _windows(lines: Sequence[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for line in lines:
        window, _, path = line.partition("\t")
        found.setdefault(window, path)
    return found


def in_deleted_folders(panes: dict[str, str]) -> list[str]:
    """The windows of `windows()` working in a folder since deleted (Linux shows it as
    "<path> (deleted)"): a worktree removed and made again under them."""
    return [w for w, path in panes.items() if path.endswith(" (deleted)")]


def windows_in_deleted_folders(srv: TmuxServer, name: str) -> list[str]:
    return in_deleted_folders(windows(srv, name) or {})


def kill_windows(srv: TmuxServer, name: str, windows: Sequence[str]) -> None:
    args: list[str] = []
    for window in windows:
        args += [*([";"] if args else []), "kill-window", "-t", f"={name}:={window}"]
    if args:
        _cmd(srv, *args)


_DEFAULT_SHELL = ("show-options", "-gv", "default-shell")


def default_shell(srv: TmuxServer) -> str | None:
    """The shell a running server starts in a new window: its default-shell (your $SHELL
    unless tmux.conf sets another); None when no server runs. (Starting one just to ask
    races with its exit: the next new-session then fails 1 time in 20.)"""
    out, err = _cmd(srv, *_DEFAULT_SHELL)
    return out[-1] if out and not err else None


def shell_and_windows(srv: TmuxServer, name: str) -> tuple[str | None, dict[str, str] | None]:
    """`default_shell` and `windows(name)`, in one tmux call (add asks both first)."""
    out, err = _cmd(srv, *_DEFAULT_SHELL, ";", *_list_panes(name))
    if not out:  # no server (or show-options failed, and tmux stopped there)
        return None, (None if not err or _no_server(err) else windows(srv, name))
    # the shell's line, then list-panes': none, and its error, when there is no session
    return out[0], (None if err else _windows(out[1:]))


def exists(srv: TmuxServer, name: str) -> bool:
    _, err = _cmd(srv, "has-session", "-t", f"={name}")
    return not err


def window_names(srv: TmuxServer, name: str) -> list[str]:
    out, err = _cmd(srv, "list-windows", "-t", f"={name}", "-F", "#{window_name}")
    return [] if err else out


def _typed(keys: str) -> str:
    # tmux takes an argument ending in ";" as a command separator; a trailing space
    # keeps the shell line the same.
    return keys + " " if keys.endswith(";") else keys


def _create_args(name: str, windows: Sequence[WindowRun], env: Mapping[str, str]) -> list[str]:
    """Make the session and its windows, each printing its pane (`_PANE`); nothing typed."""
    if not windows:
        raise TallyError("tally.windows is empty; configure at least one window")
    args: list[str] = []
    for i, win in enumerate(windows):
        if i == 0:
            args += ["new-session", "-d", "-s", literal(name), *_window_args(win), *_env(env)]
        else:
            args += [";", "new-window", "-d", "-t", f"={name}:", *_window_args(win)]
        args += ["-P", "-F", _PANE]
    return args


def _env(env: Mapping[str, str]) -> list[str]:
    return [arg for key, value in env.items() for arg in ("-e", f"{key}={value}")]


def _window_args(win: WindowRun) -> list[str]:
    return ["-n", literal(win.name), "-c", literal(str(win.dir))]


def _send(target: str, keys: str) -> list[str]:
    """Type `keys` and Enter into pane `target` (targets and ``send-keys -l`` are not
    expanded: passed as they are)."""
    return [
        *["send-keys", "-t", target, "-l", "--", _typed(keys)],
        *[";", "send-keys", "-t", target, "Enter"],
    ]


# A pane made by new-session/new-window -P -F: its id, its terminal, the shell it runs.
_PANE = "#{pane_id}\t#{pane_tty}\t#{default-shell}"

# Shells whose line editor (readline, zle, fish's reader) switches the terminal out of
# canonical mode when it starts reading: a line typed before then is echoed twice, by the
# terminal and again by the editor after the prompt. Others (dash) read in canonical mode.
_EDITORS = frozenset({"bash", "rbash", "zsh", "fish"})

# Seconds a fresh shell may take (its rc files) before its line is typed anyway.
TYPE_WAIT = 5.0


class _Fresh(NamedTuple):
    """A pane whose shell has just started, and the line it is to run."""

    pane: str  # %N
    tty: str
    shell: str
    keys: str


def _fresh(printed: Sequence[str], windows: Sequence[WindowRun]) -> list[_Fresh]:
    """The panes `_PANE` printed, in the order their windows were made; those with a line."""
    found = []
    for line, win in zip(printed, windows, strict=False):
        pane, tty, shell = (line.split("\t") + ["", ""])[:3]
        if win.keys and pane.startswith("%"):
            found.append(_Fresh(pane, tty, shell, win.keys))
    return found


def _edits(shell: str) -> bool:
    """A shell with a line editor, by its name or the name its path resolves to
    (``/bin/sh`` is dash on Debian, bash on Fedora)."""
    names = {shell, os.path.realpath(shell)} if os.path.isabs(shell) else {shell}
    return any(os.path.basename(n).lstrip("-") in _EDITORS for n in names)


def _open_tty(path: str) -> int | None:
    try:
        return os.open(path, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
    except OSError:
        return None


def _editing(fd: int | None) -> bool:
    """The shell's line editor reads the terminal (it is out of canonical mode), or the
    terminal is gone (typing then finds out); None: a shell without one, or a terminal
    that could not be opened."""
    import termios

    if fd is None:
        return True
    try:
        return not termios.tcgetattr(fd)[3] & termios.ICANON
    except (OSError, termios.error):
        return True


def _type_when_ready(srv: TmuxServer, fresh: Sequence[_Fresh]) -> None:
    """Type each line into its pane once the pane's shell reads it with its line editor
    (its terminal out of canonical mode), so the line shows once; after `TYPE_WAIT`
    seconds (a slow rc file) typed anyway. All panes are watched together, in rounds
    of a ms (5 ms after the first 100 ms): the wait is the slowest shell's start, not
    the sum; the lines of the panes ready in a round are typed in one tmux call. A shell
    without a line editor gets its line at once (the terminal's echo is then the only
    one). Ctrl-C while waiting types the lines left at once, then goes on: no line is
    lost (a resumed session runs its programs; an add's undo ends its session anyway),
    none typed twice."""
    import time

    from .interrupts import held

    began = time.monotonic()
    deadline = began + TYPE_WAIT
    left = {f.pane: f for f in fresh}
    ttys: dict[str, int | None] = {}
    try:
        for f in fresh:
            ttys[f.pane] = _open_tty(f.tty) if _edits(f.shell) else None
        while left:
            late = time.monotonic() >= deadline
            ready = [f for f in left.values() if late or _editing(ttys[f.pane])]
            if ready:
                with held():  # typed and struck off together
                    _type_all(srv, ready)
                    for f in ready:
                        del left[f.pane]
            if left:  # a shell without rc files reads within ms; one with a slow rc, later
                time.sleep(0.001 if time.monotonic() - began < 0.1 else 0.005)
    except KeyboardInterrupt:
        with held(deliver=False), contextlib.suppress(TallyError):
            _type_all(srv, list(left.values()))
        raise
    finally:
        for fd in ttys.values():
            if fd is not None:
                os.close(fd)


def _type_all(srv: TmuxServer, fresh: Sequence[_Fresh]) -> None:
    """Type each line, in one tmux call. A pane gone meanwhile (its shell ended at
    start-up) is skipped: tmux stops a sequence at its first error, so the panes after it
    are typed in another call."""
    rest = list(fresh)
    while rest:
        args: list[str] = []
        for f in rest:
            args += [*([";"] if args else []), *_send(f.pane, f.keys)]
        _, err = _cmd(srv, *args)
        gone = [i for i, f in enumerate(rest) if f"can't find pane: {f.pane}" in err]
        if err and not gone:
            raise TallyError(f"tmux could not type into {rest[0].pane}: {' '.join(err)}")
        rest = rest[gone[0] + 1 :] if gone else []


def create(
    srv: TmuxServer,
    name: str,
    windows: Sequence[WindowRun],
    env: Mapping[str, str],
) -> None:
    """Start detached session `name` with `windows`, typing each window's line into its
    shell once that reads (`_type_when_ready`)."""
    out, err = _cmd(srv, *_create_args(name, windows, env))
    if err:
        message = " ".join(err)
        if "duplicate session" in message:
            raise TallyError(f"tmux session {name} already exists")
        kill(srv, name)  # leave nothing half-made
        raise TallyError(f"tmux could not start session {name}: {message}{_too_old(message)}")
    try:
        _type_when_ready(srv, _fresh(out, windows))
    except TallyError:
        kill(srv, name)
        raise


def create_many(
    srv: TmuxServer, sessions: Sequence[tuple[str, Sequence[WindowRun], Mapping[str, str]]]
) -> list[str]:
    """Start several sessions in one tmux call, then type every window's line
    (`_type_when_ready`, all shells watched together); returns the names that failed.

    A tmux command sequence stops at its first error, so on any error the sessions not
    yet running are started one by one and the ones that still fail are returned.
    """
    args: list[str] = []
    for name, windows, env in sessions:
        if args:
            args.append(";")
        args += _create_args(name, windows, env)
    if not args:
        return []
    out, err = _cmd(srv, *args)
    made = [(name, win) for name, windows, _ in sessions for win in windows]
    if not err:
        _type_when_ready(srv, _fresh(out, [win for _, win in made]))
        return []
    live = running(srv)
    failed = []
    whole = set()
    for name, windows, env in sessions:
        if name in live and len(window_names(srv, name)) == len(windows):
            whole.add(name)
            continue
        kill(srv, name)
        try:
            create(srv, name, windows, env)
        except TallyError:
            failed.append(name)
    # the windows printed before the error, of the sessions left running
    kept = [(line, win) for line, (name, win) in zip(out, made, strict=False) if name in whole]
    _type_when_ready(srv, _fresh([line for line, _ in kept], [win for _, win in kept]))
    return failed


def add_windows(
    srv: TmuxServer, name: str, windows: Sequence[WindowRun], env: Mapping[str, str]
) -> None:
    """Add missing windows to a running session (a window the user closed, say), typing
    each line once its shell reads."""
    args: list[str] = []
    for win in windows:
        if args:
            args.append(";")
        args += ["new-window", "-d", "-t", f"={name}:", *_window_args(win), *_env(env)]
        args += ["-P", "-F", _PANE]
    out, err = _cmd(srv, *args)
    if err:
        message = " ".join(err)
        raise TallyError(f"tmux could not add windows to {name}: {message}{_too_old(message)}")
    _type_when_ready(srv, _fresh(out, windows))


def type_line(srv: TmuxServer, target: str, keys: str) -> None:
    """Type `keys` and Enter into the shell of pane `target` (a window's line, again)."""
    _, err = _cmd(srv, *_send(target, keys))
    if err:
        raise TallyError(f"tmux could not type into {target}: {' '.join(err)}")


def respawn(
    srv: TmuxServer, target: str, folder: Path, env: Mapping[str, str], keys: str = ""
) -> None:
    """Start a fresh shell in dead pane `target` (``respawn-pane -k``: tmux hangs the old
    one up; the jobs it forwards SIGHUP to end, a process ignoring it does not), and type
    `keys` into it once it reads (`_type_when_ready`)."""
    args = ["respawn-pane", "-k", "-t", target, "-c", literal(str(folder)), *_env(env)]
    out, err = _cmd(srv, *args, ";", "display-message", "-p", "-t", target, _PANE)
    if err:
        raise TallyError(f"tmux could not respawn {target}: {' '.join(err)}")
    _type_when_ready(srv, _fresh(out, [WindowRun("", folder, keys)]))


def kill(srv: TmuxServer, name: str) -> bool:
    """Kill session `name`; False when there was none."""
    _, err = _cmd(srv, "kill-session", "-t", f"={name}")
    return not err


def attach_argv(socket_name: str, name: str) -> tuple[list[str], bool]:
    """(the tmux command that takes this terminal to session `name`, whether it is a
    `switch-client`: this process runs inside that server and keeps running)."""
    sock = ["-L", socket_name] if socket_name else []
    inside = os.environ.get("TMUX", "").split(",")[0]
    if inside and os.path.realpath(inside) == os.path.realpath(socket_path(socket_name)):
        return ["tmux", *sock, "switch-client", "-t", f"={name}"], True
    return ["tmux", *sock, "attach", "-t", f"={name}"], False


def outside_env() -> dict[str, str]:
    """The environment for a tmux client nested in another server's pane (no TMUX)."""
    return {k: v for k, v in os.environ.items() if k != "TMUX"}


def attach(socket_name: str, name: str) -> None:
    """Become `tmux attach` (or `switch-client` inside tmux); does not return on success."""
    import shutil

    if shutil.which("tmux") is None:
        raise TallyError("tmux is not installed or not on PATH; install it first")
    args, switch = attach_argv(socket_name, name)
    if switch:
        proc = subprocess.run(args, capture_output=True, text=True)
        if proc.returncode != 0:
            raise TallyError(f"tmux switch-client failed: {proc.stderr.strip()}")
        return
    if not os.isatty(0):
        raise TallyError(f"not a terminal; run: {shlex.join(args)}")
    # inside another tmux server's pane (tmux_socket set): a client nested in this pane
    os.execvpe("tmux", args, outside_env())


def capture(srv: TmuxServer, name: str, window: str, colours: bool = True) -> list[str] | None:
    """The visible screen of a window's pane (with its colours as escape sequences), one
    tmux call; None when there is no such window."""
    flags = ["-p", "-e"] if colours else ["-p"]
    out, err = _cmd(srv, "capture-pane", *flags, "-t", f"={name}:={window}")
    return None if err else out


def socket_path(socket_name: str) -> str:
    """Where tmux puts the socket of ``tmux -L socket_name`` (its own rule)."""
    folder = os.environ.get("TMUX_TMPDIR") or "/tmp"
    return os.path.join(folder, f"tmux-{os.getuid()}", socket_name or "default")
