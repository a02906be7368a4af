"""`resume`: after a reboot, start the tmux session of every registered session (or one)."""

from __future__ import annotations

from .. import hooks, output, sessions, tmux
from .. import ports as ports_
from ..errors import TallyError
from ..session import Project, Session
from ..steps.tmux import window_runs, window_shell


def run(project: Project, srv: tmux.TmuxServer, name: str | None = None) -> list[str]:
    """Recreate the tmux session of every registered session (or one); returns those started.

    All sessions start in one tmux call (the bare script's twenty `tmux` runs cost more
    than our whole start-up).
    """
    entries = sessions.load(project)
    if name:
        sessions.get(project, name)
        entries = {name: entries[name]}
    if not entries:
        output.info("no sessions to resume")
        return []
    live = tmux.pane_paths(srv)  # name -> the folders its panes work in
    todo: list[Session] = []
    for n, entry in entries.items():
        session = project.session(n, entry)
        why = sessions.misplaced(project, session.worktree)
        if why:
            output.warn("resume", f"{n}: its worktree {session.worktree} {why}; not started")
        elif said := sessions.foreign_tmux_said(project, session, live.get(session.tmux_name)):
            output.warn("resume", f"{n}: {said}")
        elif session.tmux_name in live:
            output.step("resume", f"{n}: already running")
        elif not session.worktree.is_dir():
            output.warn(
                "resume",
                f"{n}: worktree {session.worktree} is gone; drop it with: "
                + output.command("remove", n),
            )
        else:
            todo.append(session)
    busy = ports_.listening(p for s in todo for p in s.ports.values())
    for session in todo:
        if busy.intersection(session.ports.values()):
            sessions.warn_foreign_ports(session)
    shell = window_shell(srv) if todo else ""
    runs = {}
    failed: set[str] = set()
    for session in todo:
        try:
            runs[session.tmux_name] = window_runs(project, session, True, shell)
        except TallyError as e:  # a window folder this worktree lacks: the others still start
            output.warn("resume", f"{session.name}: {e}")
            failed.add(session.tmux_name)
    todo = [s for s in todo if s.tmux_name in runs]
    failed |= set(tmux.create_many(srv, [(s.tmux_name, runs[s.tmux_name], s.env()) for s in todo]))
    started = []
    hooks_failed = []
    for session in todo:
        if session.tmux_name in failed:
            output.warn("resume", f"{session.name}: tmux could not start {session.tmux_name}")
            continue
        output.step("resume", f"{session.name}: started {session.tmux_name}")
        started.append(session.name)
        try:
            hooks.run(project, session, "post_resume")
        except TallyError as e:  # one session's hook does not stop the others'
            output.warn("post-resume", f"{session.name}: {e}")
            hooks_failed.append(session.name)
    if failed:
        raise TallyError(f"{len(failed)} session(s) did not start: " + ", ".join(sorted(failed)))
    if hooks_failed:
        raise TallyError(
            "post_resume hooks failed for " + ", ".join(hooks_failed) + " (their sessions run)"
        )
    return started
