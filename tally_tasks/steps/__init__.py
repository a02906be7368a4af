"""The built-in steps, by the name `tally.add_steps` gives them; each implements `base.Step`.

Any other name in `add_steps` (or `remove_steps`) is a task of the project's own Invoke
collection (see `project`).

`builtin` (name -> step) is made when first asked for: a command that runs none of the
built-in steps (remove, whose steps are the project's tasks) imports none of them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .base import Step

    builtin: dict[str, Step]


def __getattr__(name: str) -> Any:
    if name != "builtin":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from . import claude_perms, env, links, ports, tmux, worktree

    found: dict[str, Step] = {
        "ports": ports,
        "worktree": worktree,
        "links": links,
        "env": env,
        "claude_perms": claude_perms,
        "tmux": tmux,
    }
    globals()["builtin"] = found
    return found
