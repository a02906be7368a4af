"""`add`: run the steps of `tally.add_steps` in order; on failure, undo what this run made.

Each step's undo is held before its `run` starts (`hold` says what it would take away),
so a failing step, a `post_add` hook or Ctrl-C at any moment runs the held undos in
reverse (README: Safety); what `run` says it made then replaces what was held. `plan` is
the dry run over the same steps.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shlex
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .. import hooks, interrupts, output, registry, sessions, tmux
from .. import repo as repo_
from .. import shell as shell_
from ..config import tasks_folder
from ..errors import TallyError
from ..session import Project, Session, check_name, render
from ..steps import worktree as worktree_step
from ..steps.base import Context, Refused, plan_line, refuse_lines
from ..steps.project import ProjectTasks, for_add
from ..steps.tmux import attach_line, checked_shell, window_shell

_FAULT_ENV = "TALLY_TEST_FAULT"  # tests: "pause:<step>" / "fail:<step>" to hit a boundary


def _fault(step: str) -> None:
    """Test hook: pause or fail at a step boundary, so kill/rollback tests are exact."""
    spec = os.environ.get(_FAULT_ENV, "")
    if not spec:
        return
    action, _, where = spec.partition(":")
    if where != step:
        return
    if action == "fail":
        raise TallyError(f"injected failure after {step}")
    if action == "pause":
        marker = os.environ.get("TALLY_TEST_FAULT_MARK")
        if marker:
            Path(marker).write_text(step)
        time.sleep(3600)


def _check_new(project: Project, name: str) -> registry.Entry | None:
    """The name's entry, when this add may take it over (else an error); None: a new one."""
    entries = sessions.load(project)
    existing = entries.get(name)
    if existing is None:
        sessions.check_slug(project, entries, name)
        fresh = project.new_session(name).worktree
        why = sessions.misplaced(project, fresh)
        if why:
            raise TallyError(
                f"the worktree would be {fresh}, which {why}; set tally.worktrees to a "
                "folder outside the repository's git dir"
            )
    else:  # again, locked, in the ports step
        sessions.check_claim(name, existing, project.new_session(name).worktree, project.main)
    return existing


# tmux's answer for the new session's windows (`tmux.windows`), when asked already
Shown = Callable[[], "dict[str, str] | None"]


def _tmux_taken(
    project: Project, name: str, srv: tmux.TmuxServer, shown: Shown | None = None
) -> str:
    """Why the new session's tmux name is taken ("" when it is free)."""
    fresh = project.new_session(name)
    panes = shown() if shown is not None else tmux.windows(srv, fresh.tmux_name)
    if panes is None:
        return ""
    said = sessions.foreign_tmux_said(project, fresh, panes.values())
    if said:
        return said
    return (
        f"a tmux session {fresh.tmux_name} already runs but no session {name!r} is "
        "registered; end it with: " + output.on_host(f"tmux kill-session -t ={fresh.tmux_name}")
    )


def _check_shells(project: Project, ctx: Context, steps: list[str], shell: str = "") -> None:
    """Refuse, before anything is made, a shell no window line or hook is written for."""
    if "tmux" in steps:
        ctx.shell = shell or window_shell(ctx.server)
    if project.settings.hooks.get("post_add"):
        shell_.kind(shell_.login_shell())


@dataclass
class _Undo:
    actions: list[tuple[str, Callable[[], None]] | None] = field(default_factory=list)

    def push(self, what: str, action: Callable[[], None]) -> int:
        self.actions.append((what, action))
        return len(self.actions) - 1

    def settle(self, slot: int | None, what: str, action: Callable[[], None] | None) -> None:
        """What the step's run says it made replaces what was held for it (None: it
        made nothing, and nothing is undone for it)."""
        if slot is not None:
            self.actions[slot] = (what, action) if action is not None else None
        elif action is not None:
            self.push(what, action)

    def run(self) -> list[str]:
        done = []
        # a second Ctrl-C while undoing would leave it half done: it waits, and the
        # first one (or the failure) ends the command when all is undone
        with interrupts.held(deliver=False):
            for held in reversed(self.actions):
                if held is None:
                    continue
                what, action = held
                try:
                    action()
                    done.append(what)
                except Exception as e:  # noqa: BLE001 - undo what we can, report the rest
                    output.warn("undo", f"could not undo {what}: {e}")
        return done


@contextlib.contextmanager
def _after(first: Callable[[], object]) -> Iterator[None]:
    """What `first` says (the preflight's warnings) comes before what the block says or
    its error, as when it was asked first; a Ctrl-C stops at once."""
    try:
        yield
    except KeyboardInterrupt:
        raise
    except BaseException:
        first()
        raise
    first()


def run(
    project: Project,
    name: str,
    srv: tmux.TmuxServer,
    force: bool = False,
    tasks: ProjectTasks | None = None,
    shell: str = "",
    first: Callable[[], object] = lambda: None,
    shown: Shown | None = None,
) -> Session:
    """The whole add. On failure, undoes what this run created (see README: Safety).
    `shell`, `shown`: the windows' shell and the session's windows (`tmux.windows`), when
    the caller has asked tmux already; `first`: says what must come before anything else
    (the preflight, running meanwhile), called once the checks are done, before the
    first step."""
    with _after(first):
        check_name(name)
        chosen = for_add(project, tasks)
        existing = _check_new(project, name)
        taken = _tmux_taken(project, name, srv, shown) if existing is None else ""
        if taken:
            raise TallyError(taken + ", or pick another name")
        ctx = Context(project, project.new_session(name), srv, adding=True, force=force)
        ctx.no_tmux = existing is None  # asked just now: the tmux step need not ask again
        _check_shells(project, ctx, [n for n, _ in chosen], shell)
    undo = _Undo()
    current = chosen[0][0]
    try:
        for current, step in chosen:
            # held before it starts: Ctrl-C just as tmux or git made the thing undoes it
            held = step.hold(ctx)
            slot = undo.push(held.what, functools.partial(step.undo, ctx, held)) if held else None
            made = step.run(ctx)
            if made is not None:
                ctx.made[step.name] = made
            action = functools.partial(step.undo, ctx, made) if made is not None else None
            undo.settle(slot, made.what if made else "", action)
            _fault(current)
        current = "post_add"
        hooks.run(project, ctx.session, "post_add")
        # finished and its undo dropped as one: never a finished session taken apart
        with interrupts.held() as came:
            with sessions.editing(project) as entries:
                if name not in entries:  # a `remove --force` took it away meanwhile
                    raise TallyError(f"session {name!r} was removed while it was being added")
                for key in ("state", "pid", "pid_start"):
                    entries[name].pop(key, None)
            undo.actions.clear()
            if came:
                output.warn("add", f"interrupted as it finished: session {name} is complete")
    except BaseException as e:
        undone = undo.run()
        where = current.replace("_", "-")
        if isinstance(e, TallyError):
            tail = f" (undone: {', '.join(undone)})" if undone else ""
            raise TallyError(f"{where} step failed: {e}{tail}") from None
        if isinstance(e, KeyboardInterrupt):  # Ctrl-C: say what is left, as a failure does
            raise KeyboardInterrupt(
                f"interrupted in the {where} step; "
                + (f"undone: {', '.join(undone)}" if undone else "nothing had been made yet")
            ) from None
        raise
    return ctx.session


def plan(
    project: Project,
    name: str,
    srv: tmux.TmuxServer,
    force: bool = False,
    tasks: ProjectTasks | None = None,
    shell: str = "",
    first: Callable[[], object] = lambda: None,
    shown: Shown | None = None,
) -> bool:
    """The dry run of `run` (`force`: its --force, over existing copies): the same checks,
    then each step's plan; False when the real add would refuse. `shell`, `first`,
    `shown`: as for `run` (`first` is called before the plan's first line)."""
    with _after(first):
        check_name(name)
        chosen = for_add(project, tasks)
        existing = _check_new(project, name)
        session = project.session(name, existing) if existing else project.new_session(name)
        ctx = Context(project, session, srv, force=force, shell=shell)
        lines: list[tuple[str, str]] = []
        refusals = []
        for _, step in chosen:
            try:
                lines += [(step.name, line) for line in step.plan(ctx)]
            except Refused as e:
                refusals.append(str(e))
    output.info(output.bold(f"Would create session {name} (dry run: nothing changed)"))
    taken = _tmux_taken(project, name, srv, shown) if existing is None else ""
    if taken:
        refusals.insert(0, taken)
    if refusals:
        refuse_lines(refusals, "nothing would be created")
        return False
    for label, line in lines:
        plan_line(label, line)
    for hook in project.settings.hooks.get("post_add", ()):
        plan_line("post-add", render(hook, ctx.session.values(project)))
    return True


def summary(project: Project, session: Session, ready: bool = True) -> None:
    """The session's worktree, URLs and attach line, under "ready" only when every
    window came up (`ready`)."""
    output.info()
    title = "is ready" if ready else "started with problems"
    output.info(output.bold(f"Session {session.name} {title}"))
    output.info(f"  worktree  {session.worktree}")
    output.info(f"  branch    {session.branch}")
    remote = output.via()
    where = f"{remote[1]}'s localhost" if remote else "localhost"
    for port, number in session.ports.items():
        output.info(
            f"  {port:<9} http://localhost:{number}" + (f"  (on {where})" if remote else "")
        )
    if remote:  # run over SSH by --host: say what works from the laptop
        output.info(f"  forward   {output.command('forward', session.name)}")
        output.info(f"  attach    {output.command('attach', session.name)}")
    else:
        output.info(f"  attach    {attach_line(project, session)}")
        lacking = tasks_missing(project, session)
        if lacking:
            output.info(f"  inv       {lacking}")


def create(
    project: Project,
    name: str,
    srv: tmux.TmuxServer,
    force: bool = False,
    tasks: ProjectTasks | None = None,
    dry_run: bool = False,
    wait: bool = True,
) -> bool:
    """`add` as the command (and the dashboard) runs it: the name checked, the preflight's
    warnings, then the dry run (False: the real add would refuse), or the steps, the wait
    for the windows to come up and the summary. Windows that did not come up are the
    error; the session is kept (the user wants to look at it)."""
    from . import live  # the preflight and readiness live there

    check_name(name)
    fresh = project.new_session(name)
    with repo_.ahead() as start:
        if not dry_run:  # the worktree step's git calls run at once, and with the checks
            worktree_step.ask_ahead(project, fresh, start)
        # the windows' shell, for the preflight and the windows, and whether the session's
        # tmux name is taken, in one tmux call
        asked, panes = tmux.shell_and_windows(srv, fresh.tmux_name)
        shell = checked_shell(asked)
        # the preflight's login shell runs while the checks ask git and tmux; its warnings
        # still come first
        with live.preflight(project, fresh, shell) as say:
            if dry_run:
                return plan(project, name, srv, force, tasks, shell, say, lambda: panes)
            session = run(project, name, srv, force, tasks, shell, say, lambda: panes)
    waits = wait and tmux.exists(srv, session.tmux_name)  # no tmux step: no windows
    found = live.problems(live.ready(project, session, srv)) if waits else ""
    summary(project, session, ready=not found)
    if found:
        raise TallyError(
            f"session {name} started with problems ({found}); it is kept: look at it with: "
            + attach_line(project, session)
            + ", restart a window with: "
            + output.command("restart", name, "--window", "W")
        )
    return True


def tasks_missing(project: Project, session: Session) -> str:
    """What to do when `inv` finds no tasks.py in the worktree ("" when it does): it looks
    in the folder it runs in and the ones above, and a branch without the project's
    tasks.py has none there (`tally-session` finds the main checkout from anywhere)."""
    folder = tasks_folder(project.main)
    if folder is None or not folder.is_relative_to(project.main):
        return ""
    rel = folder.relative_to(project.main) / "tasks.py"
    if (session.worktree / rel).is_file():
        return ""
    return (
        f"branch {session.branch} has no {rel}, so inv finds no tasks in the worktree: "
        f"there, run tally-session, or inv --search-root {shlex.quote(str(folder))}"
    )
