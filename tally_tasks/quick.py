"""tally-session's quick path: `list` run without invoke.

Importing invoke and parsing with its Program costs more than `list` itself. When the
command line is exactly `list` with some of its plain flags (--json, --git, --brief, long
or short, each at most once) and the settings can be read here exactly as invoke's Config
reads them, the command runs here; anything else (another command or option, --help,
--host, any ``INVOKE_*`` variable, a config file in Python or one this reading does not
expect) returns None before anything is printed, and the program runs it through invoke
as always, which also says what is wrong in its own words.

The settings are invoke's levels for `tally-session` (tally_tasks.cli), in its order:
the collection's defaults (``tally: DEFAULTS``), then /etc/invoke.*, ~/.invoke.* and the
main checkout's invoke.* (the first of .yaml, .yml, .json, .py in each place), merged as
invoke merges them (mappings key by key; a mapping against a value is an error: left to
invoke). Environment variables and a runtime file (-f) are invoke's only other sources:
an ``INVOKE_*`` variable (INVOKE_RUNTIME_CONFIG among them) or a core option sends the
command to invoke. YAML is read by invoke's own vendored copy of PyYAML, loaded without
importing invoke, and the main checkout's file is kept parsed (tally_tasks.yamlcache).
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

    from .yamlcache import Kept

_FLAGS = {
    "--json": "json",
    "-j": "json",
    "--git": "git",
    "-g": "git",
    "--brief": "brief",
    "-b": "brief",
}
# The top-level keys of invoke's own defaults (`Config.global_defaults()`; a test keeps
# this in step): a file that sets one is left to invoke, which merges it with them.
INVOKE_KEYS = ("run", "runners", "sudo", "tasks", "timeouts")
_SUFFIXES = ("yaml", "yml", "json", "py")


class _Unsure(Exception):
    """Something this reading does not reproduce exactly: invoke runs the command."""


def run(argv: list[str]) -> int | None:
    """The exit status of `argv` (``sys.argv``) run here, or None: run it through invoke."""
    flags = _list_flags(argv[1:])
    if flags is None or any(k.startswith("INVOKE_") for k in os.environ):
        return None
    from . import output
    from .errors import TallyError
    from .repo import find_main, here

    try:
        raw = tally_config(*find_main(here()))
    except (TallyError, OSError, _Unsure):  # invoke's path says it as it always has
        return None
    except KeyboardInterrupt:  # before the task runs: as invoke's Program ends then
        return 1
    from . import listing
    from .session import find_project

    output.set_program("tally-session")
    sys.dont_write_bytecode = True  # as invoke's Program does before a task runs
    try:
        listing.show(find_project(lambda _main: raw), **flags)
    except (TallyError, OSError, UnicodeError, KeyboardInterrupt) as e:
        return output.said(e)  # as the task's boundary does
    return 0


def _list_flags(words: list[str]) -> dict[str, bool] | None:
    """``list [--json] [--git] [--brief]`` as the task's keyword arguments, else None."""
    if not words or words[0] != "list":
        return None
    flags: dict[str, bool] = {}
    for word in words[1:]:
        key = _FLAGS.get(word)
        if key is None or key in flags:
            return None
        flags[key] = True
    return flags


def tally_config(main: Path, common_dir: Path) -> Any:
    """The `tally` mapping invoke's Config would give `tally-session` run in the checkout
    `main` (without INVOKE_* variables or a runtime file); `_Unsure` when it cannot say.
    The main checkout's YAML is kept parsed in `common_dir` (tally_tasks.yamlcache)."""
    from .config import DEFAULTS, plain
    from .yamlcache import CACHE_FILE, Kept

    kept = Kept(common_dir / CACHE_FILE)
    merged: dict[str, Any] = {"tally": plain(DEFAULTS)}
    for base, keep in (
        ("/etc/invoke", None),
        (os.path.expanduser("~/.invoke"), None),
        (os.path.join(main, "invoke"), kept),
    ):
        data = _read_first(base, keep)
        if data is None:
            continue
        if not isinstance(data, dict) or any(k in data for k in INVOKE_KEYS):
            raise _Unsure
        _merge(merged, data)
    kept.save()
    return merged["tally"]


def _read_first(base: str, kept: Kept | None) -> Any:
    """The data of the first of `base`.yaml/.yml/.json/.py that exists, as invoke's
    `Config._load_file` reads it (None when there is none or it is empty)."""
    for suffix in _SUFFIXES:
        path = f"{base}.{suffix}"
        if suffix == "py":  # invoke runs it: not here
            if os.path.exists(path):
                raise _Unsure
            return None
        try:
            with open(path) as fd:  # as invoke opens it (the locale's encoding)
                text = fd.read()
        except FileNotFoundError:
            continue
        except (OSError, UnicodeError):  # a folder, no permission: invoke raises it
            raise _Unsure from None
        try:
            if suffix == "json":
                import json

                return json.loads(text)
            if kept is None:
                from .yamlcache import invokes_yaml

                return invokes_yaml().safe_load(text)
            return kept.parse(path, text)
        except Exception:  # invoke's traceback, or the excepthook's line
            raise _Unsure from None
    return None


def _merge(base: dict[str, Any], updates: dict[str, Any]) -> None:
    """invoke's `merge_dicts` for plain data: mappings merged key by key; a mapping where
    the other side has a value (or the reverse) is invoke's error, so `_Unsure`."""
    for key, value in updates.items():
        if key in base and isinstance(base[key], dict) != isinstance(value, dict):
            raise _Unsure
        if isinstance(value, dict):
            _merge(base.setdefault(key, {}), value)
        else:
            base[key] = value
