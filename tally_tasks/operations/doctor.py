"""`session.doctor`: find what is broken about sessions and their environment; mend the safe part.

What `--fix` mends: missing or wrong links, missing copies, a tmux session or window that is
gone, a registry entry whose worktree is gone (after ``git worktree prune``, ending its tmux
session), and processes left over in a worktree whose tmux session is gone that still hold
the session's ports. What it never does: kill a process from outside the worktree (a foreign
program on a session's port is reported, with its PID and command).
"""

from __future__ import annotations

import shutil

from .. import output, registry, sessions, status, tmux
from .. import shell as shell_
from ..errors import TallyError
from ..session import Project
from ..steps import builtin
from ..steps.base import Context, Report, Step
from ..steps.project import ProjectTasks, TaskStep, for_add, for_remove


def check_tools(project: Project, report: Report) -> None:
    for tool in ("git", "tmux"):
        if shutil.which(tool):
            output.step("tools", f"{tool} found")
        else:
            report.bad("tools", f"{tool} is not on PATH; install it")
    have = tmux.version() if shutil.which("tmux") else None
    if have is not None and have < tmux.MIN_VERSION:
        report.bad(
            "tools", f"tmux {have[0]}.{have[1]} is too old; tally-tasks needs tmux 3.2 or newer"
        )
    try:
        shell_.kind(shell_.login_shell())
    except TallyError as e:
        report.bad("shell", str(e))
        return  # the preflight runs in that shell: it would only fail the same way
    from . import live

    broken, missing = live.preflight_split(project, project.new_session("doctor"))
    for line in broken:
        report.bad("preflight", line)
    # a note: the session runs and that window says "not found" (a machine without
    # Claude Code must be able to pass)
    for line in missing:
        report.note("preflight", line)
    if not broken and not missing:
        output.step("preflight", "activate and every window's program work in your login shell")


def check_steps(project: Project, tasks: ProjectTasks | None, report: Report) -> list[Step]:
    """The steps of `tally.add_steps`, listed when the project's tasks are among them (and
    the tasks of `remove_steps`); a name that is neither a step nor a task is a problem.
    Returns the steps to check sessions with."""
    try:
        chosen = [step for _, step in for_add(project, tasks)]
        removing = for_remove(project, tasks)
    except TallyError as e:
        report.bad("steps", str(e))
        return [builtin[s.task] for s in project.settings.add_steps if s.task in builtin]
    if any(isinstance(s, TaskStep) for s in chosen):
        output.step("steps", "add: " + " · ".join(_shown(s) for s in chosen))
    if removing:
        output.step("steps", "remove: " + " · ".join(_shown(s) for s in removing))
    return chosen


def _shown(step: Step) -> str:
    if not isinstance(step, TaskStep):
        return step.name
    undo = f", undo: {step.undo_task}" if step.undo_task else ""
    return f"{step.name} (project task{undo})"


def check_session(ctx: Context, chosen: list[Step], fix: bool, report: Report) -> None:
    """Each step's check of the session, in order, and (`fix`) its mending."""
    for step in chosen:
        found = step.check(ctx, report)
        if fix and found.mend:
            step.fix(ctx, report, found.mend)
        elif found.mend:
            report.fixable += 1
        if found.halt:
            return


def run(
    project: Project,
    srv: tmux.TmuxServer,
    name: str | None,
    fix: bool,
    tasks: ProjectTasks | None = None,
) -> Report:
    report = Report()
    check_tools(project, report)
    chosen = check_steps(project, tasks, report)
    entries = sessions.load(project)
    if name:
        sessions.get(project, name)
        entries = {name: entries[name]}
    try:
        report.live = tmux.running(srv)
    except TallyError as e:
        report.bad("tmux", str(e))
    checked = set()
    for n, entry in entries.items():
        pid = sessions.adder(entry)
        if pid is not None:  # half-made on purpose: checking it now would only mislead
            output.step(n, f"being added right now (pid {pid}); not checked")
            continue
        session = project.session(n, entry)
        why = sessions.misplaced(project, session.worktree)
        if why:  # never checked, never mended: that reaches the main checkout's own
            report.bad(n, f"its worktree {session.worktree} {why}; fix or remove the entry")
            continue
        before = len(report.problems)
        check_session(Context(project, session, srv), chosen, fix, report)
        checked.add(n)
        if len(report.problems) == before:
            output.step(n, "ok")
    if not name:
        entries = registry.load(project.registry_path)
        for note in status.stale(project, srv, entries, checked=checked):
            report.bad("stale", note)
    return report
