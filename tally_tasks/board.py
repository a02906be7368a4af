"""The dashboard's model: the rows `list --json` gives (`status.rows`), here and on every
host, kept fresh without re-running git on every tick, in the order that puts the sessions
that need the user first. No Textual here: the view (dashboard.py) only draws `lines()`.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import panes, status, tmux
from . import ports as ports_
from .errors import TallyError
from .session import Project

GIT_EVERY = 10.0  # seconds between two `git status` of an unchanged worktree
HOLDERS_EVERY = 5.0  # seconds the holders of an unchanged set of listening ports are kept
LOCAL = "local"
BROKEN = ("exited", "missing", "down", "other")  # a window's state that needs the user

Answer = list[dict[str, Any]] | str | None  # rows, why there are none, or not asked yet


@dataclass
class Line:
    """One row of the table: a session, or a host that did not answer (`row` None)."""

    key: str  # "host/name"; "host/" for a host's own line
    host: str
    name: str
    row: dict[str, Any] | None
    state: str  # the agent's state, "" when unknown
    rank: tuple[Any, ...]
    cells: tuple[str, ...]


def _epoch(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return status.epoch(value) if isinstance(value, str) and value else None


def agent(row: Mapping[str, Any]) -> tuple[str, float | None]:
    """(state, since as epoch seconds) of the session's agent; ("", None) when unknown."""
    info = row.get("agent")
    if not isinstance(info, Mapping):
        return "", None
    state = info.get("state")
    return (state if isinstance(state, str) else ""), _epoch(info.get("since"))


def agent_cell(row: Mapping[str, Any], now: float) -> str:
    """``waiting 3m``, ``working``, ``stopped`` (no tmux session), ``adding…``."""
    if row.get("adding"):
        return "adding…"
    if row.get("state") == "creating":
        return "unfinished"
    if not row.get("running"):
        return "stopped"
    state, since = agent(row)
    if not state:
        return "running"
    return state if since is None else f"{state} {panes.age(since, now)}"


def broken(row: Mapping[str, Any]) -> list[str]:
    """The session's windows that need the user (a server down or exited, the agent
    exited, a window missing), from `list --json`'s `windows`; none when not running."""
    if not row.get("running"):
        return []
    windows = row.get("windows") or {}
    return [w for w, state in windows.items() if state in BROKEN]


def died(row: Mapping[str, Any]) -> list[str]:
    """The broken windows whose program is gone (exited, missing); a window whose program
    runs but does not answer (down, other) is not among them."""
    windows = row.get("windows") or {}
    return [w for w in broken(row) if windows[w] in ("exited", "missing")]


def ports_cell(row: Mapping[str, Any]) -> str:
    """``8001✓ 5001✗``: each port, up (✓), down (✗) or held by another program (!); no
    marks for a session that is not running."""
    listening = row.get("listening") or {}
    foreign = set(row.get("foreign") or ())
    cells = []
    for key, number in row.items():
        if not key.endswith("_port"):
            continue
        port = key[:-5]
        mark = "!" if port in foreign else "✓" if listening.get(port) else "✗"
        mark = mark if row.get("running") else ""
        cells.append(f"{number}{mark}")
    return " ".join(cells)


def git_cell(row: Mapping[str, Any]) -> str:
    """``↑3 ↓0 *`` (ahead, behind, * = uncommitted changes); ``…`` until git was asked."""
    if "dirty" not in row:
        return "…"
    ahead, behind, dirty = row.get("ahead"), row.get("behind"), row.get("dirty")
    text = f"↑{'?' if ahead is None else ahead} ↓{'?' if behind is None else behind}"
    return text + (" *" if dirty else "" if dirty is False else " ?")


def rank(row: Mapping[str, Any]) -> tuple[Any, ...]:
    """Who needs the user first: waiting agents (longest wait first), then broken
    sessions (an agent that exited, a server down), idle, working, stopped."""
    state, since = agent(row)
    if not row.get("running"):
        return (4, 0.0)
    if state == "waiting":
        return (0, since if since is not None else math.inf)
    if state == "exited" or broken(row):
        return (1, 0.0)
    if state == "idle":
        return (2, 0.0)
    return (3, 0.0)


COLUMNS = ("HOST", "NAME", "BRANCH", "AGENT", "PORTS", "GIT", "AGE")


def lines(answers: Mapping[str, Answer], query: str = "", now: float | None = None) -> list[Line]:
    """The table: every host's sessions (and a line for each host that did not answer),
    filtered by `query` (a part of the host, name or branch), most urgent first."""
    now = time.time() if now is None else now
    result = []
    for host, answer in answers.items():
        if not isinstance(answer, list):
            text = "asking…" if answer is None else "unreachable"  # why: in the preview
            if query and query not in host:
                continue
            cells = (host, "", "", text, "", "", "")
            result.append(Line(f"{host}/", host, "", None, "", (5, 0.0), cells))
            continue
        for row in answer:
            name, branch = str(row.get("name", "")), str(row.get("branch", ""))
            if query and not any(query in t for t in (host, name, branch)):
                continue
            cells = (
                host,
                name,
                branch,
                agent_cell(row, now),
                ports_cell(row),
                git_cell(row) if host == LOCAL else "",
                status.age(row.get("created"), now),
            )
            state = agent(row)[0] if row.get("running") else ""
            result.append(Line(f"{host}/{name}", host, name, row, state, rank(row), cells))
    return sorted(result, key=lambda ln: (ln.rank, ln.host != LOCAL, ln.host, ln.name))


def _gitdir(worktree: str) -> str | None:
    """The worktree's own git folder (what its `.git` file names)."""
    try:
        with open(os.path.join(worktree, ".git")) as f:
            text = f.read()
    except OSError:
        return None
    return text.split(":", 1)[1].strip() if text.startswith("gitdir:") else None


def _stamp(*paths: str) -> tuple[int, ...]:
    stamps = []
    for p in paths:
        try:
            stamps.append(os.stat(p).st_mtime_ns)
        except OSError:
            stamps.append(0)
    return tuple(stamps)


class Remembered:
    """`ports.holders` for a caller that asks every second: the answer is kept while the
    same ports listen, for at most `every` seconds (a pass over /proc is most of a
    refresh's cost). A port that starts or stops listening is asked about at once."""

    def __init__(
        self, every: float = HOLDERS_EVERY, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.every, self.clock = every, clock
        self._up: set[int] | None = None
        self._held: dict[int, list[ports_.Holder]] = {}
        self._at = -math.inf

    def __call__(self, up: set[int]) -> dict[int, list[ports_.Holder]]:
        now = self.clock()
        if up != self._up or now - self._at >= self.every:
            self._up, self._held, self._at = set(up), ports_.holders(up), now
        return self._held


def _marks(
    project: Project, rows: list[dict[str, Any]], gitdirs: dict[str, str]
) -> dict[str, tuple[int, ...]]:
    """name -> the times its index and HEAD (and the main checkout's HEAD, and the last
    fetch) last moved: a commit, a checkout, `git add`, a fetch change them; an edit of a
    file does not (hence `git status` every `git_every` seconds).
    `gitdirs` remembers each worktree's git folder once found."""
    common = str(project.common_dir)
    main = _stamp(
        *(os.path.join(common, *p) for p in (("logs", "HEAD"), ("HEAD",), ("FETCH_HEAD",)))
    )
    result = {}
    for row in rows:
        gitdir = gitdirs.get(row["worktree"]) or _gitdir(row["worktree"])
        if gitdir:
            gitdirs[row["worktree"]] = gitdir
        own = (
            _stamp(os.path.join(gitdir, "index"), os.path.join(gitdir, "logs", "HEAD"))
            if gitdir
            else ()
        )
        result[row["name"]] = main + own
    return result


@dataclass
class Board:
    """The local sessions (`status.rows`), refreshed on demand; hosts' answers as they come."""

    project: Project | None
    srv: tmux.TmuxServer
    hosts: tuple[str, ...] = ()
    git_every: float = GIT_EVERY
    answers: dict[str, Answer] = field(default_factory=dict)
    _git: dict[str, dict[str, Any]] = field(default_factory=dict)
    _marks: dict[str, tuple[int, ...]] = field(default_factory=dict)
    _git_at: float = -math.inf
    _states: dict[str, str] = field(default_factory=dict)
    _holders: Remembered = field(default_factory=Remembered)
    _gitdirs: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.answers = {LOCAL: None, **{h: None for h in self.hosts}}

    def refresh(self) -> None:
        """Read the local sessions again: tmux and ports every time, git only for worktrees
        whose index or HEAD moved (and all of them every `git_every` seconds)."""
        if self.project is None:
            self.answers[LOCAL] = "not in a git checkout of a project"
            return
        try:
            rows = status.rows(self.project, self.srv, git_state=False, holders=self._holders)
        except (TallyError, OSError) as e:  # the line says so; the next refresh tries again
            self.answers[LOCAL] = str(e)
            return
        self._add_git(self.project, rows)
        self.answers[LOCAL] = rows

    def _add_git(self, project: Project, rows: list[dict[str, Any]]) -> None:
        now = time.monotonic()
        due = now - self._git_at >= self.git_every
        marks = _marks(project, rows, self._gitdirs)
        moved = {
            r["name"]: project.session(r["name"], r)
            for r in rows
            if marks[r["name"]] != self._marks.get(r["name"])
        }
        if moved:  # a commit, a checkout, a fetch: everything git says of them
            self._git.update(status.git_of(project, moved))
            self._marks.update({n: marks[n] for n in moved})
        if due:  # an edited file moves nothing git keeps: `git status` of the others
            rest = {
                r["name"]: project.session(r["name"], r) for r in rows if r["name"] not in moved
            }
            for name, dirt in status.dirty_of(project, rest).items():
                self._git.setdefault(name, {})["dirty"] = dirt
            self._git_at = now
        for row in rows:
            row.update(self._git.get(row["name"], {}))

    def warm(self) -> threading.Thread:
        """Begin the first refresh in a thread (it runs while Textual is imported)."""
        thread = threading.Thread(target=self.refresh, daemon=True)
        thread.start()
        return thread

    def answer(self, host: str, answer: Answer) -> None:
        self.answers[host] = answer

    def lines(self, query: str = "") -> list[Line]:
        return lines(self.answers, query)

    def started_waiting(self, current: list[Line]) -> list[Line]:
        """The sessions whose agent has started waiting since the last call (none the first
        time, nor a session first seen waiting: a wait the user finds on opening the
        dashboard is not news)."""
        fresh = [
            ln
            for ln in current
            if ln.row is not None
            and ln.state == "waiting"
            and self._states.get(ln.key, "waiting") != "waiting"
        ]
        self._states = {ln.key: ln.state for ln in current if ln.row is not None}
        return fresh
