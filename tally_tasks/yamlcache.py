"""A checkout's invoke.yaml as invoke's PyYAML parses it, kept in the checkout's git folder.

Importing PyYAML is an eighth of importing invoke; a project's settings file rarely
changes. `Kept` holds a file's parse with its whole text (``tally-yaml.cache`` in
the main checkout's ``.git``, or a worktree's own git folder, which git removes with the
worktree); `safe_load` is what invoke's Config gets for ``yaml.safe_load`` when
tally_tasks.startup's stand-in is in place, and tally_tasks.quick reads the main
checkout's file through `Kept` without importing invoke. Only a checkout's own
``invoke.yaml``/``invoke.yml`` is kept: the user's and the system's files are parsed each
time, never copied into a repository.
"""

from __future__ import annotations

import io
import marshal
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

CACHE_FILE = "tally-yaml.cache"
KEEP = 4  # parses kept per file: per install of PyYAML and Python, and file


class Kept:
    """A checkout's YAML file as invoke's PyYAML parsed it, kept (marshal) in its git
    folder with its whole text. A parse counts only for the same file, the same text,
    the same PyYAML files and Python; the last few are kept (two installs of the tool, or
    of invoke, reading one checkout keep one each instead of parsing in turn); an
    unreadable file is none."""

    def __init__(self, cache: Path) -> None:
        self.cache = cache
        self.entries: list[tuple[Any, ...]] = []
        self.new: tuple[Any, ...] | None = None
        try:
            kept = marshal.loads(cache.read_bytes())
        except (OSError, ValueError, EOFError, TypeError):
            return
        if isinstance(kept, list):
            self.entries = [e for e in kept if isinstance(e, tuple) and len(e) == 4]

    def parse(self, path: str, text: str, load: Callable[[], Any] | None = None) -> Any:
        """The data of `path`, whose whole text is `text`: kept, or parsed now (`load`,
        else invoke's PyYAML loaded on its own: `invokes_yaml`) and kept by `save`."""
        try:
            stamp = _stamp()
        except (OSError, LookupError):  # no vendored PyYAML to stamp a parse with
            stamp = None
        if stamp:
            for entry in self.entries:
                if entry[:3] == (stamp, path, text):
                    return entry[3]
        data = load() if load is not None else invokes_yaml().safe_load(text)
        if stamp:
            self.new = (stamp, path, text, data)
        return data

    def save(self) -> None:
        """Keep the new parse first, and the last others of other installs or files."""
        if self.new is None:
            return
        others = [e for e in self.entries if e[:2] != self.new[:2]][: KEEP - 1]
        try:
            blob = marshal.dumps([self.new, *others])
        except ValueError:  # a date, say: parsed each time
            return
        from .registry import replacing

        try:
            with replacing(self.cache, 0o600) as f:
                f.write(blob)
        except OSError:  # a checkout this user cannot write: parsed each time
            pass


def safe_load(stream: Any, real: Callable[[], Any]) -> Any:
    """``yaml.safe_load(stream)`` as invoke's Config asks it of each config file
    (tally_tasks.startup's stand-in for its PyYAML; `real`: the real module). A
    checkout's own invoke.yaml or .yml (beside its ``.git``) is kept parsed in that
    checkout's git folder (a worktree's own; the main checkout's is the one
    tally-session's `list` keeps); the user's and the system's files, and any other, are
    parsed by `real` as before, which also says what is wrong in a file it cannot read."""
    path = getattr(stream, "name", None)
    folder = _git_folder(path) if isinstance(path, str) else None
    if folder is None or not callable(getattr(stream, "read", None)):
        return real().safe_load(stream)
    text = stream.read()

    def parse() -> Any:
        named = io.StringIO(text)  # PyYAML names the file in what it says is wrong
        named.name = path
        return real().safe_load(named)

    kept = Kept(folder / CACHE_FILE)
    data = kept.parse(str(path), text, parse)
    kept.save()
    return data


def _git_folder(path: str) -> Path | None:
    """The git folder of the checkout whose own invoke.yaml/.yml `path` is (a `.git`
    folder beside it, or the folder a worktree's `.git` file names: this user's), else
    None."""
    folder, name = os.path.split(path)
    if name not in ("invoke.yaml", "invoke.yml") or not os.path.isabs(path):
        return None
    dot = Path(folder, ".git")
    if dot.is_dir():
        return dot
    from .repo import worktree_gitdir

    return worktree_gitdir(dot, os.geteuid()) if hasattr(os, "geteuid") else None


def _folder() -> str:
    """invoke's vendored PyYAML (invoke/vendor/yaml), found without importing invoke."""
    import importlib.util

    spec = importlib.util.find_spec("invoke")
    if spec is None or not spec.submodule_search_locations:
        raise LookupError("invoke is not installed")
    return os.path.join(spec.submodule_search_locations[0], "vendor", "yaml")


def _stamp() -> tuple[Any, ...]:
    """What a kept parse depends on: this Python, and which PyYAML files."""
    folder = _folder()
    init = os.stat(os.path.join(folder, "__init__.py"))
    return (sys.version, folder, init.st_mtime_ns, init.st_size)


def invokes_yaml() -> Any:
    """invoke's vendored PyYAML, loaded under a name of its own so that invoke itself is
    not imported."""
    name = "tally_tasks._invoke_yaml"
    module = sys.modules.get(name)
    if module is not None:
        return module
    import importlib.util

    folder = _folder()
    spec = importlib.util.spec_from_file_location(
        name, os.path.join(folder, "__init__.py"), submodule_search_locations=[folder]
    )
    if spec is None or spec.loader is None:
        raise LookupError(f"no PyYAML in {folder}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module
