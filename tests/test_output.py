"""What the user sees: colour rules, --quiet, one-line errors, ASCII streams, `| head`.

Driven as a user types the commands: through a pipe (`subprocess`), and on a terminal
(a pseudo-terminal from Python's `pty` module). The conftest sets NO_COLOR=1 for every
test; the tests here that are about colour take it out again.
"""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import VENV_BIN, Sample, run_cli, run_into_closed_pipe

ESC = "\x1b"


def colour_env(**extra: str) -> dict[str, str]:
    """The test environment without NO_COLOR, on a colour-capable TERM, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    env["TERM"] = "xterm-256color"
    env["LANG"] = "C.UTF-8"
    env.update(extra)
    return env


def piped(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(VENV_BIN / args[0]), *args[1:]],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


def on_terminal(args: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, str]:
    """Run with stdin, stdout and stderr on a pseudo-terminal; (status, what it showed)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [str(VENV_BIN / args[0]), *args[1:]],
        cwd=cwd,
        env=env,
        stdin=slave,
        stdout=slave,
        stderr=slave,
    )
    os.close(slave)
    shown = b""
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # EIO: every writer closed the terminal
                    break
                if not chunk:
                    break
                shown += chunk
            elif proc.poll() is not None:
                break
        status = proc.wait(timeout=60)
    finally:
        os.close(master)
    return status, shown.decode()


# --- colour -----------------------------------------------------------------------------


def test_no_escape_codes_through_a_pipe(sample: Sample) -> None:
    env = colour_env()
    for args in (
        ["inv", "session.add", "x"],
        ["inv", "session.list"],
        ["tally-session", "list", "--git"],
        ["inv", "session.remove", "nope"],
        ["inv", "session.add", "x", "--dry-run"],
    ):
        r = piped(args, sample.main, env)
        assert ESC not in r.stdout + r.stderr, (args, r.stdout, r.stderr)
        assert r.stdout or r.stderr, args
    assert "✓ tmux" in piped(["inv", "session.tmux", "x"], sample.main, env).stdout


TERMINALS = [
    pytest.param({}, True, id="terminal"),
    pytest.param({"NO_COLOR": "1"}, False, id="NO_COLOR"),
    pytest.param({"TERM": "dumb"}, False, id="TERM=dumb"),
]


@pytest.mark.parametrize(("extra", "coloured"), TERMINALS)
def test_step_lines_are_coloured_on_a_terminal_only(
    sample: Sample, extra: dict[str, str], coloured: bool
) -> None:
    env = colour_env(**extra)
    status, shown = on_terminal(["inv", "session.ports", "x"], sample.main, env)
    assert status == 0, shown
    assert "ports" in shown
    status, failed = on_terminal(["inv", "session.remove", "nope"], sample.main, env)
    assert status == 1, failed
    assert "no session named 'nope'" in failed
    if coloured:
        assert "\x1b[32m✓\x1b[0m ports" in shown
        assert failed.startswith("\x1b[31m✗ no session named 'nope'")
    else:
        assert ESC not in shown + failed
        assert shown.startswith("✓ ports")


# --- --quiet and errors -----------------------------------------------------------------


@pytest.mark.parametrize(
    "program",
    [
        pytest.param(["inv", "session.add"], id="inv"),
        pytest.param(["tally-session", "add"], id="tally-session"),
    ],
)
def test_quiet_prints_only_errors(sample: Sample, program: list[str]) -> None:
    r = run_cli([*program, "x", "--quiet"], sample.main)
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    assert "x" in sample.registry()
    r = run_cli([*program, "x", "-q"], sample.main)
    assert (r.returncode, r.stdout) == (1, "")
    assert r.stderr.startswith("✗ session 'x' already exists")
    assert len(r.stderr.splitlines()) == 1


ERRORS = [
    pytest.param(["inv", "session.add", "a b"], "main", "may only contain", id="bad-name"),
    pytest.param(["inv", "session.remove", "nope"], "main", "no session named", id="unknown"),
    pytest.param(["tally-session", "resume", "nope"], "main", "no session named", id="resume"),
    pytest.param(["inv", "session.add", "dup"], "main", "already exists", id="duplicate"),
    pytest.param(
        ["inv", "session.open", "dup", "--port", "db"], "main", "has no db port", id="open-port"
    ),
    pytest.param(["inv", "session.list"], "corrupt", "not valid JSON", id="corrupt-registry"),
    pytest.param(["inv", "session.list"], "outside", "is not in a git repository", id="not-in-git"),
    pytest.param(["inv", "session.add", "x", "--bogus"], "main", "--bogus", id="unknown-flag"),
]


@pytest.mark.parametrize(("args", "where", "says"), ERRORS)
def test_errors_are_one_line_on_stderr_with_status_1(
    sample: Sample, tmp_path: Path, args: list[str], where: str, says: str
) -> None:
    registry = sample.main / ".tally-sessions"
    entry = {"backend_port": 1, "frontend_port": 2, "worktree": "/nowhere", "branch": "dup"}
    registry.write_text(json.dumps({"dup": entry}))
    cwd = sample.main
    if where == "corrupt":
        registry.write_text('{"dup": ')
    elif where == "outside":
        cwd = tmp_path / "not-a-repo"
        cwd.mkdir()
        (cwd / "tasks.py").write_text("from tally_tasks import ns  # noqa: F401\n")
    before = registry.read_bytes()
    r = run_cli(args, cwd)
    assert r.returncode == 1, r.stdout
    assert len(r.stderr.splitlines()) == 1, r.stderr
    assert says in r.stderr
    assert "Traceback" not in r.stderr
    assert registry.read_bytes() == before


ASCII_ONLY = [
    pytest.param({"PYTHONIOENCODING": "ascii"}, id="PYTHONIOENCODING=ascii"),
    # plain LANG=C gives a UTF-8 stream (PEP 538/540); without that help it is ASCII
    pytest.param(
        {"LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}, id="LC_ALL=C"
    ),
]


@pytest.mark.parametrize("extra", ASCII_ONLY)
def test_marks_fall_back_to_ascii(sample: Sample, extra: dict[str, str]) -> None:
    env = {**os.environ, **extra}
    for args in (["inv", "session.ports", "x"], ["inv", "session.add", "x"]):
        r = subprocess.run(
            [str(VENV_BIN / args[0]), *args[1:]], cwd=sample.main, env=env, capture_output=True
        )
        assert r.returncode == 0, r.stderr.decode()
        out = r.stdout.decode("ascii")  # nothing else would display there
        assert out.startswith("+ ports "), out
        assert "\n+ tmux " in out or args[1] == "session.ports"
    r = subprocess.run(
        [str(VENV_BIN / "inv"), "session.remove", "nope"],
        cwd=sample.main,
        env=env,
        capture_output=True,
    )
    assert r.returncode == 1
    assert r.stderr.decode("ascii").startswith("x no session named 'nope'")


# --- a reader that leaves ---------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["inv", "session.list"], id="inv"),
        pytest.param(["tally-session", "list"], id="tally-session"),
        pytest.param(["inv", "session.list", "--json", "--brief"], id="json"),
    ],
)
def test_list_into_a_closed_pipe_has_no_traceback(sample: Sample, args: list[str]) -> None:
    sample.write_config(add_steps=["ports", "worktree"])
    for name in ("a", "b", "c"):
        assert run_cli(["inv", "session.add", name, "-q"], sample.main).returncode == 0
    shell = " ".join([str(VENV_BIN / args[0]), *args[1:]])
    r = subprocess.run(
        ["/bin/sh", "-c", f"{shell} | head -1"],
        cwd=sample.main,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0
    assert len(r.stdout.splitlines()) == 1
    assert r.stderr == ""
    # the reader gone before the first write: every write fails with EPIPE
    proc = run_into_closed_pipe(args, sample.main)
    assert proc.stderr == ""
    assert proc.returncode in (0, 1)


@pytest.mark.parametrize(
    ("env", "colour"),
    [({"TALLY_COLOR": "1"}, True), ({"TALLY_COLOR": "1", "NO_COLOR": "1"}, False), ({}, False)],
    ids=["asked-for", "no-color-wins", "a-pipe"],
)
def test_a_host_run_for_a_terminal_is_coloured_and_keeps_that_to_itself(
    env: dict[str, str], colour: bool
) -> None:
    """`--host` runs without a pty: the laptop says its terminal shows colour with
    TALLY_COLOR, which no window, hook or tmux server there inherits."""
    code = (
        "import os, sys; from tally_tasks import output; "
        "print(output.use_color(sys.stdout), 'TALLY_COLOR' in os.environ)"
    )
    clean = {k: v for k, v in colour_env().items() if k != "TALLY_COLOR"}
    r = subprocess.run(
        [sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True
    )
    assert r.stdout.split() == [str(colour), "False"], r.stderr
