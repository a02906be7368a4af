"""`tally-session`: the old script's command line over the same task collection.

tally-session add feature-auth       = inv session.add --name feature-auth
tally-session remove feature-auth    = inv session.remove --name feature-auth
tally-session resume [feature-auth] = inv session.resume [--name feature-auth]
tally-session list                   = inv session.list
tally-session help [COMMAND]         = tally-session --help [COMMAND]

Its parse errors are its own: one line, in the tool's words, with what to type instead.
"""

from __future__ import annotations

import inspect
import re
import sys
from pathlib import Path

from invoke import Collection, Exit, Program
from invoke.exceptions import ParseError
from invoke.parser import ParserContext

from . import __version__, completion, output
from .config import DEFAULTS, did_you_mean, install_excepthook
from .errors import TallyError
from .repo import find_main
from .tasks import TallyCollection, session, use_program

# Commands whose optional positional name invoke cannot express (`optional=` would make
# `--name=x` ambiguous): the name is turned into --name here.
_OPTIONAL_NAME = {"resume", "doctor"}


def collection() -> Collection:
    ns = TallyCollection()
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
    def parse_core(self, argv: list[str] | None) -> None:
        try:
            super().parse_core(argv)
        except ParseError as e:
            raise self._said(e) from None

    def parse_tasks(self) -> None:
        try:
            super().parse_tasks()
        except ParseError as e:
            ctx = e.context
            if (
                ctx is not None
                and ctx.name
                and any(a.value in ("-h", "--help") for a in ctx.positional_args)
            ):  # `send --help`: taken for the name, and the text is missing
                self.print_task_help(str(ctx.name))
                raise Exit from None
            raise self._said(e) from None

    def _said(self, e: ParseError) -> Exit:
        """Invoke's words (`No idea what 'rx' is!`) as one line of ours; exit status 1."""
        output.error(explain(e, sorted(self.collection.task_names) if self.collection else []))
        return Exit(code=1)

    def parse_cleanup(self) -> None:
        if self.args.help.value not in (False, True, None) and (
            self.collection is None or self.args.help.value not in self.collection.task_names
        ):  # `help nosuch`: invoke would print its core help
            raise self._said(ParseError(f"No idea what '{self.args.help.value}' is!"))
        # `--complete`: session names where a session name goes, else invoke's candidates
        if self.args.complete.value and not (self.args.help.value or self.args.list.value):
            names = self.session_names()
            if names is not None:
                for name in names:
                    print(name)
                raise Exit
        super().parse_cleanup()

    def print_help(self) -> None:
        """What a user of this program needs: its commands, how to get a command's help,
        and the few program options that matter here (invoke's others still work)."""
        print(f"Usage: {self.binary} COMMAND [--options] [NAME]")
        print()
        self.list_tasks()
        print(f"A command's options: {self.binary} help COMMAND (or: COMMAND --help).")
        print("Program options: -V/--version, --print-completion-script bash|zsh|fish.")

    def print_task_help(self, name: str) -> None:
        ctx = self.parser.contexts[name]
        tuples = ctx.help_tuples()
        names = " ".join(a.name.upper() for a in ctx.positional_args)
        print(f"Usage: {self.binary} {name}{' [--options]' if tuples else ''} {names}".rstrip())
        print()
        doc = inspect.getdoc(self.collection[name]) if self.collection else None
        for line in (doc or "").splitlines():
            print(self.leading_indent + line if line.strip() else "")
        print()
        if tuples:
            print("Options:")
            self.print_columns(tuples)

    def parse_collection(self) -> None:
        super().parse_collection()
        # Program skips project config when given a namespace; `inv` loads the
        # invoke.yaml beside tasks.py, so load the main checkout's here.
        root = _project_root()
        if root is not None:
            self.config.set_project_location(str(root))
            self.config.load_project()

    def session_names(self) -> list[str] | None:
        """Registered session names when the word being completed is one; else None."""
        return completion.session_names(
            self.core.remainder,
            self.binary_names,
            self._make_parser().contexts,
            lambda main: self.config.get("tally"),  # already the main checkout's
        )


def explain(e: ParseError, commands: list[str], prog: str = "tally-session") -> str:
    """One line for what invoke's parser refused, saying what to type instead."""
    text = str(e)
    unknown = re.fullmatch(r"No idea what '(.*)' is!", text)
    ctx: ParserContext | None = e.context
    if ctx is None or not ctx.name:  # the program's own words: a command, a program option
        word = unknown.group(1) if unknown else text
        if word.startswith("-"):
            return f"{prog} has no option {word}; see: {prog} --help"
        near = did_you_mean(word, commands)
        return f"'{word}' is not a command of {prog}" + (
            near if near.startswith("; did") else f"; see: {prog} --help"
        )
    task = str(ctx.name)
    helps = f"see: {prog} help {task}"
    missing = re.match(r"'.*' did not receive required positional arguments: (.*)", text)
    if missing:
        names = " ".join(n.strip(" '").upper() for n in missing.group(1).split(","))
        usage = " ".join(str(a.name).upper() for a in ctx.positional_args) or names
        what = "the session's name" if names == "NAME" else names.lower().replace(" ", " and ")
        return f"{task} needs {what}: {prog} {task} {usage}"
    needs = re.match(r"Flag <Argument: (\w+)", text)
    if needs and "needed value" in text:
        return f"{task}: --{needs.group(1).replace('_', '-')} needs a value; {helps}"
    if unknown:
        word = unknown.group(1)
        # an unknown option before the name is taken for the name: `add --bogus x`
        taken = [a.value for a in ctx.positional_args if str(a.value or "").startswith("-")]
        flag = word if word.startswith("-") else (taken[0] if taken else None)
        if flag is not None:
            # compared without their dashes, which every option shares
            options = sorted(f for f in ctx.flags if f.startswith("--"))
            near = did_you_mean(flag.lstrip("-"), [o[2:] for o in options])
            hint = (
                f"; did you mean --{near.removeprefix('; did you mean ')}"
                if near.startswith("; did")
                else "; options: " + ", ".join(options)
            )
            return f"{task} has no option {flag}{hint}"
        if ctx.positional_args:
            return f"{task} takes one session name; '{word}' is one too many; {helps}"
        return f"{task} takes no session name ('{word}'); {helps}"
    return f"{text}; {helps}"


# Flags of resume and doctor that take a value: the word after them is not the name.
_VALUE_FLAGS = {"--host", "-o"}


def translate(argv: list[str]) -> list[str]:
    """`resume [flags] NAME` -> `resume [flags] --name NAME` (the old script's optional
    positional, which invoke cannot express); `help [COMMAND]` -> `--help [COMMAND]`."""
    out = list(argv)
    for i, word in enumerate(out):
        if word.startswith("-"):
            continue  # core flags before the task
        if word == "help":
            out[i] = "--help"
            break
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
