"""What `list` shows: sessions with their git and port state, and stale state around them.

Everything is gathered at once: tmux state from one ``list-panes`` call, listening ports
from one read of /proc/net, one ``git status`` per worktree run in parallel, and
ahead/behind from one ``for-each-ref`` (one ``rev-list`` per branch on git < 2.41), and
for each branch ahead of the main branch whether its content is in it anyway (squashed or
rebased on a forge: one ``git merge-tree`` each, see merged.py).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from collections.abc import Callable, Collection, Mapping
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import live as live_
from . import panes as panes_
from . import ports as ports_
from . import registry, tmux, worktree
from .errors import TallyError
from .repo import Repo, main_branch
from .session import Project, Session
from .sessions import CREATING, adder, foreign_tmux, load, works_in

if TYPE_CHECKING:  # with the git state only (list --git, --json)
    from concurrent.futures import ThreadPoolExecutor

    from . import merged


def _git(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # errors="replace": a file name that is not UTF-8 must not end the listing
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, errors="replace")


def dirty(path: Path, ours: set[str]) -> bool | None:
    """True when the worktree has the user's uncommitted or untracked changes; None if gone."""
    if not path.is_dir():
        return None
    try:
        return bool(worktree.user_changes(path, ours))  # what remove would refuse over
    except TallyError:
        return None


def ahead_behind(main: Path, branches: list[str], head: str) -> dict[str, tuple[int, int]]:
    """branch -> (commits ahead of, behind) the main branch `head`."""
    proc = _git(
        main, "for-each-ref", f"--format=%(refname:short)%00%(ahead-behind:{head})", "refs/heads/"
    )
    result: dict[str, tuple[int, int]] = {}
    if proc.returncode == 0 and "%(" not in proc.stdout:
        for line in proc.stdout.splitlines():
            name, _, ab = line.partition("\0")
            if name in branches and ab:
                a, b = ab.split()
                result[name] = (int(a), int(b))
        return result

    def one(branch: str) -> tuple[str, tuple[int, int] | None]:
        p = _git(main, "rev-list", "--left-right", "--count", f"refs/heads/{branch}...{head}")
        if p.returncode != 0:
            return branch, None
        a, b = p.stdout.split()
        return branch, (int(a), int(b))

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=8) as pool:
        for branch, ab_ in pool.map(one, branches):
            if ab_ is not None:
                result[branch] = ab_
    return result


def _landed(
    project: Project,
    repo: Repo,
    ab: Mapping[str, tuple[int, int]],
    into: list[merged.Target],
    pool: ThreadPoolExecutor,
) -> dict[str, str | None]:
    """branch -> how its content is in the main branch (merged, rebased, squashed), or None.
    Only a branch with commits of its own needs asking git; one that never moved since it
    was made has nothing to merge."""
    from . import merged

    found: dict[str, str | None] = {}
    ahead = [b for b, (a, _) in ab.items() if a > 0]
    for branch, (a, _) in ab.items():
        if a == 0 and not merged.untouched(project.common_dir, branch):
            found[branch] = "merged"
    answers = pool.map(lambda b: merged.landed(repo, b, into), ahead)
    for branch, how in zip(ahead, answers, strict=True):
        found[branch] = how.how if how else None
    return found


# what `add` writes (time.strftime's %Y-%m-%dT%H:%M:%S%z), read without strptime, whose
# import costs every `list` a few milliseconds; any other shape goes to strptime
_WRITTEN = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)([+-])(\d\d)([0-5]\d)")


def epoch(created: str) -> float | None:
    """Seconds since the epoch of an ISO time; one without an offset is local time."""
    m = _WRITTEN.fullmatch(created)
    if m:
        y, mo, d, h, mi, s, sign, hours, minutes = m.groups()
        offset = timedelta(hours=int(hours), minutes=int(minutes)) * (-1 if sign == "-" else 1)
        try:
            when = datetime(int(y), int(mo), int(d), int(h), int(mi), int(s))
            return when.replace(tzinfo=timezone(offset)).timestamp()
        except ValueError:
            pass  # strptime says the same, below
    for text, fmt in (
        (created, "%Y-%m-%dT%H:%M:%S%z"),  # what `add` writes: 2024-05-01T10:00:00+0200
        (created[:19], "%Y-%m-%dT%H:%M:%S"),
    ):
        try:
            return datetime.strptime(text, fmt).timestamp()
        except ValueError:
            continue
    return None


def age(created: object, now: float | None = None) -> str:
    """``5m``, ``3h``, ``2d``: how long ago `created` was; ``-`` when unknown (or not a
    time string: another tool's registry may hold anything under its extra keys)."""
    then = epoch(created) if isinstance(created, str) and created else None
    return "-" if then is None else panes_.age(then, now)


Panes = dict[str, set[str]]
Holders = Callable[[set[int]], dict[int, list[ports_.Holder]]]


def dirty_of(project: Project, sessions: Mapping[str, Session]) -> dict[str, bool | None]:
    """name -> `dirty` of its worktree, one ``git status`` each, in parallel."""
    if not sessions:
        return {}
    from concurrent.futures import ThreadPoolExecutor

    ours = project.own_paths()
    with ThreadPoolExecutor(max_workers=min(8, len(sessions))) as pool:
        found = pool.map(lambda s: dirty(s.worktree, ours), sessions.values())
        return dict(zip(sessions, found, strict=True))


def git_of(
    project: Project, sessions: Mapping[str, Session], pull_requests: bool = False
) -> dict[str, dict[str, Any]]:
    """name -> {dirty, ahead, behind, merged} (None where unknown), and `pr` when
    `pull_requests` and gh knows one; git run in parallel."""
    if not sessions:
        return {}
    from concurrent.futures import ThreadPoolExecutor

    # only here: a list without the git state never reads the pull requests' cache
    from . import forge, merged

    repo = Repo(project.main)
    head = main_branch(repo, project.settings.land_into)
    branches = [s.branch for s in sessions.values()]
    with ThreadPoolExecutor(max_workers=min(8, len(sessions) + 1)) as pool:
        pr_future = pool.submit(forge.pull_requests, project) if pull_requests else None
        ab_future = pool.submit(ahead_behind, project.main, branches, head)
        into_future = pool.submit(merged.targets, repo, head)
        dirt = dirty_of(project, sessions)
        ab = ab_future.result()
        landed = _landed(project, repo, ab, into_future.result(), pool)
        prs = pr_future.result() if pr_future else {}
    result: dict[str, dict[str, Any]] = {}
    for n, session in sessions.items():
        a, b = ab.get(session.branch, (None, None))
        found: dict[str, Any] = {
            "dirty": dirt.get(n),
            "ahead": a,
            "behind": b,
            "merged": landed.get(session.branch),
        }
        if session.branch in prs:
            found["pr"] = prs[session.branch]
        result[n] = found
    return result


def rows(
    project: Project,
    srv: tmux.TmuxServer,
    git_state: bool = True,
    snapped: Callable[[], panes_.Snapshot] | None = None,
    pull_requests: bool = False,
    holders: Holders = ports_.holders,
    entries: registry.Registry | None = None,
    made: Mapping[str, Session] | None = None,
) -> list[dict[str, Any]]:
    """One dict per session, with `dirty`, `ahead`, `behind`, `merged` unless `git_state`
    is False, and then `pr` (a branch's pull request, when gh knows one) with `pull_requests`.

    `snapped` gives the caller's pane snapshot (`panes.snapshot_begun(srv)`: tmux answers
    while the ports are read here); `holders` tells who holds the listening ports (a pass
    over /proc: a caller that asks every second may remember its answer, see
    `board.Remembered`); `entries` is `sessions.load(project)` when the caller already has
    it (one read of the registry), and `made` their sessions (`made_of`)."""
    entries = load(project) if entries is None else entries
    if not entries:
        return []
    sessions = made_of(project, entries) if made is None else made
    all_ports = [p for s in sessions.values() for p in s.ports.values()]
    up = ports_.listening(all_ports)
    held = holders(up) if up else {}  # who holds them: one pass over /proc
    snap = panes_.snapshot(srv) if snapped is None else snapped()
    live = snap.paths  # session -> the folders its panes are in
    states = live_.gather(project, sessions, snap, up, held)
    git = git_of(project, sessions, pull_requests) if git_state else {}
    result = []
    for n, session in sessions.items():
        entry = entries[n]
        row: dict[str, Any] = {
            "name": n,
            "branch": session.branch,
            "worktree": str(session.worktree),
            # another checkout's session of the same name is not this one running
            "running": session.tmux_name in live
            and not foreign_tmux(session, live[session.tmux_name]),
            "tmux": session.tmux_name,
        }
        for port, number in session.ports.items():
            row[f"{port}_port"] = number
        # a port that answers is the session's only when its holder works in the worktree
        foreign = [
            port
            for port, number in session.ports.items()
            if number in up and not any(works_in(session, h.cwd) for h in held.get(number, []))
        ]
        listening = {p: n in up and p not in foreign for p, n in session.ports.items()}
        row["listening"] = listening
        if foreign:
            row["foreign"] = foreign  # ports held by another program
        state = states[n]
        row["status"] = state.status()
        row["agent"] = _agent(state.agent)
        row["windows"] = state.windows
        row.update(git.get(n, {}))
        row["created"] = entry.get("created")
        row["worktree_exists"] = session.worktree.is_dir()
        if entry.get("state") == CREATING:
            row["state"] = CREATING
            pid = adder(entry)
            if pid is not None:
                row["adding"] = pid  # an add is making it right now
        result.append(row)
    return result


def made_of(project: Project, entries: registry.Registry) -> dict[str, Session]:
    """Each entry's session, as recorded (`Project.session`)."""
    return {n: project.session(n, e) for n, e in entries.items()}


def _agent(found: dict[str, Any] | None) -> dict[str, Any] | None:
    """The agent for --json: state, since (ISO time), reason, Claude's session id."""
    if found is None:
        return None
    since = found.get("since")
    when = (
        datetime.fromtimestamp(since).astimezone().isoformat(timespec="seconds") if since else None
    )
    return {
        "state": found["state"],
        "since": when or None,
        "reason": found.get("reason") or None,
        "session_id": found.get("session_id"),
    }


def stale(
    project: Project,
    srv: tmux.TmuxServer,
    entries: registry.Registry,
    panes: Panes | None = None,
    checked: Collection[str] = (),
    listed: Callable[[], list[worktree.Worktree]] | None = None,
    made: Mapping[str, Session] | None = None,
) -> list[str]:
    """Plain-words reports of state that does not add up, each with the command that fixes it
    (`checked`: sessions whose missing worktree was reported already, by doctor; `listed`:
    git's worktree list, begun already; `made`: the entries' sessions, `made_of`)."""
    from . import output  # local: keeps this module's import light for `rows`

    notes = []
    made = made_of(project, entries) if made is None else made
    registered = {s.worktree for s in made.values()}
    for n, e in entries.items():
        s = made[n]
        if e.get("state") == CREATING and adder(e) is not None:
            continue  # being made right now: nothing stale about it
        if e.get("state") == CREATING:
            notes.append(
                f"session {n} is unfinished (an add was stopped, or only some steps ran); "
                f"finish it with: {output.command('add', n)}, or drop it with: "
                + output.command("remove", n)
            )
        elif not s.worktree.is_dir() and n not in checked:
            notes.append(
                f"session {n}: worktree {s.worktree} is gone; drop the entry with: "
                + output.command("remove", n)
            )
    prefix = f"{project.name}-"
    ours = {str(p) for p in registered}  # folders our worktrees are (or were) in
    try:
        known = listed() if listed else worktree.listing(Repo(project.main))
    except TallyError:
        known = []
    for wt in known:
        path = wt.path
        if path == project.main:
            continue
        ours.add(str(path))
        if path in registered:
            continue
        if path.parent == project.worktrees_dir and path.name.startswith(prefix):
            branch = wt.branch or ""
            adopt = (
                "adopt it with " + output.command("add", branch) + ", or "
                if branch and project.new_session(branch).worktree == path
                else ""
            )
            notes.append(
                f"worktree {path} is not in {project.registry_path.name}; {adopt}"
                "remove it with: " + output.on_host(f"git worktree remove {shlex.quote(str(path))}")
            )
    tmux_names = {s.tmux_name for s in made.values()}
    tprefix = project.tmux_name("")
    base = str(project.worktrees_dir / prefix)

    def in_ours(pane: str) -> bool:
        # `Dev/tally-mobile` may be another repository with a tmux session `tally-mobile`:
        # only a worktree of ours, or a folder of ours deleted since, counts
        pane = pane.removesuffix(" (deleted)")
        if not pane.startswith(base):
            return False
        return not os.path.exists(pane) or any(
            pane == p or pane.startswith(p + os.sep) for p in ours
        )

    for name, paths in (tmux.pane_paths(srv) if panes is None else panes).items():
        # another project's sessions can share the prefix: only those working in our folders
        if name in tmux_names or not name.startswith(tprefix):
            continue
        if any(in_ours(p) for p in paths):
            notes.append(
                f"tmux session {name} has no registry entry; end it with: "
                + output.on_host(f"tmux kill-session -t ={name}")
            )
    return notes
