"""`inv session.doctor`: break each thing for real, see it reported, `--fix`, see it mended.

What must not be mended (a user's file in a link's place, a foreign process on a port,
state the tool cannot know is safe to drop) stays reported after `--fix`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import libtmux
import pytest
from conftest import Sample, git, poll, run_cli

from tally_tasks import ports, tmux
from tally_tasks.operations import add as add_op
from tally_tasks.session import Session, commands


def wt_of(sample: Sample, name: str = "x") -> Path:
    return sample.main.parent / f"tally-{name}"


def add(sample: Sample, srv: libtmux.Server, name: str = "x") -> Session:
    return add_op.run(sample.project(), name, srv)


# Windows whose programs run without serving: the session's ports are free for a test's own
# server (another program's, or one of the session's left over)
IDLE = [
    {"name": "backend", "dir": "backend", "cmd": "sleep 600 # {backend_port}"},
    {"name": "frontend", "dir": "frontend", "cmd": "sleep 600 # {frontend_port}"},
]


def add_idle(sample: Sample, srv: libtmux.Server) -> Session:
    sample.write_config(windows=IDLE)
    return add_op.run(sample.project(windows=IDLE), "x", srv)


def run_doctor(sample: Sample, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(["inv", "session.doctor", *args], sample.main)


def lines_with(r: subprocess.CompletedProcess[str], text: str) -> list[str]:
    return [line for line in r.stdout.splitlines() if text in line]


def assert_reported(r: subprocess.CompletedProcess[str], text: str) -> None:
    assert r.returncode == 1, r.stdout + r.stderr
    assert lines_with(r, text), f"no line with {text!r} in:\n{r.stdout}"
    assert "problem(s) found" in r.stderr and "Traceback" not in r.stderr


def assert_all_good(sample: Sample, *args: str) -> None:
    r = run_doctor(sample, *args)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "all good" in r.stdout


def report_then_fix(sample: Sample, text: str, mended: bool) -> None:
    """Reported; after `--fix` either gone (exit 0, all good) or still reported (exit 1)."""
    assert_reported(run_doctor(sample), text)
    fixed = run_doctor(sample, "--fix")
    if mended:
        assert fixed.returncode == 0, fixed.stdout + fixed.stderr
        assert "fixed" in fixed.stdout
        assert_all_good(sample)
    else:
        assert fixed.returncode == 1, fixed.stdout + fixed.stderr
        assert_reported(run_doctor(sample), text)


def windows(srv: libtmux.Server, name: str) -> dict[str, str]:
    """window name -> tmux window id (a re-made window gets a new id)."""
    out = srv.cmd("list-windows", "-t", f"={name}", "-F", "#{window_name} #{window_id}").stdout
    return dict(line.split() for line in out)


def test_a_healthy_session_is_all_good(sample: Sample, srv: libtmux.Server) -> None:
    add(sample, srv)
    r = run_doctor(sample)
    assert r.returncode == 0, r.stdout + r.stderr
    assert [ln.split()[1:] for ln in r.stdout.splitlines()].count(["x", "ok"]) == 1
    assert "all good" in r.stdout


def test_quiet_still_names_each_problem(sample: Sample, srv: libtmux.Server) -> None:
    add(sample, srv)
    _delete_link(sample, wt_of(sample))
    r = run_doctor(sample, "-q")
    assert r.returncode == 1 and r.stdout == ""
    assert "link frontend/node_modules is missing" in r.stderr
    assert "1 problem(s) found" in r.stderr


# --- links and copies -------------------------------------------------------------------------


def _delete_link(sample: Sample, wt: Path) -> None:
    (wt / "frontend" / "node_modules").unlink()


def _link_elsewhere(sample: Sample, wt: Path) -> None:
    elsewhere = sample.root / "elsewhere"
    elsewhere.mkdir()
    (wt / "frontend" / "node_modules").unlink()
    (wt / "frontend" / "node_modules").symlink_to(elsewhere)


def _real_file(sample: Sample, wt: Path) -> None:
    (wt / "backend" / "db.sqlite3").unlink()
    (wt / "backend" / "db.sqlite3").write_text("mine\n")


def _source_missing(sample: Sample, wt: Path) -> None:
    (sample.main / "backend" / "db.sqlite3").unlink()


def _delete_copy(sample: Sample, wt: Path) -> None:
    (wt / "backend" / ".env").unlink()


def _commit_link(sample: Sample, wt: Path) -> None:
    """What `git add -A` did before the links were in info/exclude (now it takes -f)."""
    git(wt, "add", "-f", "frontend/node_modules")
    git(wt, "commit", "-q", "-m", "oops")


LINK_CASES: list[tuple[str, Callable[[Sample, Path], None], str, bool]] = [
    ("link-deleted", _delete_link, "link frontend/node_modules is missing", True),
    ("link-elsewhere", _link_elsewhere, "link frontend/node_modules points at ", True),
    ("real-file", _real_file, "backend/db.sqlite3 is a real file, not a link to main", False),
    (
        "source-missing",
        _source_missing,
        "backend/db.sqlite3 is missing in the main checkout",
        False,
    ),
    ("copy-deleted", _delete_copy, "copy backend/.env is missing", True),
    (
        "link-tracked",
        _commit_link,
        "git tracks frontend/node_modules (a link committed on this branch?): untrack it with "
        "`git rm -r --cached frontend/node_modules` in the worktree, then commit",
        False,
    ),
]


@pytest.mark.parametrize(
    ("breaker", "text", "mended"),
    [case[1:] for case in LINK_CASES],
    ids=[case[0] for case in LINK_CASES],
)
def test_links_and_copies(
    sample: Sample,
    srv: libtmux.Server,
    breaker: Callable[[Sample, Path], None],
    text: str,
    mended: bool,
) -> None:
    add(sample, srv)
    wt = wt_of(sample)
    breaker(sample, wt)
    report_then_fix(sample, text, mended)
    nm = wt / "frontend" / "node_modules"
    assert os.readlink(nm) == str(sample.main / "frontend" / "node_modules")
    if mended:
        assert os.readlink(wt / "backend" / "db.sqlite3") == str(sample.main / "backend/db.sqlite3")
    env = wt / "backend" / ".env"
    assert env.read_text() == "SECRET_KEY=s3cret\n"
    assert env.stat().st_mode & 0o777 == 0o600


def test_a_real_file_in_a_links_place_is_never_replaced(
    sample: Sample, srv: libtmux.Server
) -> None:
    add(sample, srv)
    db = wt_of(sample) / "backend" / "db.sqlite3"
    _real_file(sample, wt_of(sample))
    run_doctor(sample, "--fix")
    assert not db.is_symlink() and db.read_text() == "mine\n"


def test_a_copy_that_differs_from_mains_is_noted_not_changed(
    sample: Sample, srv: libtmux.Server
) -> None:
    add(sample, srv)
    env = wt_of(sample) / "backend" / ".env"
    env.write_text("SECRET_KEY=mine\n")
    for args in ([], ["--fix"]):
        r = run_doctor(sample, *args)
        assert r.returncode == 0, r.stdout + r.stderr
        assert lines_with(r, "backend/.env differs from main's (noted, not changed)")
        assert "all good" in r.stdout
    assert env.read_text() == "SECRET_KEY=mine\n"


# --- tmux -----------------------------------------------------------------------------------


def _hooks_of(wt: Path) -> dict[str, Any]:
    return json.loads((wt / ".claude" / "settings.local.json").read_text())


def _gone_python(sample: Sample, wt: Path) -> None:
    settings = wt / ".claude" / "settings.local.json"
    settings.write_text(settings.read_text().replace(sys.executable, "/gone/venv/bin/python"))


def _no_stop_hook(sample: Sample, wt: Path) -> None:
    settings = _hooks_of(wt)
    del settings["hooks"]["Stop"]
    (wt / ".claude" / "settings.local.json").write_text(json.dumps(settings))


HOOK_CASES = [
    ("interpreter-gone", _gone_python, "run /gone/venv/bin/python, which is gone"),
    ("event-missing", _no_stop_hook, "are missing for Stop"),
]


@pytest.mark.parametrize(
    ("breaker", "text"), [c[1:] for c in HOOK_CASES], ids=[c[0] for c in HOOK_CASES]
)
def test_state_hooks_that_cannot_run_are_installed_again(
    sample: Sample, srv: libtmux.Server, breaker: Callable[[Sample, Path], None], text: str
) -> None:
    """A virtualenv made again elsewhere leaves the hooks running an interpreter that is
    gone: the agent's state is never recorded again, and nothing else would say so."""
    add(sample, srv)
    wt = wt_of(sample)
    before = _hooks_of(wt)
    breaker(sample, wt)
    report_then_fix(sample, text, mended=True)
    assert _hooks_of(wt) == before


def test_a_killed_tmux_session_is_restarted(sample: Sample, srv: libtmux.Server) -> None:
    add(sample, srv)
    tmux.kill(srv, "tally-x")
    report_then_fix(sample, "tmux session tally-x is not running", mended=True)
    assert list(windows(srv, "tally-x")) == ["backend", "frontend", "claude"]


def test_one_closed_window_is_re_added_alone(sample: Sample, srv: libtmux.Server) -> None:
    add(sample, srv)
    before = windows(srv, "tally-x")
    srv.cmd("kill-window", "-t", "=tally-x:=frontend")
    report_then_fix(sample, "tmux windows missing: frontend", mended=True)
    after = windows(srv, "tally-x")
    assert sorted(after) == ["backend", "claude", "frontend"]
    assert after["backend"] == before["backend"] and after["claude"] == before["claude"]
    assert after["frontend"] != before["frontend"]


# --- worktree and branch ---------------------------------------------------------------------


def git_worktrees(main: Path) -> list[str]:
    out = git(main, "worktree", "list", "--porcelain")
    return [ln.split(" ", 1)[1] for ln in out.splitlines() if ln.startswith("worktree ")]


def test_an_entry_whose_worktree_was_deleted_is_dropped_after_prune(
    sample: Sample, srv: libtmux.Server
) -> None:
    add(sample, srv)
    add(sample, srv, "keep")
    tmux.kill(srv, "tally-x")
    shutil.rmtree(wt_of(sample))
    assert str(wt_of(sample)) in git_worktrees(sample.main)
    report_then_fix(sample, f"worktree {wt_of(sample)} is missing", mended=True)
    assert list(sample.registry()) == ["keep"]
    assert git_worktrees(sample.main) == [str(sample.main), str(wt_of(sample, "keep"))]


def test_a_deleted_worktree_whose_tmux_session_still_runs_leaves_nothing_stale(
    sample: Sample, srv: libtmux.Server
) -> None:
    add(sample, srv)
    shutil.rmtree(wt_of(sample))
    report_then_fix(sample, f"worktree {wt_of(sample)} is missing", mended=True)
    assert sample.registry() == {}
    assert "tally-x" not in tmux.running(srv)


def _unknown_to_git(sample: Sample) -> None:
    tmux.kill(libtmux.Server(), "tally-x")
    shutil.rmtree(wt_of(sample))
    git(sample.main, "worktree", "prune")
    (wt_of(sample) / "notes").mkdir(parents=True)
    (wt_of(sample) / "notes" / "todo.txt").write_text("keep me\n")


def _branch_deleted(sample: Sample) -> None:
    git(sample.main, "update-ref", "-d", "refs/heads/x")


def _other_branch(sample: Sample) -> None:
    git(wt_of(sample), "switch", "-q", "-c", "other")


WORKTREE_CASES: list[tuple[str, Callable[[Sample], None], str]] = [
    ("unknown-to-git", _unknown_to_git, "exists but git does not know it as a worktree"),
    ("branch-deleted", _branch_deleted, "branch x is missing"),
    ("other-branch", _other_branch, "worktree is on other, not x"),
]


@pytest.mark.parametrize(
    ("breaker", "text"), [c[1:] for c in WORKTREE_CASES], ids=[c[0] for c in WORKTREE_CASES]
)
def test_worktree_and_branch_trouble_is_reported_not_mended(
    sample: Sample, srv: libtmux.Server, breaker: Callable[[Sample], None], text: str
) -> None:
    add(sample, srv)
    breaker(sample)
    report_then_fix(sample, text, mended=False)
    assert "x" in sample.registry()
    assert wt_of(sample).is_dir()


def test_a_folder_unknown_to_git_is_left_as_it_is(sample: Sample, srv: libtmux.Server) -> None:
    add(sample, srv)
    _unknown_to_git(sample)
    run_doctor(sample, "--fix")
    assert (wt_of(sample) / "notes" / "todo.txt").read_text() == "keep me\n"
    assert sorted(p.name for p in wt_of(sample).iterdir()) == ["notes"]


# --- ports ----------------------------------------------------------------------------------


def test_a_foreign_process_on_a_port_is_named_and_never_killed(
    sample: Sample,
    srv: libtmux.Server,
    serve: Callable[[int, Path], subprocess.Popen[bytes]],
) -> None:
    session = add_idle(sample, srv)
    port = session.ports["backend"]
    outside = sample.root / "outside"
    outside.mkdir()
    proc = serve(port, outside)
    r = run_doctor(sample)
    assert_reported(r, f"backend port {port} is held by pid {proc.pid} (")
    [line] = lines_with(r, f"pid {proc.pid}")
    assert "http.server" in line and f"lsof -i :{port}" in line
    fixed = run_doctor(sample, "--fix")
    assert fixed.returncode == 1
    assert proc.poll() is None, "doctor --fix killed a process it did not start"
    assert ports.is_listening(port)


def test_the_sessions_own_server_on_its_port_is_fine(
    sample: Sample,
    srv: libtmux.Server,
    serve: Callable[[int, Path], subprocess.Popen[bytes]],
) -> None:
    session = add_idle(sample, srv)
    serve(session.ports["backend"], session.worktree / "backend")
    assert_all_good(sample)


@pytest.mark.parametrize("gone", ["tmux", "worktree"], ids=["tmux-gone", "worktree-gone"])
def test_a_left_over_server_of_the_session_is_stopped_by_fix(
    sample: Sample,
    srv: libtmux.Server,
    serve: Callable[[int, Path], subprocess.Popen[bytes]],
    gone: str,
) -> None:
    session = add_idle(sample, srv)
    proc = serve(session.ports["backend"], session.worktree)
    if gone == "tmux":
        tmux.kill(srv, "tally-x")
        text = f"pid {proc.pid} ("
    else:
        shutil.rmtree(session.worktree)  # the server keeps running in the deleted folder
        text = f"worktree {session.worktree} is missing"
    assert_reported(run_doctor(sample), text)
    assert proc.poll() is None, "doctor without --fix stopped something"
    fixed = run_doctor(sample, "--fix")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert lines_with(fixed, f"stopped pid {proc.pid} (")
    poll(lambda: proc.poll() is not None)
    assert_all_good(sample)
    assert ("tally-x" in tmux.running(srv)) == (gone == "tmux")


# --- stale state ----------------------------------------------------------------------------


def test_a_worktree_git_knows_but_the_registry_does_not_is_reported(sample: Sample) -> None:
    stray = wt_of(sample, "stray")
    git(sample.main, "worktree", "add", "-q", "-b", "stray", str(stray))
    report_then_fix(sample, f"worktree {stray} is not in .tally-sessions", mended=False)
    r = run_doctor(sample)
    [line] = lines_with(r, f"worktree {stray}")
    assert line.split()[:2] == ["!", "stale"]
    assert "inv session.add --name stray" in line and "git worktree remove" in line
    assert str(stray) in git_worktrees(sample.main)


def test_a_tmux_session_of_ours_without_an_entry_is_reported(
    sample: Sample, srv: libtmux.Server
) -> None:
    add(sample, srv, "ghost")
    (sample.main / ".tally-sessions").write_text("{}\n")  # the entry is lost
    report_then_fix(sample, "tmux session tally-ghost has no registry entry", mended=False)
    r = run_doctor(sample)
    assert lines_with(r, "tmux kill-session -t =tally-ghost")
    assert "tally-ghost" in tmux.running(srv)


# --- the environment ------------------------------------------------------------------------


def test_a_missing_activation_command_is_a_problem_fix_does_not_mend(sample: Sample) -> None:
    sample.write_config(activate="nosuchcmd")
    for args in ([], ["--fix"]):
        r = run_doctor(sample, *args)
        assert_reported(r, "the activation command `nosuchcmd` fails in your login shell (sh)")
        assert r.stderr.strip().splitlines()[-1].endswith("1 problem(s) found")  # no --fix hint


NOTE_CASES: list[tuple[str, dict[str, object], str]] = [
    (
        "window-program-missing",
        {"windows": [{"name": "api", "dir": "", "cmd": "nosuchprog --port {backend_port}"}]},
        "nosuchprog is not found after the activation command in your login shell (sh), "
        "needed by api",
    ),
    (
        "resume-program-missing",
        {"windows": [{"name": "a", "dir": "", "cmd": "true", "resume_cmd": "nosuchagent -r"}]},
        "nosuchagent is not found after the activation command",
    ),
]


@pytest.mark.parametrize(
    ("config", "text"), [c[1:] for c in NOTE_CASES], ids=[c[0] for c in NOTE_CASES]
)
def test_a_window_program_this_machine_lacks_is_a_note(
    sample: Sample, config: dict[str, object], text: str
) -> None:
    sample.write_config(**config)
    for args in ([], ["--fix"]):
        r = run_doctor(sample, *args)
        assert r.returncode == 0, r.stdout + r.stderr
        assert lines_with(r, text)
        assert r.stdout.splitlines()[-1] == "all good (1 note(s) above)"


def test_doctor_is_green_on_a_machine_without_claude_code(
    sample: Sample, srv: libtmux.Server
) -> None:
    add(sample, srv)
    (sample.root / "bin" / "claude").unlink()
    r = run_doctor(sample)
    assert r.returncode == 0, r.stdout + r.stderr
    [line] = lines_with(r, "claude is not found after the activation command")
    assert "install Claude Code (npm install -g @anthropic-ai/claude-code)" in line
    assert r.stdout.splitlines()[-1] == "all good (1 note(s) above)"


def test_a_missing_worktree_is_one_problem_and_fix_is_offered(
    sample: Sample, srv: libtmux.Server
) -> None:
    add(sample, srv)
    shutil.rmtree(wt_of(sample))
    r = run_doctor(sample)
    assert r.returncode == 1
    assert (
        r.stderr.strip()
        .splitlines()[-1]
        .endswith("1 problem(s) found; --fix mends 1 of them: inv session.doctor --fix")
    )
    assert not lines_with(r, "is gone; drop the entry")  # said once, by the worktree check


def test_fix_is_offered_only_when_it_would_mend_something(
    sample: Sample, srv: libtmux.Server
) -> None:
    add(sample, srv)
    _real_file(sample, wt_of(sample))  # the user's own file: never replaced
    r = run_doctor(sample)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1].endswith("1 problem(s) found")
    _delete_copy(sample, wt_of(sample))
    r = run_doctor(sample)
    assert (
        r.stderr.strip()
        .splitlines()[-1]
        .endswith("2 problem(s) found; --fix mends 1 of them: inv session.doctor --fix")
    )


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("nosuchprog --x", ["nosuchprog"]),
        ("PORT={frontend_port} npm start", ["npm"]),
        ("A=1 B='x y' nosuchprog", ["nosuchprog"]),
        ("env PORT=1 npm start", ["npm"]),
        ("source .venv/bin/activate", ["source"]),
        ("claude --resume s || ~/.claude/local/claude -n s", ["claude", "~/.claude/local/claude"]),
        ("A=1", []),
        ("", []),
        ("echo 'unclosed", ["echo"]),
    ],
    ids=[
        "plain",
        "after-assignment",
        "after-two-assignments",
        "env",
        "source",
        "each-command-as-written",
        "only-an-assignment",
        "empty",
        "unparsable",
    ],
)
def test_the_programs_a_window_line_runs(line: str, words: list[str]) -> None:
    assert commands(line) == words


def test_a_program_after_an_assignment_is_checked(sample: Sample) -> None:
    windows = [{"name": "web", "dir": "", "cmd": "PORT={frontend_port} npm start"}]
    sample.write_config(windows=windows)
    assert_all_good(sample)
    windows[0]["cmd"] = "PORT={frontend_port} nosuchprog start"
    sample.write_config(windows=windows)
    assert lines_with(run_doctor(sample), "nosuchprog is not found after the activation command")


def test_a_login_shell_function_counts_as_available(sample: Sample) -> None:
    with (sample.home / ".profile").open("a") as f:
        f.write("workon() { export TALLY_ACTIVATED=yes; }\n")
    sample.write_config(activate="workon {project}")
    assert_all_good(sample)


# --- --name -----------------------------------------------------------------------------------


def test_name_checks_one_session(sample: Sample, srv: libtmux.Server) -> None:
    add(sample, srv, "good")
    add(sample, srv, "bad")
    tmux.kill(srv, "tally-bad")
    r = run_doctor(sample, "--name", "good")
    assert r.returncode == 0, r.stdout + r.stderr
    assert not lines_with(r, "bad")
    assert_reported(run_doctor(sample, "--name", "bad"), "tmux session tally-bad is not running")
    assert run_doctor(sample, "--name", "good", "--fix").returncode == 0
    assert "tally-bad" not in tmux.running(srv)


def test_an_unknown_name_is_a_one_line_error(sample: Sample, srv: libtmux.Server) -> None:
    add(sample, srv, "a")
    r = run_doctor(sample, "--name", "nope")
    assert r.returncode == 1
    [line] = r.stderr.strip().splitlines()
    assert line.endswith(
        "no session named 'nope' (sessions: a); create it with: inv session.add --name nope"
    )
    assert [ln.split()[1] for ln in r.stdout.splitlines()] == ["tools"] * 2 + ["preflight"]


def test_a_shell_no_line_is_written_for_is_one_problem_and_the_rest_is_checked(
    sample: Sample, tmp_path: Path
) -> None:
    tcsh = tmp_path / "tcsh"  # a stand-in: doctor only looks at its name
    tcsh.write_text('#!/bin/sh\nexec /bin/sh "$@"\n')
    tcsh.chmod(0o755)
    r = run_cli(["inv", "session.doctor"], sample.main, env={"SHELL": str(tcsh)})
    assert_reported(r, f"$SHELL is {tcsh}, a shell tally-tasks cannot write window lines")
    assert r.stderr.strip().splitlines()[-1].endswith("1 problem(s) found")
