"""A project's registered sessions: look one up, claim one for an `add`, drop one; and the
processes of a session (who holds its ports, what was left running in its worktree).

Below the steps and operations, which all ask these questions the same way.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import output, registry, worktree
from . import ports as ports_
from . import repo as repo_
from .errors import TallyError
from .session import Project, Session, slugify

if TYPE_CHECKING:  # imported where used: `list` needs neither
    from . import links

CREATING = "creating"  # an entry's `state` while its add runs (or after one was killed)


def editing(project: Project) -> Any:
    """The registry, locked, for a read-change-write."""
    return registry.editing(project.registry_path, project.lock_path, project.settings.lock_timeout)


def locked_repo(project: Project) -> Any:
    """The repository lock: held around every `git worktree` call (git reads all
    worktrees' records, and another process's half-made one makes it fail)."""
    return registry.locked(
        project.lock_path, project.settings.lock_timeout, project.registry_path.name
    )


def load(project: Project) -> registry.Registry:
    return registry.load(project.registry_path)


def get(project: Project, name: str) -> Session:
    """A registered session, or a clear error (also for an entry whose worktree is
    misplaced: nothing is done to it, not even to its processes)."""
    entries = load(project)
    if name not in entries:
        known = ", ".join(sorted(entries)) or "none yet"
        raise TallyError(
            f"no session named {name!r} (sessions: {known}); "
            "create it with: " + output.command("add", name)
        )
    session = project.session(name, entries[name])
    why = misplaced(project, session.worktree)
    if why:
        raise TallyError(
            f"{project.registry_path}: session {name!r} has {session.worktree} as its "
            f"worktree, which {why}; nothing done. Fix or remove that entry"
        )
    return session


def misplaced(project: Project, path: Path) -> str:
    """Why `path` can never be a session's worktree ("" when it can): it is the main
    checkout, holds it, or lies in the repository's git dir. Removing it, or stopping
    the processes working in it, would reach the main checkout's own."""
    real, main = Path(os.path.realpath(path)), Path(os.path.realpath(project.main))
    if real == main:
        return "is the main checkout"
    if main.is_relative_to(real):
        return "holds the main checkout"
    if real.is_relative_to(os.path.realpath(project.common_dir)):
        return "lies inside the repository's git dir"
    return ""


def drop_entry(project: Project, name: str) -> None:
    with editing(project) as entries:
        entries.pop(name, None)


def check_slug(project: Project, entries: registry.Registry, name: str) -> None:
    """Refuse a name whose folder and tmux name another session already has."""
    slug = slugify(name)
    for other in entries:
        if other != name and slugify(other) == slug:
            raise TallyError(
                f"session name {name!r} clashes with existing session {other!r} "
                f"(both become {project.tmux_name(name)}); pick another name"
            )


def check_claim(name: str, entry: registry.Entry, fresh: Path, main: Path) -> None:
    """May this `add` take over the entry? One that is unfinished (a killed add; or made
    step by step, its worktree not yet, or only half, made at the usual place `fresh`) and
    that no running add is working on."""
    recorded = Path(entry["worktree"]) if entry.get("worktree") else fresh
    started = recorded == fresh and (
        not recorded.is_dir() or worktree.half_made(repo_.Repo(main), recorded)
    )
    if entry.get("state") != CREATING and not started:
        raise TallyError(
            f"session {name!r} already exists; restart its windows with "
            + output.command("resume", name)
            + ", or remove it first"
        )
    pid = adder(entry)
    if pid is not None and pid != os.getpid():
        raise TallyError(
            f"another tally-session (pid {pid}) is adding {name!r} right now; "
            "wait for it to finish, or stop it and run add again"
        )


def adder(entry: registry.Entry) -> int | None:
    """The pid of the `add` still working on this entry, if it is running."""
    pid = entry.get("pid")
    if entry.get("state") != CREATING or not isinstance(pid, int) or not ports_.is_alive(pid):
        return None
    started, now = entry.get("pid_start"), ports_.process_start(pid)
    if started and now and started != now:
        return None  # the pid was reused (a reboot, a long time): that add is gone
    return pid


# --- a session's processes ------------------------------------------------------------------


def works_in(session: Session, cwd: str | None) -> bool:
    """Is a process working in `cwd` one of the session's (its folder may be deleted)?"""
    if not cwd:
        return False
    cwd = cwd.removesuffix(" (deleted)")  # how Linux shows a folder removed under it
    inside = str(session.worktree)
    return cwd == inside or cwd.startswith(inside + os.sep)


def foreign_tmux(session: Session, paths: Iterable[str] | None) -> str:
    """Where the tmux session of `session`'s name works when it is not this session's
    ("" when it is, or there is none): none of its panes (`paths`, their folders) works
    in this worktree. Two checkouts in folders of the same name make the same tmux
    names; the other's is never ended, restarted or reported as this one's."""
    found = sorted(paths or ())
    if not found or any(works_in(session, p) for p in found):
        return ""
    return found[0]


def foreign_tmux_said(project: Project, session: Session, paths: Iterable[str] | None) -> str:
    """What to say when the tmux session of `session`'s name is not this session's
    (`foreign_tmux`); "" when it is, or there is none."""
    where = foreign_tmux(session, paths)
    if not where:
        return ""
    tname = session.tmux_name
    return (
        f"a tmux session {tname} already runs, working in {where}, not in "
        f"{session.worktree}: not this session's (another checkout's, whose folder has "
        f"this one's name, or yours); give this project other tmux names with "
        f"tally.project (now {project.name!r}), or end it with: "
        + output.on_host(f"tmux kill-session -t ={tname}")
    )


def foreign_holders(session: Session) -> dict[str, list[ports_.Holder]]:
    """Port name -> processes outside the worktree holding that port of the session."""
    held = ports_.holders(session.ports.values())
    found: dict[str, list[ports_.Holder]] = {}
    for port, number in session.ports.items():
        if number not in held:
            continue
        others = [h for h in held[number] if not works_in(session, h.cwd)]
        if others or not held[number]:
            found[port] = others
    return found


def warn_foreign_ports(session: Session) -> None:
    """Before starting windows: say which recorded ports another program holds."""
    for port, procs in foreign_holders(session).items():
        number = session.ports[port]
        who = ", ".join(h.describe() for h in procs) or "another program"
        output.warn(
            "ports",
            f"{port} port {number} is held by {who}; its window will fail to bind. "
            f"Stop it (see: {output.on_host(f'lsof -i :{number}')}) or give it new ports with: "
            + output.command("remove", session.name)
            + " and add again",
        )


def orphans(session: Session) -> list[ports_.Holder]:
    """Processes working in the worktree that hold one of the session's ports."""
    found: dict[int, ports_.Holder] = {}
    for procs in ports_.holders(session.ports.values()).values():
        for h in procs:
            if works_in(session, h.cwd):
                found.setdefault(h.pid, h)
    return list(found.values())


def stop_orphans(session: Session, settle: float = 0.0) -> list[ports_.Holder]:
    """End processes left in the worktree that still hold the session's ports; `settle`:
    first give them that long to end on their own (their tmux session was just killed:
    the hang-up reaches them a moment later)."""
    found = orphans(session)
    deadline = time.monotonic() + settle
    while found and time.monotonic() < deadline:
        time.sleep(0.05)
        found = orphans(session)
    if found:
        ports_.stop(h.pid for h in found)
    return found


def exclude_own(project: Project) -> links.Outcome | None:
    """The tool's links and Claude's local settings out of `git status` in every worktree
    (one block in info/exclude); with no session left, the tool's lines there go."""
    from . import claude, links

    with locked_repo(project):
        paths = [lk.path for lk in project.settings.links] + [claude.LOCAL_SETTINGS]
        return links.exclude(project.common_dir, paths if load(project) else [])
