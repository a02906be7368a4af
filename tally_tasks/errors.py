"""The one error type the user is meant to read."""

from __future__ import annotations


class TallyError(Exception):
    """A problem the user can fix. The message says what is wrong and what to do next.

    The task layer turns it into ``invoke.Exit``: one line on stderr, exit status 1,
    no traceback. Anything else is a bug and keeps its traceback.
    """
