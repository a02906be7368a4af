"""preflight.py: one login-shell call checks the activation command and each window's
program, in bash, zsh and fish, as the windows' shell starts (rc files, PATH)."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
from conftest import in_group, poll

from tally_tasks import preflight
from tally_tasks.config import Window

WINDOWS = [
    Window("backend", "backend", "python manage.py runserver {backend_port}", ""),
    Window("claude", "", "claude -n {session}", "claude --resume {session} || claude -n {session}"),
]
SHELLS = [s for s in ("bash", "zsh", "fish") if shutil.which(s)]


def _login_files(home: Path, shell: str) -> None:
    """Give the shell's login files the test PATH (a login shell resets it)."""
    path = os.environ["PATH"]
    if shell == "zsh":
        (home / ".zshenv").write_text(f'export PATH="{path}"\n')
    elif shell == "fish":
        conf = home / ".config" / "fish"
        conf.mkdir(parents=True, exist_ok=True)
        (conf / "config.fish").write_text(f"set -gx PATH {' '.join(path.split(':'))}\n")


@pytest.fixture(params=SHELLS)
def shell(request: pytest.FixtureRequest, isolated_env: Path) -> str:
    name = str(request.param)
    _login_files(isolated_env / "home", name)
    return str(shutil.which(name))


def check(
    shell: str, activate: str, windows: list[Window], cwd: Path, env: dict[str, str], **kw: float
) -> preflight.Finding:
    """The one login-shell call, run to its end (`add` reads it while it checks git)."""
    with preflight.started(shell, activate, windows, cwd, env, **kw) as running:
        return running.finding()


def _activate(shell: str) -> str:
    return "set -gx TALLY_ACTIVATED yes" if shell.endswith("fish") else "export TALLY_ACTIVATED=yes"


def test_all_found(shell: str, tmp_path: Path) -> None:
    finding = check(shell, _activate(shell), WINDOWS, tmp_path, {})
    assert finding.activate_status == 0 and finding.missing == {}
    assert preflight.split(finding, shell, _activate(shell)) == ([], [])


def test_workon_missing(shell: str, tmp_path: Path) -> None:
    finding = check(shell, "workon tally", WINDOWS, tmp_path, {})
    assert finding.activate_status not in (0, None) and finding.missing == {}
    (line,), missing = preflight.split(finding, shell, "workon tally")
    assert missing == []
    assert "`workon tally` fails in your login shell" in line and "tally.activate" in line
    assert "workon" in line  # what the shell said


def test_a_program_missing(shell: str, tmp_path: Path) -> None:
    windows = [*WINDOWS, Window("frontend", "frontend", "nosuchprog-x run dev", "")]
    finding = check(shell, "", windows, tmp_path, {})
    assert finding.missing == {"nosuchprog-x": ["frontend"]}
    broken, (line,) = preflight.split(finding, shell, "")
    assert broken == []
    assert line.startswith("nosuchprog-x is not found in your login shell")
    assert "frontend" in line and "tally.windows" in line


def test_a_program_found_only_after_activation(shell: str, tmp_path: Path) -> None:
    tool = tmp_path / "venv" / "bin"
    tool.mkdir(parents=True)
    (tool / "djangoish").write_text("#!/bin/sh\n")
    (tool / "djangoish").chmod(0o755)
    fish = shell.endswith("fish")
    activate = f"set -gx PATH {tool} $PATH" if fish else f'export PATH="{tool}:$PATH"'
    windows = [Window("backend", "", "djangoish runserver", "")]
    assert check(shell, activate, windows, tmp_path, {}).missing == {}
    assert check(shell, "", windows, tmp_path, {}).missing == {"djangoish": ["backend"]}


def test_a_hanging_rc_file_is_bounded(isolated_env: Path, tmp_path: Path) -> None:
    (isolated_env / "home" / ".profile").write_text("sleep 30\n")
    finding = check("/bin/sh", "", WINDOWS, tmp_path, {}, timeout=1)
    assert finding.activate_status is None and "did not finish" in finding.output[0]


def test_started_it_runs_while_the_caller_works_then_says_what_a_whole_run_says(
    isolated_env: Path, tmp_path: Path
) -> None:
    windows = [*WINDOWS, Window("frontend", "frontend", "nosuchprog-x run dev", "")]
    with preflight.started("/bin/sh", "", windows, tmp_path, {}) as running:
        assert running.finding() == check("/bin/sh", "", windows, tmp_path, {})
    assert not in_group(running.proc.pid)


@pytest.mark.parametrize(
    "rc", ["sleep 30\n", "sleep 30 &\n"], ids=["hangs", "leaves-a-child-holding-its-output"]
)
def test_a_hanging_rc_file_started_early_is_bounded_from_its_start(
    isolated_env: Path, tmp_path: Path, rc: str
) -> None:
    (isolated_env / "home" / ".profile").write_text(rc)
    with preflight.started("/bin/sh", "", WINDOWS, tmp_path, {}, timeout=1) as running:
        poll(lambda: time.monotonic() >= running.deadline)  # the caller's work took longer
        asked = time.monotonic()
        finding = running.finding()
        assert time.monotonic() - asked < 5  # not until the rc file's sleep ends
        assert finding.activate_status is None and "did not finish in 1 s" in finding.output[0]
        poll(lambda: not in_group(running.proc.pid), timeout=5)  # the shell and its sleep


@pytest.mark.parametrize("how", ["error", "ctrl-c"])
def test_a_shell_still_running_as_the_block_ends_is_ended_with_its_rc_files_children(
    isolated_env: Path, tmp_path: Path, how: str
) -> None:
    (isolated_env / "home" / ".profile").write_text("sleep 30\n")
    stop = RuntimeError("the caller's check failed") if how == "error" else KeyboardInterrupt()
    with pytest.raises(type(stop)):
        with preflight.started("/bin/sh", "", WINDOWS, tmp_path, {}) as running:
            poll(lambda: len(in_group(running.proc.pid)) == 2)  # the shell, and its sleep
            raise stop
    assert running.proc.returncode is not None  # the shell: ended and reaped
    poll(lambda: not in_group(running.proc.pid), timeout=5)  # its sleep: killed with it


def test_programs_of() -> None:
    assert preflight.programs_of(WINDOWS) == {"python": ["backend"], "claude": ["claude"]}
