"""`tally-session`: the old script's command line over the same task collection.

tally-session add feature-auth       = inv session.add --name feature-auth
tally-session remove feature-auth    = inv session.remove --name feature-auth
tally-session resume [feature-auth] = inv session.resume [--name feature-auth]
tally-session list                   = inv session.list
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from invoke import Collection, Program

from . import __version__, output
from .config import DEFAULTS
from .demo import demo
from .tasks import session

# Commands whose optional positional name invoke cannot express (`optional=` would make
# `--name=x` ambiguous): the name is turned into --name here.
_OPTIONAL_NAME = {"resume", "doctor"}


def collection() -> Collection:
    ns = Collection(demo)
    for t in session.tasks.values():
        ns.add_task(t)
    ns.configure({"tally": DEFAULTS})
    return ns


def _project_root() -> Path | None:
    """The main checkout, whose invoke.yaml holds the project's settings."""
    try:
        proc = subprocess.run(
            ["git", "rev-parse", "--path-format=absolute", "--git-common-dir"],
            capture_output=True,
            text=True,
        )
    except OSError:
        return None
    if proc.returncode != 0:
        return None
    common = Path(proc.stdout.strip())
    return common.parent if common.name == ".git" else None


class TallyProgram(Program):
    def parse_collection(self) -> None:
        super().parse_collection()
        # Program skips project config when given a namespace; `inv` loads the
        # invoke.yaml beside tasks.py, so load the main checkout's here.
        root = _project_root()
        if root is not None:
            self.config.set_project_location(str(root))
            self.config.load_project()


def translate(argv: list[str]) -> list[str]:
    """`resume NAME` -> `resume --name NAME` (the old script's optional positional)."""
    out = list(argv)
    for i, word in enumerate(out):
        if word.startswith("-"):
            continue
        if word in _OPTIONAL_NAME and i + 1 < len(out) and not out[i + 1].startswith("-"):
            out.insert(i + 1, "--name")
        break
    return out


program = TallyProgram(
    name="tally-session",
    binary="tally-session",
    namespace=collection(),
    version=__version__,
)


def main() -> None:
    output.set_program("tally-session")
    argv = [sys.argv[0], *translate(sys.argv[1:])]
    program.run(argv)


if __name__ == "__main__":  # pragma: no cover
    main()
