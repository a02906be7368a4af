"""tally-tasks: parallel development sessions (git worktree + tmux + Claude Code) as Invoke tasks.

A project's ``tasks.py`` is one line: ``from tally_tasks import ns``.
"""

from __future__ import annotations

from invoke import Collection

from .config import DEFAULTS
from .demo import demo
from .tasks import session

__version__ = "0.1.0"

ns = Collection(demo, session)
ns.configure({"tally": DEFAULTS})

__all__ = ["ns", "__version__"]
