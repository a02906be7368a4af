"""Before a session is made: does the activation command work, and is each window's
program found after it, in the shell the windows will run in?

One call of the user's login shell (``$SHELL -lic``, as a window's shell starts: its rc
files, its PATH) runs the activation command and looks up every program the windows
start (``command -v``; ``type -q`` in fish). What is missing is a warning that names it
and the setting to change, not a surprise inside a window.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from . import interrupts
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


class Running:
    """The one login-shell call, started (`started`): it runs while the caller does other
    work; `finding` waits for what it says, `stop` ends it if it still runs."""

    def __init__(
        self,
        proc: subprocess.Popen[str],
        shell: str,
        activate: str,
        needed: dict[str, list[str]],
        timeout: float,
    ) -> None:
        self.proc, self.shell, self.activate, self.needed = proc, shell, activate, needed
        self.timeout, self.deadline = timeout, time.monotonic() + timeout

    def finding(self) -> Finding:
        """What the shell said (waiting until `timeout` s after its start, at most)."""
        shell, proc, needed = self.shell, self.proc, self.needed
        try:
            out, _ = proc.communicate(timeout=max(self.deadline - time.monotonic(), 0))
        except subprocess.TimeoutExpired:
            self.stop()
            return Finding(None, {}, [f"{shell} -lic did not finish in {self.timeout:.0f} s"])
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
        return Finding(status if self.activate else 0, missing, said)

    def stop(self) -> None:
        """End the shell and what its rc files started in its group (one may hold its
        output open after it exited), and reap it. Nothing to do once `finding` has read
        it to the end."""
        if self.proc.stdout is None or self.proc.stdout.closed:
            return
        try:  # not reaped yet: its pid is still its group's
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.communicate()


@contextlib.contextmanager
def started(
    shell: str,
    activate: str,
    windows: Iterable[Window],
    cwd: Path,
    env: Mapping[str, str],
    timeout: float = 20.0,
) -> Iterator[Running]:
    """The one login-shell call, started: it runs while the block does other work, and
    the block reads it when it wants (`Running.finding` waits at most `timeout` s from
    now: rc files may hang). Still running as the block ends (Ctrl-C, an error), it is
    ended."""
    needed = programs_of(windows)
    running = None
    try:
        with interrupts.held():  # started and handed to the `finally`, or not started
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
            running = Running(proc, shell, activate, needed, timeout)
        yield running
    finally:
        if running is not None:
            running.stop()


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
