"""tally-tasks: parallel development sessions (git worktree + tmux + Claude Code) as Invoke tasks.

A project's ``tasks.py`` is one line: ``from tally_tasks import ns``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from invoke import Collection

from . import completion
from .config import DEFAULTS, install_excepthook, tasks_folder
from .tasks import session

__version__ = "0.1.0"

ns = Collection(session)
ns.configure({"tally": DEFAULTS})

completion.install()  # `inv --complete`: session names after `--name` (see completion.py)
if os.path.basename(sys.argv[0]) in ("inv", "invoke"):
    # a broken invoke.yaml (beside tasks.py): one line, not invoke's traceback
    install_excepthook(lambda: tasks_folder(Path.cwd()))

__all__ = ["ns", "__version__"]
