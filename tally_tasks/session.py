"""What a session is: its name rules, its derived names and paths, its placeholders."""

from __future__ import annotations

import functools
import re
import shlex
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from . import agent
from .config import PLACEHOLDER, Settings, Window, explain_file, settings_from
from .errors import TallyError
from .registry import Entry, name_problem, ports_of
from .repo import branch_name_ok, find_main, here


def slugify(name: str) -> str:
    """``feature/auth`` -> ``feature-auth``: safe for folder and tmux session names."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", name)


def check_name(name: str) -> None:
    """Refuse anything that is not a branch name a person would type."""
    problem = name_problem(name)
    if problem:
        raise TallyError(problem)
    shown = repr(name) if len(name) <= 60 else repr(name[:57] + "...")
    if not branch_name_ok(name):
        raise TallyError(f"session name {shown} is not a valid git branch name")


# Words that run the command after them: `exec claude`, `env A=1 claude`, `nohup npm ...`.
_WRAPPERS = {"exec", "env", "command", "nohup", "nice", "time", "builtin"}
_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=.*", re.S)


def commands(line: str) -> list[str]:
    """The commands a shell line runs, as written, in order: ``workon x && (cd y && claude)``
    -> [workon, cd, claude]. A reading of the words (nothing expanded): wrappers such as
    ``exec``/``env`` and ``NAME=value`` assignments are looked through."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    found: list[str] = []
    first, target = True, False
    try:
        for word in lexer:
            if word and all(c in "();<>|&" for c in word) and ("<" in word or ">" in word):
                target = True  # a redirection: the next word is a file
            elif word and all(c in "();<>|&" for c in word):
                first = True  # an operator: a new command starts after it
            elif target:
                target = False
            elif first and not (word in _WRAPPERS or _ASSIGNMENT.fullmatch(word)):
                if word not in found:
                    found.append(word)
                first = False
    except ValueError:  # an unclosed quote: what was read so far
        pass
    return found


def programs(line: str) -> set[str]:
    """The programs a shell line runs, by base name (``~/.claude/local/claude`` -> claude)."""
    return {word.rsplit("/", 1)[-1] for word in commands(line)}


class Raw(str):
    """A placeholder value that is shell words already (``--resume <id>``): not quoted."""


def render(
    template: str,
    values: Mapping[str, str | int],
    quote: Callable[[str], str] = shlex.quote,
) -> str:
    """Fill ``{placeholders}``; every string value is shell-quoted (`quote`: as another
    shell quotes, fish), others (numbers,
    `Raw` words) left as written.

    Unknown ``{words}`` stay as they are, so shell and awk braces need no escaping (the
    settings refuse those that look like a mistyped placeholder); ``${name}`` is the shell's.
    """

    def sub(m: re.Match[str]) -> str:
        key = m.group(1)
        if key not in values:
            return m.group(0)
        value = values[key]
        return str(value) if isinstance(value, (int, Raw)) else quote(value)

    return PLACEHOLDER.sub(sub, template)


def url_port(name: str, ports: Mapping[str, int], port: str = "") -> tuple[str, int]:
    """(name, number) of session `name`'s port for its URL: `port`, else frontend, else
    the first."""
    if not ports:
        raise TallyError(f"session {name} has no ports")
    which = port or ("frontend" if "frontend" in ports else next(iter(ports)))
    if which not in ports:
        raise TallyError(f"session {name} has no {which} port (it has: {', '.join(ports)})")
    return which, ports[which]


class Session(NamedTuple):
    """One session: its name, branch, worktree, tmux session and ports."""

    name: str
    branch: str
    worktree: Path
    tmux_name: str
    ports: dict[str, int]

    @property
    def slug(self) -> str:
        return slugify(self.name)

    def values(self, project: Project) -> dict[str, str | int]:
        """The placeholders: config.PLACEHOLDERS and {<port>_port} for each port."""
        vals: dict[str, str | int] = {
            "name": self.name,
            "slug": self.slug,
            "project": project.name,
            "session": self.tmux_name,
            "worktree": str(self.worktree),
            "branch": self.branch,
            "main": str(project.main),
            # the recorded Claude conversation of this session (agent.py), or --continue
            "claude_resume": Raw(
                agent.resume_args(agent.read(agent.state_path(project.common_dir, self.slug)))
            ),
        }
        for port, number in self.ports.items():
            vals[f"{port}_port"] = number
        return vals

    def url(self, port: str = "") -> str:
        """``http://localhost:PORT/`` of `port` (default: frontend, else the first port)."""
        return f"http://localhost:{url_port(self.name, self.ports, port)[1]}/"

    def env(self) -> dict[str, str]:
        """TALLY_SESSION and TALLY_<PORT>_PORT for windows, hooks and the agent."""
        env = {"TALLY_SESSION": self.name}
        for port, number in self.ports.items():
            env[f"TALLY_{port.upper()}_PORT"] = str(number)
        return env


class Project(NamedTuple):
    """The main checkout, its git common dir and its settings."""

    main: Path
    common_dir: Path
    settings: Settings

    @property
    def name(self) -> str:
        return self.settings.project or self.main.name

    @property
    def registry_path(self) -> Path:
        return self.main / Path(self.settings.registry).expanduser()

    @property
    def lock_path(self) -> Path:
        return self.common_dir / "tally-sessions.lock"

    @property
    def worktrees_dir(self) -> Path:
        if not self.settings.worktrees:
            return self.main.parent
        # real path: `../trees` must not stay in the registry, and Claude Code keys
        # ~/.claude.json by the real path it runs in
        return (self.main / Path(self.settings.worktrees).expanduser()).resolve()

    def tmux_name(self, name: str) -> str:
        return f"{slugify(self.name)}-{slugify(name)}"

    def new_session(self, name: str) -> Session:
        slug = slugify(name)
        return Session(
            name=name,
            branch=name,
            worktree=self.worktrees_dir / f"{self.name}-{slug}",
            tmux_name=self.tmux_name(name),
            ports={},
        )

    def session(self, name: str, entry: Entry) -> Session:
        """The session as recorded (the registry wins over derived paths)."""
        recorded = entry.get("worktree")
        return Session(
            name=name,
            branch=entry.get("branch") or name,  # a new session's branch is its name
            worktree=Path(recorded) if recorded else self.new_session(name).worktree,
            tmux_name=self.tmux_name(name),
            ports=ports_of(entry),
        )

    def own_paths(self) -> set[str]:
        """Paths in a worktree that the tool puts there (not the user's work)."""
        paths = {link.path for link in self.settings.links} | set(self.settings.copies)
        paths.add(".claude/settings.local.json")
        return paths


def window_ports(windows: Iterable[Window], ports: dict[str, int]) -> dict[str, list[int]]:
    """Window name -> the session's ports it serves: those its command (or resume command)
    names (as `render` fills them: ``${backend_port}`` is the shell's). A port more than
    one window names (a frontend told where the backend is) is served by the window of
    its name (``backend_port``: the backend window) when that one names it, else by the
    first naming it: the others are not waited for on it, nor is its holder stopped when
    they restart."""
    windows = tuple(windows)
    owner = port_windows(windows, frozenset(ports))
    return {
        win.name: sorted(ports[p] for p, o in owner.items() if o == win.name) for win in windows
    }


@functools.lru_cache(maxsize=16)
def port_windows(windows: tuple[Window, ...], names: frozenset[str]) -> dict[str, str]:
    """Port name -> the window that serves it, among `names` (`window_ports`' rule): the
    same for every session with those port names, so worked out once for them (`list`
    asks it for every session). Not to be changed by the caller."""
    named: dict[str, set[str]] = {}
    for win in windows:
        words = PLACEHOLDER.findall(win.cmd + " " + win.resume_cmd)
        named[win.name] = {w.removesuffix("_port") for w in words if w.endswith("_port")}
    owner: dict[str, str] = {}
    for win in windows:
        for port in named[win.name] & set(names):
            if port in named.get(port, set()):
                owner[port] = port  # the window of the port's name names it
            else:
                owner.setdefault(port, win.name)
    return owner


def find_project(raw_settings: Callable[[Path], Any]) -> Project:
    """The main repo around the current folder, with the `tally` settings that
    `raw_settings(main checkout)` gives (invoke's merged config, or the quick path's)."""
    main, common = find_main(here())
    try:
        settings = settings_from(raw_settings(main))
    except TallyError as e:  # name the file when the bad value is in it
        raise TallyError(
            explain_file(main)
            or f"{e} (set by an INVOKE_TALLY_... variable or another invoke config file)"
        ) from None
    return Project(main=main, common_dir=common, settings=settings)
