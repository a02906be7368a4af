"""`list` on this machine: the sessions as a table or as JSON, with the stale-entry notes.

Shared by the task (tasks.py) and tally-session's quick path (quick.py), which runs it
without invoke: this module imports only what listing needs.
"""

from __future__ import annotations

import json as _json
from collections.abc import Callable
from typing import Any

from . import output, sessions, worktree
from . import panes as panes_
from . import tmux as tmux_
from .errors import TallyError
from .repo import Repo
from .session import Project


def show(project: Project, json: bool = False, git: bool = False, brief: bool = False) -> None:
    """Print the project's sessions (`json`: a JSON list, with the git state unless
    `brief`; `git`: the table with the git state)."""
    srv = tmux_.server(project.settings.tmux_socket)
    with_git = git or (json and not brief)
    # tmux lists the panes (once, for the rows and the stale check) while the status
    # module is imported and the registry and the ports are read; then git lists the
    # worktrees (for the stale check) while the rows are made: each answers while this
    # process works, and not at once (on two cores, the two slowed each other and us)
    snapped = panes_.snapshot_begun(srv)
    from . import status

    entries = sessions.load(project)  # once, too
    made = status.made_of(project, entries)
    listed: list[Callable[[], list[worktree.Worktree]] | None] = []

    def snapshot() -> panes_.Snapshot:
        snap = snapped()
        try:
            listed.append(worktree.listing_begun(Repo(project.main)))
        except TallyError:
            listed.append(None)
        return snap

    rows = status.rows(
        project,
        srv,
        git_state=with_git,
        snapped=snapshot,
        pull_requests=json,
        entries=entries,
        made=made,
    )
    if json:
        output.data(_json.dumps(rows, indent=2))
    elif not rows:
        output.info("no sessions; create one with: " + output.command("add", "NAME"))
    else:
        output.table(table(rows, with_git))
    paths = snapped().paths  # the snapshot rows read (made once)
    begun = listed[0] if listed else None
    for note in status.stale(project, srv, entries, paths, listed=begun, made=made):
        output.warn("stale", note, to_stderr=json)


def table(rows: list[dict[str, Any]], with_git: bool, host_column: bool = False) -> list[list[str]]:
    """The rows of `status.rows` as the cells of `list`'s table, header first."""
    from . import status

    ports = list(dict.fromkeys(k[:-5] for r in rows for k in r if k.endswith("_port")))
    header = ["HOST"] if host_column else []
    header += ["NAME", "BRANCH", "RUNNING", "STATUS", *[p.upper() for p in ports]]
    if with_git:
        header += ["AHEAD", "BEHIND", "MERGED", "DIRTY"]
    header += ["AGE", "WORKTREE"]
    cells_of = [header]
    for r in rows:
        state = "yes" if r["running"] else "no"
        if r.get("adding"):
            state += " (being added)"
        elif r.get("state") == sessions.CREATING:
            state += " (unfinished)"
        cells = [r["host"]] if host_column else []
        cells += [r["name"], r["branch"], state, r.get("status", "-")]
        for p in ports:
            number = r.get(f"{p}_port")
            up = r.get("listening", {}).get(p)
            mark = " (other)" if p in r.get("foreign", ()) else "" if up else " (down)"
            cells.append("-" if number is None else f"{number}{mark}")
        if with_git:
            dirty = {True: "yes", False: "no", None: "?"}[r.get("dirty")]
            merged = r.get("merged") or ("no" if r.get("ahead") else "-")
            cells += [_num(r.get("ahead")), _num(r.get("behind")), merged, dirty]
        worktree = r["worktree"] + ("" if r.get("worktree_exists", True) else " (missing)")
        cells += [status.age(r.get("created")), worktree]
        cells_of.append(cells)
    return cells_of


def _num(value: int | None) -> str:
    return "?" if value is None else str(value)
