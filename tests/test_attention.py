"""attention.py: an agent that starts waiting is said once, where the user will see it:
a tmux message, the bell, on_waiting; nothing while a client shows its window."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import libtmux
import pytest
from conftest import Sample, poll

from tally_tasks import attention, panes
from tally_tasks.tmux import WindowRun, create

STATE = {"state": "waiting", "reason": "permission", "since": 1.0, "at": 1.0, "message": "m"}


@pytest.fixture
def setup(sample: Sample, srv: libtmux.Server, tmp_path: Path) -> tuple[Sample, Path]:
    wt = tmp_path / "wt"
    wt.mkdir()
    (sample.main / ".tally-sessions").write_text(
        json.dumps({"x": {"worktree": str(wt), "branch": "x"}})
    )
    runs = [WindowRun(n, wt, "") for n in ("backend", "frontend", "claude")]
    create(srv, "tally-x", runs, {})
    return sample, wt


@pytest.fixture
def client(srv: libtmux.Server) -> Iterator[subprocess.Popen[bytes]]:
    """A tmux client on a terminal of its own, attached to tally-x."""
    main_fd, term = os.openpty()
    proc = subprocess.Popen(
        ["tmux", "attach", "-t", "=tally-x"],
        stdin=term,
        stdout=term,
        stderr=term,
        env={**os.environ, "TERM": "xterm"},
        start_new_session=True,
    )
    os.close(term)
    poll(lambda: srv.cmd("list-clients").stdout)
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()
        os.close(main_fd)


def _attend(sample: Sample, srv: libtmux.Server, **config: object) -> list[str]:
    project = sample.project(**config)
    entries = json.loads((sample.main / ".tally-sessions").read_text())
    return attention.attend(project, project.session("x", entries["x"]), srv, STATE)


def _bell(srv: libtmux.Server) -> bool:
    out = srv.cmd(
        "list-windows", "-t", "=tally-x", "-F", "#{window_name} #{window_bell_flag}"
    ).stdout
    return "claude 1" in out


def test_no_client_rings_and_runs_on_waiting(
    setup: tuple[Sample, Path], srv: libtmux.Server
) -> None:
    sample, wt = setup
    out = wt / "said"
    hook = f'echo "$TALLY_SESSION $TALLY_AGENT_STATE $TALLY_AGENT_REASON {{name}}" > {out}'
    assert _attend(sample, srv, hooks={"on_waiting": [hook]}) == ["bell", "on_waiting"]
    assert out.read_text() == "x waiting permission x\n"
    poll(lambda: _bell(srv))


def test_a_client_elsewhere_gets_the_message(
    setup: tuple[Sample, Path], srv: libtmux.Server, client: subprocess.Popen[bytes]
) -> None:
    sample, _ = setup
    srv.cmd("select-window", "-t", "=tally-x:=backend")
    done = _attend(sample, srv)
    assert done[0].startswith("message /dev/pts/") and done[1:] == ["bell"]


def test_nothing_while_a_client_shows_the_agent(
    setup: tuple[Sample, Path], srv: libtmux.Server, client: subprocess.Popen[bytes]
) -> None:
    sample, _ = setup
    srv.cmd("select-window", "-t", "=tally-x:=claude")
    assert _attend(sample, srv, hooks={"on_waiting": ["false"]}) == []


def test_switched_off(
    setup: tuple[Sample, Path], srv: libtmux.Server, client: subprocess.Popen[bytes]
) -> None:
    sample, _ = setup
    srv.cmd("select-window", "-t", "=tally-x:=backend")
    assert _attend(sample, srv, attention={"message": False, "bell": False}) == []


def test_main_reads_the_project_and_state(setup: tuple[Sample, Path], srv: libtmux.Server) -> None:
    sample, wt = setup
    out = wt / "said"
    sample.write_config(hooks={"on_waiting": [f"echo {{name}} > {out}"]})
    state = sample.main / ".git" / "tally-agents" / "x.json"
    state.parent.mkdir()
    state.write_text(json.dumps(STATE))
    proc = subprocess.run(
        [sys.executable, "-m", "tally_tasks.attention", "--session", "x"], cwd=sample.main
    )
    assert proc.returncode == 0
    assert out.read_text() == "x\n"


def test_agent_window() -> None:
    from tally_tasks.config import Window

    assert (
        panes.agent_window([Window("a", "", "sleep 1", ""), Window("b", "", "exec codex", "")])
        == "b"
    )
    assert panes.agent_window([Window("a", "", "sleep 1", "")]) is None
