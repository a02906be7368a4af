"""readiness.py: waiting for a session's windows, against real tmux and real servers."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from subprocess import Popen

import libtmux
import pytest
from conftest import free_base

from tally_tasks import output, readiness, tmux
from tally_tasks.config import Window
from tally_tasks.session import Session
from tally_tasks.tmux import WindowRun

PY = shlex.quote(sys.executable)


def _session(tmp_path: Path, port: int) -> Session:
    wt = tmp_path / "wt"
    wt.mkdir(exist_ok=True)
    return Session("x", "x", wt, "p-x", {"backend": port})


def _run(
    srv: libtmux.Server, session: Session, lines: dict[str, str], timeout: float = 20
) -> list[readiness.Ready]:
    windows = [Window(n, "", cmd, "") for n, cmd in lines.items()]
    runs = [
        WindowRun(n, session.worktree, cmd.replace("{backend_port}", str(session.ports["backend"])))
        for n, cmd in lines.items()
    ]
    tmux.create(srv, session.tmux_name, runs, {})
    return readiness.check(session, windows, srv, timeout)


SERVE = f"{PY} -m http.server {{backend_port}} --bind 127.0.0.1"


def test_up_and_running(srv: libtmux.Server, tmp_path: Path) -> None:
    session = _session(tmp_path, free_base())
    results = _run(srv, session, {"backend": SERVE, "agent": "sleep 60"})
    assert [(r.window, r.state) for r in results] == [("backend", "up"), ("agent", "running")]
    assert results[0].port == session.ports["backend"]


def test_a_slow_server_is_waited_for(srv: libtmux.Server, tmp_path: Path) -> None:
    session = _session(tmp_path, free_base())
    (r,) = _run(srv, session, {"backend": f"sleep 2 && {SERVE}"})
    assert r.state == "up" and r.seconds >= 2


def test_a_program_that_exits_at_once(srv: libtmux.Server, tmp_path: Path) -> None:
    session = _session(tmp_path, free_base())
    (r,) = _run(srv, session, {"backend": "echo no-such-thing-here {backend_port}; false"})
    assert r.state == "exited"
    assert any("no-such-thing-here" in line for line in r.lines)


def test_another_programs_server_is_not_ours(
    srv: libtmux.Server, tmp_path: Path, serve: Callable[[int, Path], Popen[bytes]]
) -> None:
    session = _session(tmp_path, free_base())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    other = serve(session.ports["backend"], elsewhere)
    (r,) = _run(srv, session, {"backend": SERVE})
    assert r.state == "foreign" and f"pid {other.pid}" in r.holder and "http.server" in r.holder


def test_timeout(srv: libtmux.Server, tmp_path: Path) -> None:
    session = _session(tmp_path, free_base())
    (r,) = _run(srv, session, {"backend": "sleep 60 # {backend_port}"}, timeout=1)
    assert r.state == "timeout" and r.seconds >= 1


def test_a_missing_window(srv: libtmux.Server, tmp_path: Path) -> None:
    session = _session(tmp_path, free_base())
    tmux.create(srv, session.tmux_name, [WindowRun("other", session.worktree, "")], {})
    (r,) = readiness.check(session, [Window("backend", "", SERVE, "")], srv, 5)
    assert r.state == "missing"


@pytest.mark.parametrize(
    ("cmd", "resume", "expected"),
    [
        ("python manage.py runserver {backend_port}", "", [8001]),
        ("claude -n {session}", "claude --resume {session}", []),
        ("serve {frontend_port} {backend_port}", "", [5001, 8001]),
        ("x", "y {backend_port}", [8001]),
        ("{storybook_port}", "", []),
        ('serve "${backend_port}"', "", []),
    ],
    ids=["backend", "agent", "two", "resume-only", "unknown-port", "shell-variable"],
)
def test_window_ports(cmd: str, resume: str, expected: list[int]) -> None:
    got = readiness.window_ports(
        [Window("w", "", cmd, resume)], {"backend": 8001, "frontend": 5001}
    )
    assert got == {"w": expected}


@pytest.mark.parametrize(
    ("windows", "expected"),
    [
        (
            [
                ("backend", "serve {backend_port}"),
                ("frontend", "vite {frontend_port} {backend_port}"),
            ],
            {"backend": [8001], "frontend": [5001]},
        ),
        (
            [
                ("frontend", "vite {frontend_port} {backend_port}"),
                ("backend", "serve {backend_port}"),
            ],
            {"frontend": [5001], "backend": [8001]},
        ),
        (
            [("web", "serve {frontend_port} {backend_port}"), ("proxy", "p {backend_port}")],
            {"web": [5001, 8001], "proxy": []},
        ),
        (
            [("backend", "serve"), ("frontend", "vite {frontend_port} {backend_port}")],
            {"backend": [], "frontend": [5001, 8001]},
        ),
    ],
    ids=["frontend-names-backend", "in-the-other-order", "first-names-it", "only-one-names-it"],
)
def test_a_port_two_windows_name_is_one_windows(
    windows: list[tuple[str, str]], expected: dict[str, list[int]]
) -> None:
    """A frontend told the backend's port serves its own: it is not up because the backend
    is, and its restart never stops the backend (the demo's frontend was both)."""
    got = readiness.window_ports(
        [Window(n, "", cmd, "") for n, cmd in windows], {"backend": 8001, "frontend": 5001}
    )
    assert got == expected


def test_a_window_waited_for_alone_serves_only_its_own_port(
    srv: libtmux.Server, tmp_path: Path
) -> None:
    """The frontend restarted alone (its window only) is not up because the backend's
    port, which its command names, answers: it is waited for on its own."""
    base = free_base()
    session = _session(tmp_path, base)
    session.ports["frontend"] = base + 1
    windows = [
        Window("backend", "", SERVE, ""),
        Window("frontend", "", "sleep 60 # {frontend_port} {backend_port}", ""),
    ]
    runs = [
        WindowRun(w.name, session.worktree, w.cmd.replace("{backend_port}", str(base)))
        for w in windows
    ]
    tmux.create(srv, session.tmux_name, runs, {})
    assert readiness.check(session, windows[:1], srv, 20)[0].state == "up"
    (r,) = readiness.check(session, windows[1:], srv, 1, among=windows)
    assert (r.state, r.port) == ("timeout", base + 1)
    (r,) = readiness.check(session, windows[1:], srv, 1)  # not knowing the backend window
    assert (r.state, r.port) == ("up", base)


def test_report_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    session = _session(tmp_path, 8001)
    results = [
        readiness.Ready("backend", "up", 8001, 1.42),
        readiness.Ready("claude", "running"),
        readiness.Ready("frontend", "exited", 5001, 3.0, ["npm ERR! missing script: dev"]),
        readiness.Ready("api", "foreign", 9000, holder="pid 42 (python3 -m http.server)"),
        readiness.Ready("docs", "timeout", 7000, 30.0),
    ]
    output.set_quiet(False)
    assert not readiness.report(results, session, "tmux attach -t =p-x")
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "✓ backend      up on :8001 (1.4 s)"
    assert lines[1] == "✓ claude       running"
    assert lines[2].startswith("✗ frontend     exited: npm ERR! missing script: dev")
    assert lines[3] == (
        "✗ api          port 9000 answered by pid 42 (python3 -m http.server) outside the worktree"
    )
    assert lines[4].startswith("✗ docs         no answer on :7000 after 30 s")


def test_a_window_without_a_command_is_not_waited_for(srv: libtmux.Server, tmp_path: Path) -> None:
    session = _session(tmp_path, free_base())
    results = _run(srv, session, {"shell": "", "agent": "sleep 60"})
    assert [(r.window, r.state) for r in results] == [("agent", "running")]
