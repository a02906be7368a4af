"""Before a session is made: does the activation command work, and is each window's
program found after it, in the shell the windows will run in?

One call of the user's login shell (``$SHELL -lic``, as a window's shell starts: its rc
files, its PATH) runs the activation command and looks up every program the windows
start (``command -v``; ``type -q`` in fish). What is missing is a warning that names it
and the setting to change, not a surprise inside a window.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from .config import Window
from .hooks import NO_TTY_NOISE
from .session import commands

_MARK = "__tally_preflight__"


@dataclass
class Finding:
    """What the windows' login shell said before `add` started them."""

    activate_status: int | None  # None: the shell did not get that far
    missing: dict[str, list[str]]  # program -> the windows that run it
    output: list[str]  # what the shell said, for the warning


def programs_of(windows: Iterable[Window]) -> dict[str, list[str]]:
    """Program -> the windows whose command (or resume command) runs it."""
    found: dict[str, list[str]] = {}
    for win in windows:
        for line in (win.cmd, win.resume_cmd):
            for word in commands(line):
                if "{" in word:  # a placeholder: known only when rendered
                    continue
                names = found.setdefault(word, [])
                if win.name not in names:
                    names.append(win.name)
    return found


def script(shell: str, activate: str, programs: Iterable[str]) -> str:
    """The one shell line: activate, say its status, look every program up."""
    q = shlex.quote
    fish = os.path.basename(shell) == "fish"
    lines = []
    if activate:
        lines.append(activate)
        lines.append(f"echo {_MARK} status ${'status' if fish else '?'}")
    for prog in programs:
        if fish:
            lines.append(f"type -q {q(prog)}; or echo {_MARK} missing {q(prog)}")
        else:
            lines.append(f"command -v {q(prog)} >/dev/null 2>&1 || echo {_MARK} missing {q(prog)}")
    lines.append(f"echo {_MARK} done")
    return "\n".join(lines)


def check(
    shell: str,
    activate: str,
    windows: Iterable[Window],
    cwd: Path,
    env: Mapping[str, str],
    timeout: float = 20.0,
) -> Finding:
    """Run the one login-shell call (at most `timeout` s: rc files may hang)."""
    needed = programs_of(windows)
    proc = subprocess.Popen(
        [shell, "-lic", script(shell, activate, needed)],
        cwd=cwd,
        env={**os.environ, **env},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        start_new_session=True,  # an interactive shell must not take our terminal
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        out, _ = proc.communicate()
        return Finding(None, {}, [f"{shell} -lic did not finish in {timeout:.0f} s"])
    status: int | None = None
    missing: dict[str, list[str]] = {}
    said: list[str] = []
    finished = False
    for line in out.splitlines():
        if not line.startswith(_MARK + " "):
            if line.strip() and not _noise(line):
                said.append(line.strip())
            continue
        word, _, rest = line[len(_MARK) + 1 :].partition(" ")
        if word == "status":
            status = int(rest) if rest.strip().lstrip("-").isdigit() else None
        elif word == "missing" and rest in needed:
            missing[rest] = needed[rest]
        elif word == "done":
            finished = True
    if not finished and not said:
        said = [f"{shell} -lic exited with status {proc.returncode}"]
    return Finding(status if activate else 0, missing, said)


def _noise(line: str) -> bool:
    return any(n in line for n in NO_TTY_NOISE)


def split(finding: Finding, shell: str, activate: str) -> tuple[list[str], list[str]]:
    """The lines to show, what is missing and how to set it: (the activation fails: no
    window's command runs; a program some windows need is missing: those windows say "not
    found", the session runs)."""
    broken, missing = [], []
    name = os.path.basename(shell)
    if activate and finding.activate_status != 0:
        said = "; ".join(finding.output[-2:]) or f"status {finding.activate_status}"
        broken.append(
            f"the activation command `{activate}` fails in your login shell ({name}): {said}; "
            'set tally.activate in invoke.yaml to what works there ("" for none)'
        )
    for prog, windows in finding.missing.items():
        after = " after the activation command" if activate else ""
        install = (
            "install Claude Code (npm install -g @anthropic-ai/claude-code)"
            if prog == "claude"
            else "install it"
        )
        missing.append(
            f"{prog} is not found{after} in your login shell ({name}), needed by "
            f"{', '.join(windows)}; {install}, or change the window's cmd in tally.windows"
        )
    return broken, missing
