"""The one error type the user is meant to read."""

from __future__ import annotations


class TallyError(Exception):
    """A problem the user can fix. The message says what is wrong and what to do next.

    The task layer turns it into ``invoke.Exit``: one line on stderr, exit status 1,
    no traceback. Anything else is a bug and keeps its traceback.
    """


def one_line(e: OSError | UnicodeError) -> str:
    """One line for an error the machine raised (a file, a name): no traceback."""
    if isinstance(e, UnicodeError):
        return f"a name or file here is not valid text ({e}); rename it and run the command again"
    where = " → ".join(str(f) for f in (e.filename, e.filename2) if f is not None)
    return f"{e.strerror or e}{': ' + where if where else ''}"
