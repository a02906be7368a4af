"""tally-tasks: parallel development sessions (git worktree + tmux + Claude Code) as Invoke tasks.

A project's ``tasks.py`` is one line: ``from tally_tasks import ns``.

Importing the package imports nothing else: ``ns`` (and with it invoke and the task
collection) is built the first time it is asked for, so a module of the package that
needs neither (the startup hooks, Claude's state hook) starts without them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from invoke import Collection

    ns: Collection


def __getattr__(name: str) -> Any:
    if name != "ns":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import os
    import sys

    from . import startup

    inv = os.path.basename(sys.argv[0]) in ("inv", "invoke")
    with startup.collector_held(inv):  # `inv`'s process is ours; another program's is not
        from pathlib import Path

        from . import completion
        from .config import DEFAULTS, install_excepthook, tasks_folder
        from .tasks import TallyCollection, session

    global ns
    ns = TallyCollection(session)
    ns.configure({"tally": DEFAULTS})
    completion.install()  # `inv --complete`: session names after `--name` (see completion.py)
    if inv:
        # a broken invoke.yaml (beside tasks.py): one line, not invoke's traceback
        install_excepthook(lambda: tasks_folder(Path.cwd()))
        startup.quick_inv()  # `inv` ends without the interpreter's teardown
    return ns


__all__ = ["ns", "__version__"]
