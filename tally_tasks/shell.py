"""The user's shell: which kind of shell runs a window's line or a hook, and the line
written for it.

Window lines are typed into the user's own shell, and hooks run in it (``$SHELL -lic``),
because the activation command (``workon``, a shell function) only works there. bash, zsh
and the other POSIX shells read ``activate && ( line )`` as written. fish does not: ``( )``
is a command substitution there, and ``fish -c`` exits 0 on a parse error. For fish the
activation runs in fish and the line, POSIX like every window command and hook, in
``sh -c``; a hook goes through fish's ``eval``, whose status a parse error does set. Any
other shell (csh, tcsh, nushell, xonsh, elvish, PowerShell) is refused in one line before
anything is made.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Callable

from .errors import TallyError

POSIX = "posix"
FISH = "fish"

# by base name; a login shell's argv[0] may start with "-"
_POSIX_NAMES = frozenset(
    {"sh", "bash", "rbash", "zsh", "dash", "ksh", "ksh93", "mksh", "lksh", "pdksh", "ash"}
    | {"busybox", "yash", "posh"}
)
_SAFE = re.compile(r"[\w@%+=:,./-]+", re.ASCII)


def login_shell() -> str:
    """The shell hooks run in: $SHELL when it is an executable file, else /bin/sh (what
    tmux does with a SHELL that is not there)."""
    shell = os.environ.get("SHELL") or "/bin/sh"
    return shell if os.path.isabs(shell) and os.access(shell, os.X_OK) else "/bin/sh"


def kind(shell: str, source: str = "$SHELL") -> str:
    """POSIX or FISH for the shell at path `shell` (`source`: where it was named, for the
    error); TallyError for a shell no line here is written for."""
    name = os.path.basename(shell).lstrip("-")
    if name == "fish":
        return FISH
    if name in _POSIX_NAMES:
        return POSIX
    raise TallyError(
        f"{source} is {shell}, a shell tally-tasks cannot write window lines and hooks for "
        "(it writes them for bash, zsh, fish and other POSIX shells: sh, dash, ksh); run it "
        "with SHELL=/bin/bash, and for tmux's windows `set -g default-shell /bin/bash` in "
        "~/.tmux.conf"
    )


def quoter(shell_kind: str) -> Callable[[str], str]:
    """How a value is quoted as one word in that kind of shell."""
    return fish_quote if shell_kind == FISH else shlex.quote


def fish_quote(value: str) -> str:
    """One word in fish: inside its single quotes only ``\\`` and ``'`` are special."""
    if value and _SAFE.fullmatch(value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def joined(shell_kind: str, activate: str, line: str) -> str:
    """`line` (POSIX shell words) after `activate` (in the shell's own words), run only
    when the activation succeeds, as that kind of shell reads it; "" for no line."""
    if not line:
        return ""
    if shell_kind == FISH:
        posix = f"sh -c {fish_quote(line)}"
        return f"{activate}; and {posix}" if activate else posix
    if not activate:
        return line
    # `act && a || b` would run b when act fails: group what follows the activation
    grouped = f"( {line} )" if re.search(r"[;&|]", line) else line
    return f"{activate} && {grouped}"


def command(shell: str, shell_kind: str, full: str) -> list[str]:
    """The argument list that runs `full` (from `joined`) in the login shell at `shell`
    and exits with its status."""
    if shell_kind == FISH:  # `fish -c` exits 0 on a parse error; its `eval` does not
        full = f"eval {fish_quote(full)}"
    return [shell, "-lic", full]
