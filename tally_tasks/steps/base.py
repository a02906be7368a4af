"""What a step is: the protocol every step implements, and what a step is given.

A step (ports, worktree, links, env, claude_perms, tmux, or a task of the project's own
Invoke collection) says in one place what it does (`run`), what takes it away again
(`undo`), what a dry run prints for it (`plan`), what `doctor` checks (`check`) and what
`doctor --fix` mends (`fix`). `add`, its dry run and `doctor` go over the configured steps
and never name one (like pre-commit's ``lang_base.Language``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol, TypeVar

from .. import output, sessions, tmux
from ..errors import TallyError
from ..links import Outcome
from ..session import Project, Session

T = TypeVar("T")


@dataclass
class Context:
    """What a step works on, and how this run was asked for."""

    project: Project
    session: Session  # before `ports` has run in an add: the new session, without ports
    srv: tmux.TmuxServer | None = None  # None: the project's own server, made when needed
    adding: bool = False  # run by `add` (ports claims the entry; undo is wired)
    force: bool = False  # env: over existing copies (add --force)
    refresh: bool = False  # links: build copied trees again (links --refresh)
    resume: bool = False  # tmux: new windows with their resume commands
    no_tmux: bool = False  # tmux: add has just seen no such tmux session (not asked again)
    shell: str = ""  # tmux: the windows' shell, when asked already ("": ask tmux)
    made: dict[str, Any] = field(default_factory=dict)  # step name -> what its run made

    @property
    def server(self) -> tmux.TmuxServer:
        if self.srv is None:
            self.srv = tmux.server(self.project.settings.tmux_socket)
        return self.srv


class Made(NamedTuple):
    """What a run made that its `undo` takes away: `what` is said in the undo list."""

    what: str
    data: Any = None


class Checked(NamedTuple):
    """What `check` found: `mend` for `fix` to mend; `halt`: later steps have nothing to
    check (the worktree is gone)."""

    mend: tuple[str, ...] = ()
    halt: bool = False


FINE = Checked()


@dataclass
class Report:
    """What `doctor` found and mended; `live`: the running tmux sessions (asked once).

    A problem makes `doctor` exit 1; a note (a copy that differs from main's, a window
    program this machine lacks) is said and leaves it green; `fixable`: how many of the
    problems `--fix` would mend."""

    live: set[str] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    fixed: list[str] = field(default_factory=list)
    fixable: int = 0

    def bad(self, where: str, what: str) -> None:
        self.problems.append(f"{where}: {what}")
        output.warn(where, what)

    def note(self, where: str, what: str) -> None:
        self.notes.append(f"{where}: {what}")
        output.warn(where, what)

    def mended(self, where: str, what: str) -> None:
        self.fixed.append(f"{where}: {what}")
        output.step(where, "fixed: " + what)


class Refused(TallyError):
    """A dry run's finding that the real step would refuse (a `refuse` line)."""


class Step(Protocol):
    @property
    def name(self) -> str:
        """As the step lines show it: ``claude-perms``."""

    @property
    def required(self) -> bool:
        """`add` cannot go without it (it must be in tally.add_steps)."""

    @property
    def opens(self) -> bool:
        """It makes the session's registry entry: first in tally.add_steps."""

    def hold(self, ctx: Context) -> Made | None:
        """Before `run`, in an add: what `undo` takes away should `run` make it, or be cut
        short making it (Ctrl-C just as tmux or git made the thing). It changes nothing;
        the runner holds this undo before `run` starts, and the undo takes away only what
        is there."""

    def run(self, ctx: Context) -> Made | None:
        """Do it (idempotent); return what this run made that `undo` takes away (it
        replaces what `hold` said; None: nothing was made, and that undo is dropped)."""

    def undo(self, ctx: Context, made: Made) -> None:
        """Take away what `run` made (when a later step of `add` fails)."""

    def plan(self, ctx: Context) -> list[str]:
        """The dry run's lines; raises `Refused` where `run` would refuse."""

    def check(self, ctx: Context, report: Report) -> Checked:
        """What `doctor` checks of a session; every problem goes into `report`."""

    def fix(self, ctx: Context, report: Report, mend: tuple[str, ...]) -> None:
        """What `doctor --fix` mends of what `check` found."""


def require_worktree(session: Session) -> None:
    if not session.worktree.is_dir():
        raise TallyError(
            f"worktree {session.worktree} is missing; "
            "run: " + output.command("worktree", session.name)
        )


def show(step: str, outcomes: list[Outcome]) -> None:
    """One ✓ line of what went well, a warning for each that did not."""
    if not outcomes:
        output.step(step, "nothing configured")
        return
    good = [o.detail for o in outcomes if o.ok]
    for o in outcomes:
        if not o.ok:
            output.warn(step, o.detail)
    if good:
        output.step(step, " · ".join(good))


def stop_orphans(session: Session, report: Report) -> None:
    """`doctor --fix`: end the session's dev servers left running without its tmux."""
    for h in sessions.stop_orphans(session):
        report.mended(session.name, f"stopped {h.describe()}, left over from the worktree")


def silently(fn: Callable[[], T]) -> T:
    """Run `fn` with its step and warning lines held back (a plan says it its own way)."""
    was = output.is_quiet()
    output.set_quiet(True)
    try:
        return fn()
    finally:
        output.set_quiet(was)


def nothing_to_hold(ctx: Context) -> Made | None:
    """For steps whose work goes with the worktree."""
    return None


def nothing_to_undo(ctx: Context, made: Made) -> None:
    """For steps whose work goes with the worktree."""


def nothing_to_fix(ctx: Context, report: Report, mend: tuple[str, ...]) -> None:
    """For steps `check` finds nothing to mend in."""


def plan_line(step: str, detail: str) -> None:
    """One line of a dry run."""
    output.info(f"· {step:<12} {detail}")


def refuse_lines(problems: list[str], nothing: str) -> None:
    """A dry run's refusal: each reason, then what is not done."""
    for problem in problems:
        plan_line("refuse", problem)
    plan_line("refuse", nothing)
