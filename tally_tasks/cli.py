"""`tally-session`: the old script's command line over the same task collection.

tally-session add feature-auth       = inv session.add --name feature-auth
tally-session remove feature-auth    = inv session.remove --name feature-auth
tally-session resume [feature-auth] = inv session.resume [--name feature-auth]
tally-session list                   = inv session.list
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from invoke import Collection, Exit, Program
from invoke.parser import Argument, ParserContext

from . import __version__, output, registry
from .config import DEFAULTS, settings_from
from .demo import demo
from .errors import TallyError
from .repo import find_main
from .session import Project
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


# Tasks whose name is a new session's: completing existing names there helps nobody.
_NEW_NAME = {"add", "ports"}


def _flag(ctx: ParserContext, word: str) -> Argument | None:
    # Lexicon.get skips aliases (-n for --name); indexing follows them
    return ctx.flags[word] if word in ctx.flags else None


def wants_session_name(tokens: list[str], contexts: Mapping[str, ParserContext]) -> bool:
    """Is the last word of `tokens` (a command line being completed) a session name?

    `remove <TAB>`, `remove fe<TAB>`, `remove --force <TAB>`, `open --name <TAB>`,
    `resume -n fe<TAB>` are; a partial flag, another flag's value, a second word are not.
    (bash drops the empty word being completed, so `remove x <TAB>` reads as `remove x`.)
    """
    for i in range(len(tokens) - 1, -1, -1):
        if tokens[i] in contexts:
            break
    else:
        return False
    task, rest = tokens[i], tokens[i + 1 :]
    ctx = contexts[task]
    if ctx.name in _NEW_NAME or "name" not in ctx.args:
        return False
    given = False  # a name was given before the word being completed
    pending = None  # the flag whose value that word is
    for word in rest[:-1]:
        if pending is not None:
            given = given or pending.name == "name"
            pending = None
        elif not word.startswith("-"):
            given = True  # the name, positionally
        else:
            arg = _flag(ctx, word.split("=", 1)[0])
            if arg is not None and arg.takes_value and "=" not in word:
                pending = arg
            elif arg is not None and arg.name == "name":
                given = True  # --name=x
    if not rest:
        return True
    if pending is not None:
        return bool(pending.name == "name")
    last = rest[-1]
    if not last.startswith("-"):
        return not given
    arg = _flag(ctx, last)
    if arg is None:
        return False  # a partial flag: invoke completes flags
    return bool(arg.name == "name" or (not arg.takes_value and not given))


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
        binaries = "|".join(re.escape(b) for b in self.binary_names)
        invocation = re.sub(rf"^({binaries}) ", "", self.core.remainder)
        try:
            tokens = shlex.split(invocation)
        except ValueError:
            return None
        if not wants_session_name(tokens, self._make_parser().contexts):
            return None
        try:
            main, common = find_main(Path.cwd())
            settings = settings_from(self.config.get("tally"))
            entries = registry.load(Project(main, common, settings).registry_path)
        except (TallyError, OSError):
            return None
        return sorted(entries)


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
    try:
        program.run(argv)
    except BrokenPipeError:
        # `tally-session --help | head -1`: the reader left (the tasks handle it themselves;
        # this is invoke's own printing); say nothing more, as Python's docs advise
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(1)


if __name__ == "__main__":  # pragma: no cover
    main()
