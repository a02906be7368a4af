"""Every setting, declared once, and the checks that turn raw config into `Settings`.

Invoke merges mappings key by key and replaces lists wholesale, so: ``ports`` is a
mapping (a project adds a port, or drops one by setting it to ``null``), while
``windows``, ``links``, ``copies`` and the step lists are lists (a project replaces the
defaults).
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Collection, Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple

from .errors import TallyError

LINK_MODES = ("symlink", "hardlink", "reflink", "copy", "auto")
LAND_METHODS = ("rebase", "squash", "merge")

DEFAULTS: dict[str, Any] = {
    # Project name used in folder and tmux names; empty = the main repo's folder name.
    "project": "",
    # Folder that holds the worktrees; empty = the main repo's parent folder.
    "worktrees": "",
    # Session registry, relative to the main repo (or absolute).
    "registry": ".tally-sessions",
    # Seconds to wait for another tally-session holding the registry lock.
    "lock_timeout": 30.0,
    # Named ports and their bases; each session takes base+k for the lowest free k.
    "ports": {"backend": 8000, "frontend": 5000},
    # Paths shared with the main repo: a path (a symlink) or {path, mode}. `auto` builds a
    # tree of hard links (else a reflink clone, else a symlink with a warning): Vite serves
    # no file behind a symlink leading out of the project.
    "links": [{"path": "frontend/node_modules", "mode": "auto"}, "backend/db.sqlite3"],
    # Paths copied from the main repo, private to each session (mode kept).
    "copies": ["backend/.env", "frontend/.env"],
    # Run in the user's shell before every window command and hook; empty = none.
    "activate": "workon {project}",
    # The tmux windows, in order. `dir` is relative to the worktree.
    "windows": [
        {
            "name": "backend",
            "dir": "backend",
            "cmd": "python manage.py runserver {backend_port}",
            "resume_cmd": "",
        },
        {
            "name": "frontend",
            "dir": "frontend",
            "cmd": "npm run dev -- --port {frontend_port} --strictPort",
            "resume_cmd": "",
        },
        {
            "name": "claude",
            "dir": "",
            "cmd": "claude -n {session}",
            "resume_cmd": "claude {claude_resume} || claude -n {session}",
        },
    ],
    # The steps `session.add` runs, in order: built-in steps (tally_tasks/steps/), and
    # tasks of the project's own Invoke collection (`migrate`, or {task: db.seed, undo: db.drop}).
    "add_steps": ["ports", "worktree", "links", "env", "claude_perms", "tmux"],
    # Tasks of the project's own Invoke collection `session.remove` runs before the
    # worktree goes (e.g. db.drop).
    "remove_steps": [],
    # Git-ignored files (gitignore patterns) that count as your work: `remove` refuses
    # without --force while the worktree has one (the tool's own links and copies aside).
    "protect": ["*.sql", "*.dump", "*.bak", "*.sqlite3"],
    "claude": {
        # Claude Code's config file; CLAUDE_CONFIG_DIR, when set, wins over the default.
        "config": "~/.claude.json",
        # inherit: a worktree is trusted when the main checkout is; never: leave it.
        "trust": "inherit",
        # Seconds after which Claude Code's ~/.claude.json.lock is taken as stale.
        "lock_stale": 10.0,
    },
    # tmux socket name (tmux -L); empty = tmux's default server.
    "tmux_socket": "",
    # Shell commands run in the worktree at these points, with the same placeholders;
    # on_waiting: when a session's agent starts waiting for the user; pre_land: before
    # `session.land` moves the main branch.
    "hooks": {
        "post_add": [],
        "pre_remove": [],
        "post_resume": [],
        "on_waiting": [],
        "pre_land": [],
    },
    # Seconds add/resume/tmux/doctor --fix wait for the windows' servers to answer.
    "ready_timeout": 30.0,
    # When an agent starts waiting (and no client of yours looks at its window): a tmux
    # message in your clients, and the bell in its window.
    "attention": {"message": True, "bell": True},
    "land": {
        # How `session.land` brings the main branch forward: rebase (fast-forward to the
        # rebased branch), squash (one commit), merge (a merge commit).
        "method": "rebase",
        # The branch sessions land in; empty = the one origin's HEAD names, else main or
        # master, else the main checkout's.
        "into": "",
    },
    # Remote dev hosts: name -> {host: user@box, main: ~/Dev/tally, port, key, command, env}.
    "hosts": {},
    # `session.dashboard`: ring the terminal bell once when an agent starts waiting.
    "dashboard": {"bell": True},
}

_WINDOW_NAME = re.compile(r"[A-Za-z_-][A-Za-z0-9_-]*")
_PORT_NAME = re.compile(r"[a-z][a-z0-9_]*")
# Mappings whose keys are names the user chooses; every other mapping in DEFAULTS has a
# fixed set of keys, and a key it lacks is a typo.
_OPEN = ("ports", "hosts")

# ``{name}`` in a command: a placeholder. ``${name}`` is the shell's, never ours.
PLACEHOLDER = re.compile(r"(?<!\$)\{([a-z][a-z0-9_]*)\}")
# The placeholders every session has (session.Session.values), besides {<port>_port}.
PLACEHOLDERS = ("name", "slug", "project", "session", "worktree", "branch", "main", "claude_resume")


class Window(NamedTuple):
    """A tmux window of every session: its name, folder, command and resume command."""

    name: str
    dir: str
    cmd: str
    resume_cmd: str


# the keys of a window entry, whether the record or the defaults gained one
_WINDOW_KEYS = tuple(dict.fromkeys([*Window._fields, *(k for w in DEFAULTS["windows"] for k in w)]))


class Link(NamedTuple):
    """A path shared with the main checkout, and how (`LINK_MODES`)."""

    path: str
    mode: str = "symlink"


class StepSpec(NamedTuple):
    """An entry of add_steps or remove_steps: a built-in step's name or a task of the
    project's Invoke collection (`undo`: the task that takes its work away again)."""

    task: str
    undo: str = ""


class Settings(NamedTuple):
    """The checked `tally` settings (see DEFAULTS for each one's meaning)."""

    project: str = ""
    worktrees: str = ""
    registry: str = ".tally-sessions"
    lock_timeout: float = 30.0
    ports: dict[str, int] = {}  # shared by defaults, never changed: settings_from gives its own
    links: tuple[Link, ...] = ()
    copies: tuple[str, ...] = ()
    activate: str = ""
    windows: tuple[Window, ...] = ()
    add_steps: tuple[StepSpec, ...] = ()
    remove_steps: tuple[StepSpec, ...] = ()
    protect: tuple[str, ...] = ()
    claude_config: str = "~/.claude.json"
    claude_trust: str = "inherit"
    claude_lock_stale: float = 10.0
    tmux_socket: str = ""
    hooks: dict[str, tuple[str, ...]] = {}  # as ports
    land_method: str = "rebase"
    land_into: str = ""
    ready_timeout: float = 30.0
    attention_message: bool = True
    attention_bell: bool = True
    dashboard_bell: bool = True


def plain(value: Any) -> Any:
    """Invoke's DataProxy (and any Mapping) as plain dicts and lists."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def _bad(key: str, expected: str, got: Any) -> TallyError:
    return TallyError(f"config key tally.{key} must be {expected}, got {got!r}")


def _str(raw: Mapping[str, Any], key: str, full: str | None = None) -> str:
    value = raw.get(key, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _bad(full or key, "a string", value)
    return value


def _number(raw: Mapping[str, Any], key: str, full: str) -> float:
    value = raw.get(key)
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < 0
    ):
        raise _bad(full, "a number of seconds", value)
    return float(value)


def _bool(raw: Mapping[str, Any], key: str, full: str) -> bool:
    value = raw.get(key)
    if not isinstance(value, bool):
        raise _bad(full, "true or false", value)
    return value


def did_you_mean(word: str, valid: Collection[str], label: str = "valid") -> str:
    """``; did you mean X?`` for the nearest of `valid`, else the valid names."""
    import difflib  # only when something is wrong

    near = difflib.get_close_matches(word, list(valid), n=1, cutoff=0.6)
    if near:
        return f"; did you mean {near[0]}?"
    names = list(valid)
    more = " …" if len(names) > 12 else ""
    return f"; {label}: " + ", ".join(names[:12]) + more if names else ""


def check_keys(raw: Mapping[Any, Any], valid: Collection[str], where: str = "") -> None:
    """One error for the first key of `raw` (the mapping at ``tally.<where>``) that is not
    in `valid`: a typo (``activte``) would otherwise be ignored without a word."""
    for key in raw:
        if key not in valid:
            full = f"{where}.{key}" if where else str(key)
            raise TallyError(f"config key tally.{full} is unknown{did_you_mean(str(key), valid)}")


def _check_all_keys(raw: Mapping[str, Any]) -> None:
    """Unknown keys at the top and in every mapping of fixed keys, all derived from DEFAULTS
    (a key added there is known here with no other list to keep)."""
    check_keys(raw, DEFAULTS)
    for key, default in DEFAULTS.items():
        value = raw.get(key)
        if isinstance(default, dict) and default and key not in _OPEN:
            if isinstance(value, Mapping):
                check_keys(value, default, key)


def _check_placeholders(
    text: str, key: str, ports: Collection[str], dropped: Collection[str]
) -> None:
    """A ``{word}`` in a command that is no placeholder but looks like one (a typo such as
    ``{backnd_port}``) is an error; other braces (``awk '{print}'``) are the shell's."""
    valid = [*PLACEHOLDERS, *(f"{p}_port" for p in ports)]
    for m in PLACEHOLDER.finditer(text):
        word = m.group(1)
        if word in valid:
            continue
        where = f"config key tally.{key}: unknown placeholder {{{word}}}"
        port = word.removesuffix("_port")
        if word.endswith("_port") and port in dropped:
            raise TallyError(
                f"{where}; tally.ports drops {port} ({port}: null): "
                f"add the port back or change the command"
            )
        import difflib

        near = difflib.get_close_matches(word, valid, n=1, cutoff=0.6)
        if near or word.endswith("_port"):
            hint = (
                f"did you mean {{{near[0]}}}?" if near else "ports: " + (", ".join(ports) or "none")
            )
            raise TallyError(f"{where}; {hint}")


def _rel_path(value: Any, key: str, root_ok: bool = False) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _bad(key, "a relative path", value)
    p = PurePosixPath(value)
    if p.is_absolute() or ".." in p.parts:
        raise _bad(key, "a path inside the repository (no leading / and no ..)", value)
    if str(p) == "." and not root_ok:
        raise _bad(key, "a path below the repository's root, not the root itself", value)
    return str(p)


def _str_list(value: Any, key: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _bad(key, "a list", value)
    return value


def _ports(value: Any) -> dict[str, int]:
    if not isinstance(value, Mapping):
        raise _bad("ports", "a mapping of name: base port", value)
    ports: dict[str, int] = {}
    for name, base in value.items():
        if base is None:  # `frontend: null` drops a default port
            continue
        if not isinstance(name, str) or not _PORT_NAME.fullmatch(name):
            raise _bad(f"ports.{name}", "named with lowercase letters, digits and _", name)
        if isinstance(base, bool) or not isinstance(base, int) or not 1 <= base <= 65535:
            raise _bad(f"ports.{name}", "a port number from 1 to 65535", base)
        ports[name] = base
    if len(set(ports.values())) != len(ports):
        raise _bad("ports", "distinct base ports", value)
    return ports


def _links(value: Any) -> tuple[Link, ...]:
    links = []
    for i, item in enumerate(_str_list(value, "links")):
        if isinstance(item, str):
            links.append(Link(_rel_path(item, f"links[{i}]")))
        elif isinstance(item, Mapping):
            check_keys(item, Link._fields, f"links[{i}]")
            mode = item.get("mode") or "symlink"
            if mode not in LINK_MODES:
                raise _bad(f"links[{i}].mode", "one of " + ", ".join(LINK_MODES), mode)
            links.append(Link(_rel_path(item.get("path"), f"links[{i}].path"), mode))
        else:
            raise _bad(f"links[{i}]", "a path or {path, mode}", item)
    return tuple(links)


def _windows(value: Any) -> tuple[Window, ...]:
    windows = []
    seen: set[str] = set()
    for i, item in enumerate(_str_list(value, "windows")):
        key = f"windows[{i}]"
        if not isinstance(item, Mapping):
            raise _bad(key, "a mapping with name, dir, cmd, resume_cmd", item)
        check_keys(item, _WINDOW_KEYS, key)
        name = _str(item, "name", f"{key}.name")
        if not _WINDOW_NAME.fullmatch(name):
            raise _bad(f"{key}.name", "a name of letters, digits, _ and - (not a number)", name)
        if name in seen:
            raise _bad(f"{key}.name", "unique among the windows", name)
        seen.add(name)
        folder = _str(item, "dir", f"{key}.dir")
        if folder:
            folder = _rel_path(folder, f"{key}.dir", root_ok=True)
            folder = "" if folder == "." else folder  # the worktree's root, as "" is
        windows.append(
            Window(
                name=name,
                dir=folder,
                cmd=_str(item, "cmd", f"{key}.cmd"),
                resume_cmd=_str(item, "resume_cmd", f"{key}.resume_cmd"),
            )
        )
    return tuple(windows)


_TASK_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


def _steps(value: Any, key: str) -> tuple[StepSpec, ...]:
    """Names (a step, or a task: `migrate`, `db.seed`) or {task, undo} mappings. Whether a
    name is a step or a task is known only with the project's collection: see steps/."""

    def task_name(name: Any, where: str) -> str:
        if not isinstance(name, str) or not _TASK_NAME.fullmatch(name):
            raise _bad(where, "a step or task name (ports, migrate, db.seed)", name)
        return name

    specs = []
    for i, item in enumerate(_str_list(value, key)):
        if isinstance(item, Mapping):
            check_keys(item, ("task", "undo"), f"{key}[{i}]")
            undo = item.get("undo") or ""
            specs.append(
                StepSpec(
                    task_name(item.get("task"), f"{key}[{i}].task"),
                    task_name(undo, f"{key}[{i}].undo") if undo else "",
                )
            )
        else:
            specs.append(StepSpec(task_name(item, f"{key}[{i}]")))
    return tuple(specs)


def settings_from(raw: Mapping[str, Any] | None) -> Settings:
    """Check the `tally` config mapping and return typed settings (defaults filled in)."""
    given = plain(raw or {})
    _check_all_keys(given)
    merged = plain(DEFAULTS)
    for key, value in given.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    copies = tuple(
        _rel_path(p, f"copies[{i}]")
        for i, p in enumerate(_str_list(merged.get("copies"), "copies"))
    )
    claude = merged.get("claude")
    if not isinstance(claude, dict):
        raise _bad("claude", "a mapping", claude)
    trust = _str(claude, "trust", "claude.trust") or "inherit"
    if trust not in ("inherit", "never"):
        raise _bad("claude.trust", "inherit or never", trust)
    hooks_raw = merged.get("hooks") or {}
    if not isinstance(hooks_raw, dict):
        raise _bad("hooks", "a mapping", hooks_raw)
    hooks: dict[str, tuple[str, ...]] = {}
    for name, cmds in hooks_raw.items():
        items = _str_list(cmds, f"hooks.{name}")
        if not all(isinstance(c, str) for c in items):
            raise _bad(f"hooks.{name}", "a list of shell commands", items)
        hooks[name] = tuple(items)
    protect = _str_list(merged.get("protect"), "protect")
    for i, pattern in enumerate(protect):
        if not isinstance(pattern, str) or not pattern.strip() or "\n" in pattern:
            raise _bad(f"protect[{i}]", "a gitignore pattern (*.sql, backups/)", pattern)
    land = merged.get("land")
    if not isinstance(land, dict):
        raise _bad("land", "a mapping", land)
    method = _str(land, "method", "land.method") or "rebase"
    if method not in LAND_METHODS:
        raise _bad("land.method", "one of " + ", ".join(LAND_METHODS), method)
    attention = merged.get("attention")
    if not isinstance(attention, dict):
        raise _bad("attention", "a mapping (message, bell)", attention)
    for key in ("message", "bell"):
        if not isinstance(attention.get(key), bool):
            raise _bad(f"attention.{key}", "true or false", attention.get(key))
    dashboard = merged.get("dashboard")
    if not isinstance(dashboard, dict):
        raise _bad("dashboard", "a mapping", dashboard)
    project = _str(merged, "project")
    if project and ("/" in project or project in (".", "..")):
        raise _bad("project", "a plain name (no /)", project)
    settings = Settings(
        project=project,
        worktrees=_str(merged, "worktrees"),
        registry=_str(merged, "registry") or ".tally-sessions",
        lock_timeout=_number(merged, "lock_timeout", "lock_timeout"),
        ports=_ports(merged.get("ports")),
        links=_links(merged.get("links")),
        copies=copies,
        activate=_str(merged, "activate"),
        windows=_windows(merged.get("windows")),
        add_steps=_steps(merged.get("add_steps"), "add_steps"),
        remove_steps=_steps(merged.get("remove_steps"), "remove_steps"),
        protect=tuple(protect),
        claude_config=_str(claude, "config", "claude.config") or "~/.claude.json",
        claude_trust=trust,
        claude_lock_stale=_number(claude, "lock_stale", "claude.lock_stale"),
        tmux_socket=_str(merged, "tmux_socket"),
        hooks=hooks,
        land_method=method,
        land_into=_str(land, "into", "land.into"),
        ready_timeout=_number(merged, "ready_timeout", "ready_timeout"),
        attention_message=attention["message"],
        attention_bell=attention["bell"],
        dashboard_bell=_bool(dashboard, "bell", "dashboard.bell"),
    )
    dropped = [p for p, base in merged["ports"].items() if base is None]
    commands = [("activate", settings.activate)]
    for i, win in enumerate(settings.windows):
        commands += [(f"windows[{i}].cmd", win.cmd), (f"windows[{i}].resume_cmd", win.resume_cmd)]
    for point, cmds in settings.hooks.items():
        commands += [(f"hooks.{point}[{j}]", cmd) for j, cmd in enumerate(cmds)]
    for key, text in commands:
        _check_placeholders(text, key, settings.ports, dropped)
    return settings


# --- a project file invoke could not load ---------------------------------------------------

CONFIG_FILES = ("invoke.yaml", "invoke.yml", "invoke.json")


def config_file(folder: Path) -> Path | None:
    """The invoke config file in `folder` that invoke reads, if any."""
    return next((folder / n for n in CONFIG_FILES if (folder / n).is_file()), None)


def _read(path: Path) -> tuple[Any, str | None]:
    """(the file's data, None) or (None, what is wrong with it in one line)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        return None, f"cannot read {path}: {getattr(e, 'strerror', None) or e}"
    try:
        if path.suffix == ".json":
            return json.loads(text), None
        from invoke.vendor import yaml

        return yaml.safe_load(text), None
    except ValueError as e:
        return None, f"{path} is not valid JSON ({e}); fix it"
    except Exception as e:  # yaml.YAMLError: its own words, with line and column
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        return None, f"{path} is not valid YAML ({where}{problem}); fix it"


def sets(folder: Path, key: str) -> Path | None:
    """The config file in `folder` when it sets ``tally.<key>``."""
    path = config_file(folder)
    data = _read(path)[0] if path is not None else None
    tally = data.get("tally") if isinstance(data, Mapping) else None
    return path if isinstance(tally, Mapping) and key in tally else None


def window_folder(worktree: Path, index: int, win: Window, main: Path | None = None) -> Path:
    """The folder window `win` (``tally.windows[index]``) starts in. A `dir` the worktree
    lacks is an error naming the key and the nearest folder there (never the root instead:
    ``backnd`` would run the backend's command in the wrong place without a word); `main`
    names the file the windows come from."""
    folder = worktree / win.dir if win.dir else worktree
    if folder.is_dir():
        return folder
    depth = len(PurePosixPath(win.dir).parts)
    have = []
    for top, dirs, _ in os.walk(worktree):
        rel = PurePosixPath(os.path.relpath(top, worktree))
        dirs[:] = sorted(d for d in dirs if d not in (".git", "node_modules"))
        if len(rel.parts) >= depth:
            dirs.clear()
        if str(rel) != ".":
            have.append(str(rel))
    source = sets(main, "windows") if main is not None else None
    raise TallyError(
        f"{f'{source}: ' if source else ''}config key tally.windows[{index}].dir: {win.dir}/ "
        f"does not exist in the worktree {worktree}{did_you_mean(win.dir, have, 'folders')}"
    )


def explain_file(folder: Path) -> str | None:
    """What is wrong with the invoke.yaml in `folder`, in one line naming file and key;
    None when there is no such file or nothing wrong is found in it."""
    path = config_file(folder)
    if path is None:
        return None
    data, problem = _read(path)
    if problem is not None:
        return problem
    if data is None:
        return None
    if not isinstance(data, Mapping):
        return f"{path} must hold a mapping of settings (tally: ...), got {type(data).__name__}"
    tally = data.get("tally")
    if tally is None:
        return None
    if not isinstance(tally, Mapping):
        return f"{path}: tally must be a mapping of settings, got {tally!r}"
    for key, default in DEFAULTS.items():
        value = tally.get(key, default)
        if isinstance(default, dict) and not isinstance(value, Mapping):
            hint = (
                f" (an empty `{key}:` is null: write {key}: {{}} or drop it)"
                if value is None
                else ""
            )
            return f"{path}: tally.{key} must be a mapping, got {value!r}{hint}"
    try:
        settings_from(tally)
        from .remote import hosts_from

        hosts_from(tally.get("hosts"))
    except TallyError as e:
        return f"{path}: {e}"
    return None


def explain_env(environ: Mapping[str, str]) -> str | None:
    """An INVOKE_TALLY_... variable invoke cannot cast to its setting's type, in one line."""

    def keys(prefix: str, tree: Mapping[str, Any]) -> Iterator[tuple[str, str, Any]]:
        for key, value in tree.items():
            path = f"{prefix}.{key}" if prefix else key
            if isinstance(value, Mapping) and value:
                yield from keys(path, value)
            else:
                yield "INVOKE_TALLY_" + path.replace(".", "_").upper(), path, value

    for var, path, default in keys("", DEFAULTS):
        if var not in environ:
            continue
        value = environ[var]
        kind = type(default)
        if kind in (list, dict):
            return (
                f"{var}: tally.{path} is a {kind.__name__}; set it in invoke.yaml, "
                "not in the environment"
            )
        if kind in (int, float):
            try:
                kind(value)
            except ValueError:
                return f"{var}={value!r}: tally.{path} must be a number"
    return None


def tasks_folder(start: Path) -> Path | None:
    """Where `inv` finds tasks.py from `start` (it looks in each parent in turn)."""
    for folder in (start, *start.parents):
        if (folder / "tasks.py").is_file():
            return folder
    return None


def install_excepthook(folder_of: Callable[[], Path | None]) -> None:
    """A broken invoke.yaml: one line naming the file and key, not invoke's traceback.

    invoke loads the project's invoke.yaml (in the folder `folder_of()` says) after
    importing the tasks, and merges it with these defaults when a task runs; what it
    cannot load or merge would end in a traceback."""
    import os
    import sys

    previous = sys.excepthook

    def hook(kind: type[BaseException], error: BaseException, tb: Any) -> None:
        import traceback

        # only an error raised while invoke loads its config files: anything else keeps
        # its traceback
        files = [frame.filename for frame in traceback.extract_tb(tb)]
        loading = any(f.endswith(os.path.join("invoke", "config.py")) for f in files)
        try:
            folder = folder_of() if loading else None
        except OSError:  # the current folder is gone
            folder = None
        message = explain_file(folder) if folder is not None else None
        if message is None and loading:
            message = explain_env(os.environ)
        if message is None:
            previous(kind, error, tb)
            return
        from .output import error as show

        show(message)
        sys.exit(1)

    sys.excepthook = hook
