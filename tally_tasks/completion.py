"""Shell completion of session names, for `tally-session` and for `inv`.

Invoke completes task names and flags, never a flag's value. Both programs ask it with
``PROG --complete -- <words>``; here, when the word being completed is a session name
(``remove <TAB>``, ``resume fe<TAB>``, ``open --name <TAB>``), the registered names are
printed instead. `tally-session` does it in its own Program; for `inv`, whose Program is
invoke's, `install` wraps the function invoke's Program calls (invoke 2.x, where
``invoke.program.complete`` is that function), as soon as the collection is imported.
"""

from __future__ import annotations

import functools
import re
import shlex
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from invoke import Exit
from invoke.parser import Argument, ParserContext

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
    if str(ctx.name).rsplit(".", 1)[-1] in _NEW_NAME or "name" not in ctx.args:
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


def session_names(
    remainder: str,
    binaries: list[str],
    contexts: Mapping[str, ParserContext],
    tally_config: Callable[[Path], Any],
) -> list[str] | None:
    """The registered session names when the word being completed is one; else None.

    Shell-quoted: bash's ``compgen -W`` expands the words it is given (``$(...)`` would
    run). The registry refuses a key that is not a session name when it is loaded, so
    such a key is never offered; the quoting holds whatever a name may be.
    `tally_config(main)` gives the raw `tally` settings of the main checkout `main`."""
    from .config import settings_from
    from .registry import load
    from .repo import find_main
    from .session import Project

    pattern = "|".join(re.escape(b) for b in binaries)
    invocation = re.sub(rf"^({pattern}) ", "", remainder)
    try:
        tokens = shlex.split(invocation)
    except ValueError:
        return None
    if not wants_session_name(tokens, contexts):
        return None
    try:
        main, common = find_main(Path.cwd())
        settings = settings_from(tally_config(main))
        return [shlex.quote(n) for n in sorted(load(Project(main, common, settings).registry_path))]
    except Exception:  # completion never shows a traceback: invoke's words instead
        return None


def _main_checkout_config(main: Path) -> Any:
    """The `tally` settings `inv` would use in `main` (defaults, invoke.yaml, environment)."""
    from invoke import Config

    from .config import DEFAULTS

    config = Config(defaults={"tally": DEFAULTS}, project_location=main)
    config.load_project()
    config.load_shell_env()
    return config.get("tally")


def install() -> None:
    """Make `inv --complete` offer session names (once; only on the invoke it knows)."""
    import invoke.program

    original = getattr(invoke.program, "complete", None)
    if original is None or getattr(original, "tally", False):
        return

    @functools.wraps(original)
    def complete(**kwargs: Any) -> Exit:
        core, parser = kwargs.get("core"), kwargs.get("parser")
        names = None
        if core is not None and parser is not None:
            names = session_names(
                core.remainder, kwargs.get("names") or [], parser.contexts, _main_checkout_config
            )
        if names is None:
            return original(**kwargs)
        for name in names:
            print(name)
        raise Exit

    complete.tally = True  # type: ignore[attr-defined]
    invoke.program.complete = complete  # type: ignore[assignment]
