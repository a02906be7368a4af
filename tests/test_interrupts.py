"""Ctrl-C held back for the steps that must not be cut in two."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from tally_tasks import interrupts


def ctrl_c() -> None:
    os.kill(os.getpid(), signal.SIGINT)


def test_a_ctrl_c_inside_waits_and_arrives_as_the_block_ends() -> None:
    done = []
    with pytest.raises(KeyboardInterrupt):
        with interrupts.held() as came:
            ctrl_c()
            done.append("the rest of the block ran")
    assert done and came == [signal.SIGINT]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_without_deliver_it_is_dropped_and_said() -> None:
    with interrupts.held(deliver=False) as came:
        ctrl_c()
    assert came == [signal.SIGINT]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_no_ctrl_c_changes_nothing() -> None:
    with interrupts.held() as came:
        pass
    assert came == []


def test_outside_the_main_thread_it_holds_nothing() -> None:
    seen: list[object] = []

    def worker() -> None:
        with interrupts.held() as came:  # signal.signal would raise here
            seen.append(signal.getsignal(signal.SIGINT))
        seen.append(came)

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert seen == [signal.default_int_handler, []]
