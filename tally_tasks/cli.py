"""`tally-session`: the old script's command line over the same task collection.

tally-session add feature-auth       = inv session.add --name feature-auth
tally-session remove feature-auth    = inv session.remove --name feature-auth
tally-session resume [feature-auth] = inv session.resume [--name feature-auth]
tally-session list                   = inv session.list
"""

from __future__ import annotations

import sys
from pathlib import Path

from invoke import Collection, Exit, Program

from . import __version__, completion, output
from .config import DEFAULTS, install_excepthook
from .errors import TallyError
from .repo import find_main
from .tasks import session, use_program

# Commands whose optional positional name invoke cannot express (`optional=` would make
# `--name=x` ambiguous): the name is turned into --name here.
_OPTIONAL_NAME = {"resume", "doctor"}


def collection() -> Collection:
    ns = Collection()
    for t in session.tasks.values():
        ns.add_task(t)
    ns.configure({"tally": DEFAULTS})
    return ns


def _project_root() -> Path | None:
    """The main checkout, whose invoke.yaml holds the project's settings (None outside one:
    the tasks say why themselves)."""
    try:
        return find_main(Path.cwd())[0]
    except (TallyError, OSError):
        return None


class TallyProgram(Program):
    def parse_collection(self) -> None:
        super().parse_collection()
        # Program skips project config when given a namespace; `inv` loads the
        # invoke.yaml beside tasks.py, so load the main checkout's here.
        root = _project_root()
        if root is not None:
            self.config.set_project_location(str(root))
            self.config.load_project()

    def parse_cleanup(self) -> None:
        # `--complete`: session names where a session name goes, else invoke's candidates
        if self.args.complete.value and not (self.args.help.value or self.args.list.value):
            names = self.session_names()
            if names is not None:
                for name in names:
                    print(name)
                raise Exit
        super().parse_cleanup()

    def session_names(self) -> list[str] | None:
        """Registered session names when the word being completed is one; else None."""
        return completion.session_names(
            self.core.remainder,
            self.binary_names,
            self._make_parser().contexts,
            lambda main: self.config.get("tally"),  # already the main checkout's
        )


# Flags of resume and doctor that take a value: the word after them is not the name.
_VALUE_FLAGS = {"--host", "-o"}


def translate(argv: list[str]) -> list[str]:
    """`resume [flags] NAME` -> `resume [flags] --name NAME` (the old script's optional
    positional, which invoke cannot express)."""
    out = list(argv)
    for i, word in enumerate(out):
        if word.startswith("-"):
            continue  # core flags before the task
        if word not in _OPTIONAL_NAME:
            break
        j = i + 1
        while j < len(out):
            arg = out[j]
            if arg in ("--name", "-n") or arg.startswith("--name="):
                break  # named already
            if arg in _VALUE_FLAGS:
                j += 2
            elif arg.startswith("-"):
                j += 1
            else:
                out.insert(j, "--name")
                break
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
    use_program(program)
    install_excepthook(_project_root)  # a broken invoke.yaml: one line, not a traceback
    argv = [sys.argv[0], *translate(sys.argv[1:])]
    try:
        program.run(argv)
    except BrokenPipeError:
        # `tally-session --help | head -1`: the reader left (the tasks handle it themselves;
        # this is invoke's own printing); say nothing more, as Python's docs advise
        output.reader_left()
        sys.exit(1)


if __name__ == "__main__":  # pragma: no cover
    main()
