"""The built-in steps, by the name `tally.add_steps` gives them; each implements `base.Step`.

Any other name in `add_steps` (or `remove_steps`) is a task of the project's own Invoke
collection (see `project`).
"""

from __future__ import annotations

from . import claude_perms, env, links, ports, tmux, worktree
from .base import Step

builtin: dict[str, Step] = {
    "ports": ports,
    "worktree": worktree,
    "links": links,
    "env": env,
    "claude_perms": claude_perms,
    "tmux": tmux,
}
