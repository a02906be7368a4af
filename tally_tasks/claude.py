"""Claude Code's per-project settings for a new worktree: approvals and folder trust.

Claude Code keys ``~/.claude.json``'s ``projects`` by absolute path, so every worktree is
a new project: its tool approvals (``allowedTools``, read by older versions) and its
trust-dialog answer (``hasTrustDialogAccepted``) are copied from the main checkout.
Newer versions keep allow rules in ``.claude/settings.local.json``, copied (merged) too.

Claude Code rewrites ``~/.claude.json`` itself, all the time. Each change here takes the
lock it takes (a ``~/.claude.json.lock`` directory, the proper-lockfile convention),
re-reads the file right before an atomic ``os.replace``, keeps every other key and the
file's mode, and keeps a one-time ``~/.claude.json.bak`` of the original. A file that is
not valid JSON is never rewritten; one that is is written back as Node writes it
(`nodejson`), so what was not changed stays byte for byte.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

from . import interrupts
from .errors import TallyError
from .links import Outcome, guard
from .registry import replacing, write_atomic

DEFAULT_CONFIG = "~/.claude.json"


def config_path(configured: str) -> Path:
    """Where Claude Code's config lives: an explicit setting, else CLAUDE_CONFIG_DIR, else ~."""
    if configured and configured != DEFAULT_CONFIG:
        return Path(configured).expanduser()
    config_dir = os.environ.get("CLAUDE_CONFIG_DIR")
    if config_dir:
        return Path(config_dir).expanduser() / ".claude.json"
    return Path(DEFAULT_CONFIG).expanduser()


@contextlib.contextmanager
def claude_lock(config: Path, stale: float, wait: float | None = None) -> Iterator[None]:
    """Claude Code's own lock: ``mkdir <config>.lock``; older than `stale` s is abandoned."""
    lock = config.with_name(config.name + ".lock")
    deadline = time.monotonic() + (wait if wait is not None else stale + 5)
    taken = False
    try:
        while not taken:
            try:
                # Ctrl-C waits until the lock is known taken, for the finally to drop it
                with interrupts.held():
                    os.mkdir(lock)
                    taken = True
            except (PermissionError, FileNotFoundError) as e:
                raise TallyError(
                    f"cannot take Claude Code's lock {lock}: {e.strerror}; "
                    f"check that {lock.parent} exists and is yours"
                ) from None
            except FileExistsError:
                _wait_or_take_over(lock, stale, deadline)
        yield
    finally:
        if taken:
            with contextlib.suppress(OSError):
                os.rmdir(lock)


def _wait_or_take_over(lock: Path, stale: float, deadline: float) -> None:
    """Another holder has the lock: take it over when it is stale, else wait a moment."""
    try:
        age = time.time() - lock.stat().st_mtime
    except FileNotFoundError:
        return  # released between mkdir and stat
    if age > stale:
        # stale: its holder died. Take it over the way proper-lockfile does.
        try:
            os.rmdir(lock)
        except FileNotFoundError:
            pass
        except OSError as e:  # a file, or a folder with something in it: not a lock
            raise TallyError(
                f"{lock} is in the way of Claude Code's lock ({e.strerror}); "
                "if no Claude Code is running, delete it"
            ) from None
        return
    if time.monotonic() > deadline:
        raise TallyError(
            f"{lock} is held by another program (Claude Code?); try again in a moment"
        ) from None
    import random  # here: only a lock held by another needs it

    time.sleep(0.005 + random.random() * 0.01)  # jitter: no lockstep with a writer


def _read(config: Path) -> tuple[bytes, dict[str, Any]] | None:
    try:
        raw = config.read_bytes()
    except FileNotFoundError:
        return None
    try:
        data = json.loads(raw) if raw.strip() else None
    except (json.JSONDecodeError, UnicodeDecodeError):
        data = None
    if not isinstance(data, dict):
        raise _Corrupt()
    return raw, data


class _Corrupt(Exception):
    pass


def update(config: Path, change: Callable[[dict[str, Any]], bool], stale: float = 10.0) -> str:
    """Apply `change` to the parsed config and write it back if it says it changed.

    Returns ``"missing"``, ``"corrupt"``, ``"unchanged"`` or ``"changed"``.
    """
    # A dotfiles symlink stays one: write (and lock, as proper-lockfile does) the real file.
    config = Path(os.path.realpath(config))
    if not config.exists():
        return "missing"
    try:
        return _update(config, change, stale)
    except OSError as e:  # a folder in its place, no permission: one line, file untouched
        raise TallyError(f"cannot update {config}: {e.strerror}") from None


def _update(config: Path, change: Callable[[dict[str, Any]], bool], stale: float) -> str:
    with claude_lock(config, stale):
        for _ in range(5):
            try:
                got = _read(config)
            except _Corrupt:
                return "corrupt"
            if got is None:
                return "missing"
            raw, data = got
            if not change(data):
                return "unchanged"
            from .nodejson import stringify  # here: only a change writes the file

            text = stringify(data, newline=raw.endswith(b"\n"))  # as Claude Code wrote it
            try:
                if config.read_bytes() != raw:
                    continue  # a writer that ignores the lock got in: redo on its version
            except FileNotFoundError:
                return "missing"
            _backup_once(config, raw)
            write_atomic(config, text)
            return "changed"
    raise TallyError(f"{config} keeps changing under us; try again when Claude Code is idle")


def _backup_once(config: Path, raw: bytes) -> None:
    bak = config.with_name(config.name + ".bak")
    if bak.exists():
        return
    fd = os.open(bak, os.O_WRONLY | os.O_CREAT | os.O_EXCL, config.stat().st_mode & 0o777)
    with os.fdopen(fd, "wb") as f:
        f.write(raw)


def _key(path: Path) -> str:
    """The key Claude Code files a folder under: the physical path it runs in (getcwd)."""
    return os.path.realpath(path)


def _unique(items: list[Any]) -> list[Any]:
    out: list[Any] = []
    for item in items:
        if item not in out:
            out.append(item)
    return out


def _project(data: dict[str, Any], path: Path) -> dict[str, Any] | None:
    projects = data.get("projects")
    if not isinstance(projects, dict):
        return None
    entry = projects.get(_key(path))
    return entry if isinstance(entry, dict) else None


def inherit(
    config: Path, main: Path, worktree: Path, trust: str = "inherit", stale: float = 10.0
) -> tuple[Outcome, bool]:
    """Give the worktree's project entry the main checkout's approvals and trust; and
    whether this changed ~/.claude.json (an undo has something to put back)."""
    summary: list[str] = []

    def change(data: dict[str, Any]) -> bool:
        summary.clear()
        source = _project(data, main) or {}
        tools = source.get("allowedTools")
        tools = _unique([t for t in tools if isinstance(t, str)] if isinstance(tools, list) else [])
        trusted = trust == "inherit" and source.get("hasTrustDialogAccepted") is True
        if not tools and not trusted:
            return False
        projects = data.setdefault("projects", {})
        if not isinstance(projects, dict):
            return False
        entry = projects.setdefault(_key(worktree), {})
        if not isinstance(entry, dict):
            return False
        changed = False
        have = entry.get("allowedTools")
        have = list(have) if isinstance(have, list) else []
        new = [t for t in tools if t not in have]
        if new or "allowedTools" not in entry:
            entry["allowedTools"] = have + new
            changed = True
        if tools:
            summary.append(f"{len(tools)} allowed tools")
        if trusted:
            if entry.get("hasTrustDialogAccepted") is not True:
                entry["hasTrustDialogAccepted"] = True
                changed = True
            summary.append("trusted")
        return changed

    state = update(config, change, stale)
    if state == "missing":
        return Outcome(str(config), True, f"no {config.name}, nothing to copy"), False
    if state == "corrupt":
        return Outcome(str(config), False, f"{config} is not valid JSON, left untouched"), False
    if not summary:
        return Outcome(str(config), True, "main checkout has no approvals to copy"), False
    return Outcome(str(config), True, " · ".join(summary)), state == "changed"


def forget(config: Path, paths: list[Path], stale: float = 10.0) -> str:
    """Drop the project entries of `paths` (a removed worktree) and of folders inside them."""
    return restore(config, Snapshot(_roots(paths), {}), stale)


class Snapshot(NamedTuple):
    """The project entries of some folders (and of folders inside them) as they were."""

    roots: tuple[Path, ...]
    entries: dict[str, Any]
    known: bool = True  # False: the file was not valid JSON then; nothing is put back


def _roots(paths: list[Path]) -> tuple[Path, ...]:
    return tuple(Path(_key(p)) for p in paths)


def _inside(key: str, roots: tuple[Path, ...]) -> bool:
    return any(Path(key).is_relative_to(r) for r in roots)


def snapshot(config: Path, paths: list[Path], stale: float = 10.0) -> Snapshot:
    """What the entries of `paths` are now, for `restore` to put back: taken before a
    step that adds to them (an entry there may hold a folder's history and MCP servers)."""
    roots = _roots(paths)
    found: dict[str, Any] = {}

    def look(data: dict[str, Any]) -> bool:
        projects = data.get("projects")
        if isinstance(projects, dict):
            found.update({k: copy.deepcopy(v) for k, v in projects.items() if _inside(k, roots)})
        return False

    state = update(config, look, stale)
    return Snapshot(roots, found, known=state != "corrupt")


def restore(config: Path, before: Snapshot, stale: float = 10.0) -> str:
    """Put the entries of `before`'s folders back as they were: an entry made since is
    dropped, one that was there gets its old value back (and only those are touched)."""
    if not before.known:
        return "unchanged"

    def change(data: dict[str, Any]) -> bool:
        projects = data.get("projects")
        if not isinstance(projects, dict):
            return False
        now = {k: v for k, v in projects.items() if _inside(k, before.roots)}
        if now == before.entries:
            return False
        for key in now:
            if key not in before.entries:
                del projects[key]
        projects.update(copy.deepcopy(before.entries))
        return True

    return update(config, change, stale)


def prune(config: Path, under: Path, prefix: str, stale: float = 10.0) -> list[str]:
    """Drop entries for folders that no longer exist in (or inside) `under`/`prefix`*."""
    dropped: list[str] = []
    under = Path(_key(under))

    def change(data: dict[str, Any]) -> bool:
        dropped.clear()
        projects = data.get("projects")
        if not isinstance(projects, dict):
            return False
        for key in list(projects):
            p = Path(key)
            if not p.is_relative_to(under) or p == under:
                continue
            if p.relative_to(under).parts[0].startswith(prefix) and not p.exists():
                del projects[key]
                dropped.append(key)
        return bool(dropped)

    state = update(config, change, stale)
    if state == "corrupt":
        raise TallyError(
            f"{config} is not valid JSON, left untouched; repair it (or let Claude Code "
            "rewrite it) and run this again"
        )
    return dropped


def copy_local_settings(main: Path, worktree: Path) -> Outcome | None:
    """Copy (or merge into) the worktree's ``.claude/settings.local.json``."""
    rel = ".claude/settings.local.json"
    src, dest = main / rel, worktree / rel
    if not src.is_file():
        return None
    # read, merged and replaced through a link at `dest`: a branch that commits it as a
    # link to ~/.claude/settings.json must not get main's rules written there
    if (refused := guard(worktree, dest, rel, through=True)) is not None:
        return refused
    try:
        data = src.read_bytes()
        theirs = json.loads(data.decode("utf-8"))
    except (OSError, ValueError):
        return Outcome(rel, False, f"main's {rel} is not valid JSON, not copied")
    if not dest.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        with replacing(dest, src.stat().st_mode & 0o777) as out:
            out.write(data)
        return Outcome(rel, True, f"{rel} copied")
    try:
        text = dest.read_text(encoding="utf-8")
        mine = json.loads(text)
    except (OSError, ValueError):
        return Outcome(rel, False, f"worktree's {rel} is not valid JSON, left alone")
    if not isinstance(mine, dict) or not isinstance(theirs, dict):
        return Outcome(rel, False, f"{rel} is not a JSON object, left alone")
    if not _merge_permissions(mine, theirs):
        return Outcome(rel, True, f"{rel} ok")
    from .nodejson import stringify  # here, as in _update: only a change writes the file

    write_atomic(dest, stringify(mine, newline=text.endswith("\n")))
    return Outcome(rel, True, f"{rel} merged")


def _merge_permissions(mine: dict[str, Any], theirs: dict[str, Any]) -> bool:
    src = theirs.get("permissions")
    if not isinstance(src, dict):
        return False
    dst = mine.setdefault("permissions", {})
    if not isinstance(dst, dict):
        return False
    changed = False
    for key in ("allow", "deny", "ask"):
        rules = src.get(key)
        if not isinstance(rules, list):
            continue
        current = dst.get(key)
        have: list[Any] = current if isinstance(current, list) else []
        new = [r for r in _unique(rules) if r not in have]
        if new:
            dst[key] = list(have) + new
            changed = True
    return changed


# --- the hooks that record the agent's state (agent.py) ----------------------------------

LOCAL_SETTINGS = ".claude/settings.local.json"


def _ours(handler: Any, flag: str) -> bool:
    return isinstance(handler, dict) and flag in str(handler.get("command", ""))


def merge_hooks(settings: dict[str, Any], events: tuple[str, ...], command: str, flag: str) -> bool:
    """Put one hook group per event running `command` into `settings` (Claude Code's
    ``{"hooks": {Event: [{"hooks": [{"type": "command", ...}]}]}}``), replacing our
    earlier ones (their command carries `flag`) and keeping every other hook as it is.
    With no `events`, ours are only taken out. Returns whether anything changed."""
    before = json.dumps(settings, sort_keys=True)
    hooks = settings.get("hooks")
    if hooks is None:
        if not events:
            return False
        hooks = settings["hooks"] = {}
    if not isinstance(hooks, dict):
        raise TallyError(f"{LOCAL_SETTINGS}: hooks is not a JSON object; fix it by hand")
    for event in list(hooks):
        groups = hooks[event]
        if not isinstance(groups, list):
            continue
        kept = []
        for group in groups:
            handlers = group.get("hooks") if isinstance(group, dict) else None
            if isinstance(handlers, list) and any(_ours(h, flag) for h in handlers):
                rest = [h for h in handlers if not _ours(h, flag)]
                if not rest:
                    continue  # a group of ours alone
                group = {**group, "hooks": rest}
            kept.append(group)
        if kept:
            hooks[event] = kept
        else:
            del hooks[event]
    for event in events:
        # no matcher: every tool, every notification type
        ours = {"hooks": [{"type": "command", "command": command, "timeout": 10}]}
        hooks.setdefault(event, []).append(ours)
    if not hooks:
        del settings["hooks"]
    return json.dumps(settings, sort_keys=True) != before


def _local_settings(worktree: Path) -> Path:
    """The worktree's settings.local.json, refused when it (or .claude) leads out of it."""
    dest = worktree / LOCAL_SETTINGS
    real, root = os.path.realpath(dest), os.path.realpath(worktree)
    if not real.startswith(root + os.sep):
        raise TallyError(
            f"{dest} leads out of the worktree (to {real}), left alone; make it a plain file"
        )
    return dest


def install_hooks(worktree: Path, events: tuple[str, ...], command: str, flag: str) -> Outcome:
    """Merge our state hooks into the worktree's ``.claude/settings.local.json``."""
    try:
        dest = _local_settings(worktree)
    except TallyError as e:
        return Outcome(LOCAL_SETTINGS, False, str(e))
    settings: Any = {}
    if dest.exists():
        try:
            settings = json.loads(dest.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return Outcome(LOCAL_SETTINGS, False, f"{LOCAL_SETTINGS} is not valid JSON, no hooks")
    if not isinstance(settings, dict):
        return Outcome(LOCAL_SETTINGS, False, f"{LOCAL_SETTINGS} is not a JSON object, no hooks")
    try:
        changed = merge_hooks(settings, events, command, flag)
    except TallyError as e:
        return Outcome(LOCAL_SETTINGS, False, str(e))
    if changed:
        dest.parent.mkdir(exist_ok=True)
        write_atomic(dest, json.dumps(settings, indent=2) + "\n")
    return Outcome(LOCAL_SETTINGS, True, "state hooks")


def our_hooks(worktree: Path, flag: str) -> dict[str, list[str]]:
    """Event -> the commands of our hooks in the worktree's settings (empty when there is
    no such file, or it cannot be read)."""
    try:
        settings = json.loads(_local_settings(worktree).read_text(encoding="utf-8"))
    except (TallyError, OSError, ValueError):
        return {}
    hooks = settings.get("hooks") if isinstance(settings, dict) else None
    found: dict[str, list[str]] = {}
    for event, groups in hooks.items() if isinstance(hooks, dict) else ():
        for group in groups if isinstance(groups, list) else ():
            handlers = group.get("hooks") if isinstance(group, dict) else None
            for h in handlers if isinstance(handlers, list) else ():
                if _ours(h, flag):
                    found.setdefault(event, []).append(str(h["command"]))
    return found


def remove_hooks(worktree: Path, flag: str) -> bool:
    """Take our hooks out of the worktree's settings (a file left empty goes); True when
    something changed. A file that is not ours to read is left alone."""
    try:
        dest = _local_settings(worktree)
        settings = json.loads(dest.read_text(encoding="utf-8"))
    except (TallyError, OSError, ValueError):
        return False
    if not isinstance(settings, dict):
        return False
    try:
        if not merge_hooks(settings, (), "", flag):
            return False
    except TallyError:
        return False
    if settings:
        write_atomic(dest, json.dumps(settings, indent=2) + "\n")
    else:
        dest.unlink()
    return True


def effect(config: Path, worktree: Path) -> Outcome:
    """What takes effect when Claude Code starts in the worktree: whether the folder is
    trusted (else it asks first) and the permission rules of its settings files
    (``allowedTools`` in ~/.claude.json is no longer read: not counted)."""
    parts = []
    try:
        got = _read(Path(os.path.realpath(config)))
    except (_Corrupt, OSError):
        got = None
    entry = _project(got[1], worktree) if got else None
    trusted = entry is not None and entry.get("hasTrustDialogAccepted") is True
    parts.append("trusted" if trusted else "not trusted (Claude Code will ask first)")
    for name in ("settings.json", "settings.local.json"):
        try:
            data = json.loads((worktree / ".claude" / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        perms = data.get("permissions") if isinstance(data, dict) else None
        if not isinstance(perms, dict):
            continue
        counts = [
            f"{len(rules)} {kind}"
            for kind in ("allow", "ask", "deny")
            if isinstance(rules := perms.get(kind), list) and rules
        ]
        if counts:
            parts.append(f"{', '.join(counts)} rules in .claude/{name}")
    return Outcome(str(config), True, " · ".join(parts))
