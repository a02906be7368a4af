"""The shell hooks of `tally.hooks`: run in a session's worktree as a window runs its command."""

from __future__ import annotations

import os
import signal
import subprocess

from . import interrupts, output
from . import shell as shell_
from .errors import TallyError
from .session import Project, Session, render

# What bash -i says on stderr when it has no terminal: not the hook's output.
NO_TTY_NOISE = (
    "cannot set terminal process group",
    "no job control in this shell",
    "can't access tty",
)


def _end_group(proc: subprocess.Popen[str]) -> None:
    """SIGTERM the process group `proc` leads, SIGKILL it if it lingers."""
    for sig, wait in ((signal.SIGTERM, 3.0), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def run(
    project: Project, session: Session, point: str, extra: dict[str, str] | None = None
) -> None:
    """Run the hooks of `point` in the worktree, as a window runs its command: in the
    user's login shell, after the activation command, with the TALLY_* variables (and
    `extra` ones)."""
    cmds = project.settings.hooks.get(point, ())
    if not cmds:
        return
    step = point.replace("_", "-")
    if not session.worktree.is_dir():
        # never in the main checkout instead: `rm -rf node_modules` there is shared data
        output.warn(step, f"worktree {session.worktree} is gone; hooks not run")
        return
    values = session.values(project)
    env = {**os.environ, **session.env(), **(extra or {})}
    shell = shell_.login_shell()
    kind = shell_.kind(shell)
    activate = render(project.settings.activate, values, shell_.quoter(kind)).strip()
    for template in cmds:
        line = render(template, values)
        proc: subprocess.Popen[str] | None = None
        try:
            # Ctrl-C waits until the process is in `proc`, for the except below to end
            # it. Its own session: an interactive shell with our terminal would take it
            # over (job control), and the terminal's Ctrl-C does not reach it: on Ctrl-C
            # here, its whole group is ended.
            with interrupts.held():
                proc = subprocess.Popen(
                    shell_.command(shell, kind, shell_.joined(kind, activate, line)),
                    cwd=session.worktree,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                    errors="replace",
                    start_new_session=True,
                )
            out, err = proc.communicate()
        except BaseException:
            if proc is not None:
                _end_group(proc)
            raise
        if proc.returncode != 0:
            said = (out + err).strip().splitlines()
            tail = [ln for ln in said if not any(n in ln for n in NO_TTY_NOISE)][-5:]
            raise TallyError(
                f"hook {point} `{line}` failed with status {proc.returncode}"
                + (": " + " | ".join(tail) if tail else "")
            )
        output.step(step, line)
