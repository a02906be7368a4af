"""The `tmux` step: the session's tmux session and its windows, each typing its command
after the activation command; missing windows are added with their resume commands."""

from __future__ import annotations

import shlex
import time
from typing import TYPE_CHECKING

from .. import config, hooks, output, sessions, tmux
from .. import repo as repo_
from .. import shell as shell_
from ..errors import TallyError
from ..session import Project, Session, render
from .base import (
    Checked,
    Context,
    Made,
    Refused,
    Report,
    require_worktree,
    silently,
    stop_orphans,
)

if TYPE_CHECKING:  # imported where windows are waited for, or looked at
    from .. import panes, readiness

name = "tmux"
required = False
opens = False


def window_runs(
    project: Project, session: Session, resume: bool = False, shell: str | None = None
) -> list[tmux.WindowRun]:
    """Each window's folder and the line typed into it (`resume`: its resume command),
    written for `shell`, the windows' shell (`window_shell`; None: $SHELL)."""
    s = project.settings
    values = session.values(project)
    kind = shell_.kind(shell or shell_.login_shell())
    activate = render(s.activate, values, shell_.quoter(kind)).strip()
    # a dry run's plan comes before the worktree (or a folder add refuses is in its place)
    checked_out = (session.worktree / ".git").exists()
    runs = []
    for i, win in enumerate(s.windows):
        folder = session.worktree / win.dir if win.dir else session.worktree
        if checked_out:
            folder = config.window_folder(session.worktree, i, win, project.main)
        cmd = (win.resume_cmd if resume and win.resume_cmd else win.cmd).strip()
        line = shell_.joined(kind, activate, render(cmd, values))
        runs.append(tmux.WindowRun(win.name, folder, line))
    return runs


def window_shell(srv: tmux.TmuxServer) -> str:
    """The shell the windows run: the running server's default-shell, else $SHELL (what
    a new server starts with, unless tmux.conf sets default-shell), checked: one a line
    can be written for, else the one-line error, before anything is made."""
    return checked_shell(tmux.default_shell(srv))


def checked_shell(shell: str | None) -> str:
    """`window_shell` of the server's default-shell, asked already (None: no server)."""
    if shell is None:
        shell = shell_.login_shell()
        shell_.kind(shell)
        return shell
    shell_.kind(shell, "tmux's default-shell")
    return shell


def start(
    project: Project,
    session: Session,
    srv: tmux.TmuxServer,
    resume: bool = False,
    shell: str = "",
    absent: bool = False,
) -> str:
    """Start the session's tmux session, or add the windows it is missing (and those left
    working in a deleted folder, when the worktree was made again): started, mended or
    running. `shell`: the windows' shell, when known already; `absent`: the caller has
    just seen no such session."""
    require_worktree(session)
    tname = session.tmux_name
    shell = shell or window_shell(srv)
    ours = {w.name for w in project.settings.windows}
    shown = None if absent else tmux.windows(srv, tname)  # None: no such session
    said = sessions.foreign_tmux_said(project, session, (shown or {}).values())
    if said:
        raise TallyError(said)
    in_deleted = tmux.in_deleted_folders(shown or {})
    stale = [w for w in in_deleted if w in ours]
    for win in (w for w in in_deleted if w not in ours):  # yours: an editor, say
        output.warn("tmux", f"window {win} works in a deleted folder; not ours, left alone")
    if stale:
        output.warn("tmux", f"{', '.join(stale)}: working in a deleted folder, restarting")
        tmux.kill_windows(srv, tname, stale)
        if shown is not None and set(shown) <= set(stale):
            shown = None  # its last window gone, the session is too: made anew below
    if shown is not None:
        have = set(shown) - set(stale)
        # a window the session had before comes back with its resume command
        runs = window_runs(project, session, resume=True, shell=shell)
        missing = [r for r in runs if r.name not in have]
        if missing:
            tmux.add_windows(srv, tname, missing, session.env())
        died = restart_dead(project, session, srv, runs)
        if not missing and not died:
            output.step("tmux", f"{tname} running")
            return "running"
        output.step("tmux", f"{tname}: restarted " + ", ".join([r.name for r in missing] + died))
        return "mended"
    runs = window_runs(project, session, resume or bool(stale), shell)
    sessions.warn_foreign_ports(session)
    tmux.create(srv, tname, runs, session.env())
    output.step("tmux", f"{tname}  ({', '.join(r.name for r in runs)})")
    return "started"


def dead_pane(pane: panes.Pane) -> bool:
    """Its program is gone: the pane is dead, or its shell is back at its prompt and past
    its start-up (readiness.SETTLE: a shell may still be reading its rc files)."""
    from .. import readiness  # here and below: a new session's windows wait for nothing

    if pane.running:
        return False
    born = pane.shell_started
    return pane.dead or born is None or time.time() - born >= readiness.SETTLE


def dead_windows(project: Project, session: Session, srv: tmux.TmuxServer) -> list[str]:
    """The windows whose program has died (a window with no command is idle by design)."""
    from .. import panes  # here and in restart_dead: a new session's windows are all alive

    have = panes.snapshot(srv).get(session.tmux_name)
    return [
        w.name
        for w in project.settings.windows
        if (w.cmd or w.resume_cmd) and w.name in have and dead_pane(have[w.name])
    ]


def restart_dead(
    project: Project, session: Session, srv: tmux.TmuxServer, runs: list[tmux.WindowRun]
) -> list[str]:
    """Restart, with their resume commands (`runs`: `window_runs(..., resume=True)`), the
    windows whose program has died; never a live one. Returns their names."""
    dead = dead_windows(project, session, srv)
    if not dead:
        return []
    from .. import readiness, restart

    wanted = readiness.window_ports(project.settings.windows, session.ports)
    for run in runs:
        if run.name in dead:
            restart.restart(srv, session, run, wanted[run.name], live=False)
    return dead


def attach_line(project: Project, session: Session) -> str:
    return shlex.join(tmux.attach_argv(project.settings.tmux_socket, session.tmux_name)[0])


def hold(ctx: Context) -> Made | None:
    """A session this add may end: none of the name ran before (an add of a new entry
    refused one that did, before anything was made)."""
    if ctx.made.get("ports") is None and tmux.exists(ctx.server, ctx.session.tmux_name):
        return None
    return Made("tmux session")


def run(ctx: Context) -> Made | None:
    state = start(ctx.project, ctx.session, ctx.server, ctx.resume, ctx.shell, ctx.no_tmux)
    return Made("tmux session") if state == "started" else None


def undo(ctx: Context, made: Made) -> None:
    """End the session, and what its windows started that outlives it (a dev server that
    ignores the hang-up) still holding the session's ports from the worktree."""
    tmux.kill(ctx.server, ctx.session.tmux_name)
    sessions.stop_orphans(ctx.session)


def plan(ctx: Context) -> list[str]:
    """The windows exactly as `window_runs` types them; a folder the worktree (or the
    branch, before the worktree is made) lacks, and no link or copy makes, is refused."""
    project, session = ctx.project, ctx.session
    shell = ctx.shell or window_shell(ctx.server)
    try:
        runs = silently(lambda: window_runs(project, session, shell=shell))
    except TallyError as e:  # a window folder the worktree lacks
        raise Refused(str(e)) from None
    made = [lk.path for lk in project.settings.links] + list(project.settings.copies)
    have = set(tmux.windows(ctx.server, session.tmux_name) or {})
    tracked = _tracked_dirs(project, session) if not session.worktree.is_dir() else set()
    lines = []
    for i, (win, r) in enumerate(zip(project.settings.windows, runs, strict=True)):
        if r.name in have:
            continue
        folder = r.dir
        if not session.worktree.is_dir():
            d = win.dir.rstrip("/")
            if d and d not in tracked and not any(m.startswith(d + "/") for m in made):
                raise Refused(
                    f"config key tally.windows[{i}].dir: {d}/ is not in the branch add would "
                    "check out; add would fail"
                )
            folder = session.worktree / d if d else session.worktree
        where = f"{session.tmux_name}:{r.name} in {folder}"
        lines.append(f"{where}: {r.keys}" if r.keys else f"{where} (an idle shell)")
    if have and all(r.name in have for r in runs):
        lines.append(f"{session.tmux_name} running")
    return lines


def _tracked_dirs(project: Project, session: Session) -> set[str]:
    """The window folders the branch has (the worktree is not made yet)."""
    with repo_.open_repo(project.main) as repo:
        ref = session.branch if repo_.branch_exists(repo, session.branch) else "HEAD"
        return {
            win.dir
            for win in project.settings.windows
            if win.dir and repo_.ok(repo, "cat-file", "-e", f"{ref}:{win.dir.rstrip('/')}")
        }


def check(ctx: Context, report: Report) -> Checked:
    """The tmux session runs with every window, none in a deleted folder."""
    project, session = ctx.project, ctx.session
    want = [w.name for w in project.settings.windows]
    if session.tmux_name not in report.live:
        report.bad(session.name, f"tmux session {session.tmux_name} is not running")
        for h in sessions.orphans(session):
            report.bad(
                session.name,
                f"{h.describe()} from the worktree still holds a port of this session; "
                "--fix stops it before restarting the windows",
            )
        return Checked(mend=(session.tmux_name,))
    shown = tmux.windows(ctx.server, session.tmux_name) or {}
    said = sessions.foreign_tmux_said(project, session, shown.values())
    if said:
        report.bad(session.name, said)
        return Checked()
    missing = [w for w in want if w not in shown]
    stale = [w for w in tmux.in_deleted_folders(shown) if w in want]
    if missing:
        report.bad(session.name, "tmux windows missing: " + ", ".join(missing))
    if stale:
        report.bad(
            session.name,
            "tmux windows working in a deleted folder (the worktree was made again): "
            + ", ".join(stale),
        )
    died = [w for w in dead_windows(project, session, ctx.server) if w not in stale]
    if died:
        report.bad(session.name, "programs that have died in tmux windows: " + ", ".join(died))
    return Checked(mend=tuple(missing + stale + died))


def fix(ctx: Context, report: Report, mend: tuple[str, ...]) -> None:
    """Restart the session (its own leftover servers stopped first, then its post_resume
    hooks, as resume brings one back), or the windows that are missing or stale."""
    project, session = ctx.project, ctx.session
    if session.tmux_name not in report.live:
        stop_orphans(session, report)
        start(project, session, ctx.server, resume=True)
        report.mended(session.name, f"restarted {session.tmux_name}")
        try:
            hooks.run(project, session, "post_resume")
        except TallyError as e:
            report.bad(session.name, str(e))
        ready(ctx, report, None)
        return
    start(project, session, ctx.server, resume=True)
    report.mended(session.name, "restarted windows " + ", ".join(mend))
    ready(ctx, report, list(mend))


def wait_for(
    project: Project, session: Session, srv: tmux.TmuxServer, windows: list[str] | None = None
) -> list[readiness.Ready]:
    """Wait for the session's windows (or those named), a line each."""
    from .. import readiness

    chosen = [w for w in project.settings.windows if windows is None or w.name in windows]
    results = readiness.check(
        session, chosen, srv, project.settings.ready_timeout, among=project.settings.windows
    )
    readiness.report(results, session, attach_line(project, session))
    return results


def ready(ctx: Context, report: Report, windows: list[str] | None) -> None:
    """After --fix started windows: wait for them, a line each; one that does not come up
    is a problem left."""
    session = ctx.session
    for r in wait_for(ctx.project, session, ctx.server, windows):
        if not r.ok:
            report.problems.append(f"{session.name}: {r.window} {r.state} after --fix")
