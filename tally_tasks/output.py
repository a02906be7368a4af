"""All printing goes through here: step lines, warnings, errors, colour rules."""

from __future__ import annotations

import contextlib
import os
import shlex
import sys
from collections.abc import Iterator
from typing import TextIO

_state: dict[str, object] = {"quiet": False, "program": "inv"}
_sink: list[TextIO] = []  # while set, every line goes there (see `redirect`)

GREEN, YELLOW, RED, DIM, BOLD, RESET = (
    "\033[32m",
    "\033[33m",
    "\033[31m",
    "\033[2m",
    "\033[1m",
    "\033[0m",
)


def set_quiet(quiet: bool) -> None:
    _state["quiet"] = bool(quiet)


def is_quiet() -> bool:
    return bool(_state["quiet"])


def set_program(name: str) -> None:
    """Which command line the user typed (``inv`` or ``tally-session``), for hints."""
    _state["program"] = name


def program() -> str:
    return str(_state["program"])


# Taken out of the environment at once: tmux, the windows and hooks this run starts must
# not inherit it (their own commands are the host's, not the laptop's).
_VIA = os.environ.pop("TALLY_VIA", "")
# Set by a laptop at a terminal that runs this over SSH (no pty there): colour as it would.
_COLOR = os.environ.pop("TALLY_COLOR", "") == "1"


def via() -> tuple[str, str] | None:
    """(program, host) when this run was started over SSH by ``--host`` (TALLY_VIA)."""
    caller, _, host = _VIA.partition(" ")
    return (caller, host) if caller in ("inv", "tally-session") and host else None


def on_host(text: str) -> str:
    """A command to run on this machine, said so when the reader is on the laptop."""
    remote = via()
    return f"on {remote[1]}: {text}" if remote else text


def command(task: str, name: str | None = None, *flags: str) -> str:
    """A command to suggest, spelled for the program in use: ``inv session.remove --name x``.

    On a host reached with ``--host``, spelled for the laptop that asked."""
    prog = program()
    remote = via()
    if remote:
        prog, host = remote
        flags = (*flags, "--host", shlex.quote(host))
    quoted = [shlex.quote(name)] if name is not None else []
    if prog == "tally-session":
        return " ".join(["tally-session", task.replace("_", "-"), *quoted, *flags])
    named = ["--name", *quoted] if quoted else []
    return " ".join(["inv", f"session.{task.replace('_', '-')}", *named, *flags])


@contextlib.contextmanager
def redirect(stream: TextIO) -> Iterator[None]:
    """Send every line (steps, warnings, errors, data) to `stream` while inside: a
    full-screen view shows an operation's lines itself. Colour follows `stream.isatty()`."""
    _sink.append(stream)
    try:
        yield
    finally:
        _sink.remove(stream)


def _stdout() -> TextIO:
    return _sink[-1] if _sink else sys.stdout


def _stderr() -> TextIO:
    return _sink[-1] if _sink else sys.stderr


def use_color(stream: TextIO) -> bool:
    """Colour only on a terminal (the laptop's, for a ``--host`` run), never with NO_COLOR
    set or TERM=dumb."""
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    return _COLOR or bool(isatty and isatty())


def _paint(text: str, color: str, stream: TextIO) -> str:
    if not use_color(stream):
        return text
    if sys.platform == "win32":  # pragma: no cover - colorama translates ANSI there
        import colorama

        colorama.just_fix_windows_console()
    return f"{color}{text}{RESET}"


# What the step lines use, spelled for a stream that cannot encode it (LANG=C, a pipe
# with PYTHONIOENCODING=ascii); anything else becomes "?" rather than a traceback.
_ASCII = str.maketrans({"✓": "+", "✗": "x", "·": "-", "→": "->", "…": "...", "—": "-"})


def _mark(symbol: str, fallback: str, stream: TextIO) -> str:
    encoding = getattr(stream, "encoding", None) or "ascii"
    try:
        symbol.encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return fallback
    return symbol


def _encodable(text: str, stream: TextIO) -> str:
    encoding = getattr(stream, "encoding", None) or "ascii"
    try:
        text.encode(encoding)
        return text
    except LookupError:
        encoding = "ascii"
    except UnicodeEncodeError:
        pass
    return text.translate(_ASCII).encode(encoding, "replace").decode(encoding)


def _write(text: str, stream: TextIO) -> None:
    try:
        stream.write(_encodable(text, stream) + "\n")
        stream.flush()
    except BrokenPipeError:
        # `inv session.add x | head -1`: the reader left, the work goes on (a step whose
        # line cannot be shown must not stop halfway)
        reader_left(stream)


def reader_left(stream: TextIO | None = None) -> None:
    """The reader of `stream` (stdout) went away (`| head`): what is still written goes
    nowhere, and no BrokenPipeError (or Python's complaint at exit) follows."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, (stream or sys.stdout).fileno())
    os.close(devnull)


def said(e: BaseException) -> int | None:
    """Say in one line on stderr what stopped the command, and return its exit status: a
    TallyError, the reader of stdout gone (`| head`: nothing said), the machine's refusal
    (a file, a name), an interrupt (an operation may say what it undid). None for anything
    else, which keeps its traceback."""
    from .errors import TallyError, one_line

    if isinstance(e, TallyError):
        error(str(e))
    elif isinstance(e, BrokenPipeError):
        reader_left()
    elif isinstance(e, (OSError, UnicodeError)):
        error(one_line(e))
    elif isinstance(e, KeyboardInterrupt):
        error(str(e) or "interrupted")
        return 130
    else:
        return None
    return 1


def step(name: str, detail: str = "") -> None:
    """A pipeline step that completed: ``✓ worktree  ../tally-x (new branch x)``."""
    if is_quiet():
        return
    out = _stdout()
    mark = _paint(_mark("✓", "+", out), GREEN, out)
    _write(f"{mark} {name:<12} {detail}".rstrip(), out)


def failed(name: str, detail: str) -> None:
    """A check that failed, among step lines: ``✗ frontend  exited: ...`` (stdout, red on
    a terminal; the command's one-line error and exit status say the rest)."""
    if is_quiet():
        return
    out = sys.stdout
    mark = _paint(_mark("✗", "x", out), RED, out)
    _write(f"{mark} {name:<12} {detail}".rstrip(), out)


def warn(name: str, detail: str, to_stderr: bool = False) -> None:
    """Something skipped or odd, not fatal: ``! links  backend/db.sqlite3 missing``."""
    if is_quiet():
        return
    out = _stderr() if to_stderr else _stdout()
    mark = _paint("!", YELLOW, out)
    _write(f"{mark} {name:<12} {detail}", out)


def error(message: str) -> None:
    """An error line on stderr, red on a terminal (shown even with --quiet)."""
    err = _stderr()
    _write(_paint(f"{_mark('✗', 'x', err)} {message}", RED, err), err)


def info(text: str = "") -> None:
    """A plain line (summaries, tables)."""
    if is_quiet():
        return
    _write(text, _stdout())


def data(text: str) -> None:
    """Machine-readable output (``--json``): printed even with --quiet."""
    _write(text, _stdout())


def table(rows: list[list[str]]) -> None:
    """Columns padded to width; the first row is the header (bold on a terminal)."""
    if is_quiet() or not rows:
        return
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for i, row in enumerate(rows):
        line = "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        info(bold(line) if i == 0 else line)


def bold(text: str) -> str:
    return _paint(text, BOLD, _stdout())


def dim(text: str) -> str:
    return _paint(text, DIM, _stdout())


def green(text: str) -> str:
    return _paint(text, GREEN, _stdout())


def red(text: str) -> str:
    return _paint(text, RED, _stdout())
