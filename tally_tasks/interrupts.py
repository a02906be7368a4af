"""Ctrl-C at the wrong moment: held back for the few steps that must not be cut in two.

A process started but not yet handed to the code that ends it, an undo half run, a
session recorded as finished but its undo not yet dropped: a SIGINT there would leave
something behind. Inside `held()` it waits, and arrives (as KeyboardInterrupt) when the
block ends, where the code around it handles it. Only the main thread gets signals, so
elsewhere `held()` changes nothing.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType


@contextlib.contextmanager
def held(deliver: bool = True) -> Iterator[list[int]]:
    """SIGINT held back inside the block; the list says whether one came. `deliver`: it
    arrives as the block ends (else it is dropped: the caller is ending anyway)."""
    came: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield came
        return

    def hold(signum: int, frame: FrameType | None) -> None:
        came.append(signum)

    previous = signal.signal(signal.SIGINT, hold)
    try:
        yield came
    finally:
        # None: a handler set outside Python, which cannot be put back; Python's own then
        signal.signal(signal.SIGINT, signal.default_int_handler if previous is None else previous)
        if came and deliver:
            signal.raise_signal(signal.SIGINT)  # to the handler that was there
