"""The `ports` step: record the session and give it ports nobody else holds.

It opens the session: in an `add` it comes first, creates (or claims) the registry entry
and gives the other steps the session with its ports.
"""

from __future__ import annotations

import os
import time

from .. import output, registry, sessions
from .. import ports as ports_
from ..errors import TallyError
from ..session import Project, Session, check_name
from .base import Checked, Context, Made, Report, nothing_to_fix

name = "ports"
required = True
opens = True  # makes the session's entry: first in tally.add_steps


def assign(
    project: Project, name: str, create: bool = False, claim: bool = False
) -> tuple[Session, bool]:
    """Give the session its ports (creating its registry entry when `create`); for `add`
    (`claim`), also decide under the lock whether this run owns the session: a new entry,
    or an unfinished one whose adder is gone. Returns the session and whether this run
    created its entry."""
    if not claim:
        check_name(name)  # add checked it first
    bases = project.settings.ports
    created = False
    with sessions.editing(project) as entries:
        entry = entries.get(name)
        if entry is None:
            if not create:
                raise TallyError(
                    f"no session named {name!r}; create it with: " + output.command("add", name)
                )
            sessions.check_slug(project, entries, name)
            fresh = project.new_session(name)
            entry = {"worktree": str(fresh.worktree), "branch": fresh.branch}
            entry["created"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
            entries[name] = entry
            created = True
        elif claim:
            sessions.check_claim(name, entry, project.new_session(name).worktree, project.main)
        if claim:  # unfinished until add's last step: a killed add is seen as such
            entry["state"] = sessions.CREATING
            entry["pid"] = os.getpid()
            entry["pid_start"] = ports_.process_start(os.getpid())
        have = registry.ports_of(entry)
        found = ports_.allocate(
            bases, {k: v for k, v in have.items() if k in bases}, _taken(entries, name)
        )
        # the old script's key order: ports, worktree, branch; then our extra keys
        ordered = {f"{port}_port": number for port, number in found.items()}
        ordered.update({k: v for k, v in entry.items() if k not in ordered})
        entries[name] = ordered
        session = project.session(name, ordered)
    output.step("ports", _shown(found))
    return session, created


def _taken(entries: registry.Registry, name: str) -> set[int]:
    return {
        p for other, e in entries.items() if other != name for p in registry.ports_of(e).values()
    }


def _shown(found: dict[str, int]) -> str:
    return " · ".join(f"{p} {n}" for p, n in found.items()) or "none configured"


def hold(ctx: Context) -> Made | None:
    """An entry there already (unfinished) is not this run's to drop."""
    return None if ctx.session.name in sessions.load(ctx.project) else Made("registry entry")


def run(ctx: Context) -> Made | None:
    ctx.session, created = assign(ctx.project, ctx.session.name, create=True, claim=ctx.adding)
    return Made("registry entry") if created else None


def undo(ctx: Context, made: Made) -> None:
    """Drop the entry while it is this run's: claimed by this process, not finished (an
    add that lost the race for the name leaves the winner's alone)."""
    with sessions.editing(ctx.project) as entries:
        entry = entries.get(ctx.session.name)
        if entry is not None and entry.get("pid") == os.getpid():
            del entries[ctx.session.name]


def plan(ctx: Context) -> list[str]:
    """The ports `assign` would give (it keeps those the session has)."""
    project, session = ctx.project, ctx.session
    entries = sessions.load(project)
    have = {k: v for k, v in session.ports.items() if k in project.settings.ports}
    found = ports_.allocate(project.settings.ports, have, _taken(entries, session.name))
    ctx.session = Session(session.name, session.branch, session.worktree, session.tmux_name, found)
    return [_shown(found)]


def check(ctx: Context, report: Report) -> Checked:
    """Each port free or held by this session (else who holds it: never stopped here)."""
    session = ctx.session
    for port, procs in sessions.foreign_holders(session).items():
        number = session.ports[port]
        who = ", ".join(h.describe() for h in procs) or "a process we cannot see"
        report.bad(
            session.name,
            f"{port} port {number} is held by {who}, not by this session "
            f"({output.on_host(f'lsof -i :{number}')}); stop it yourself, doctor never kills it",
        )
    return Checked()


fix = nothing_to_fix
