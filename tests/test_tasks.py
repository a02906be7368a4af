"""The task layer: which settings a task sees, help, and the one-line error boundary."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import VENV_BIN, Sample, git, run_cli


@pytest.mark.parametrize("prog", ["inv", "tally-session"])
def test_a_worktree_sees_the_main_checkouts_settings(sample: Sample, prog: str) -> None:
    """inv finds the worktree's own tasks.py; the settings must still be main's."""
    assert run_cli(["inv", "session.add", "first", "-q"], sample.main).returncode == 0
    wt = sample.main.parent / "tally-first"
    # main's invoke.yaml changes after the branch was made (uncommitted, as people do)
    bases = sample.config["ports"]
    moved = {"backend": bases["backend"] + 500, "frontend": bases["frontend"] + 500}
    sample.write_config(ports=moved)
    assert json.loads((wt / "invoke.yaml").read_text())["tally"]["ports"] == bases  # the branch's
    add = ["session.add", "second"] if prog == "inv" else ["add", "second"]
    r = run_cli([prog, *add, "-q"], wt / "backend")
    assert r.returncode == 0, r.stderr
    entry = json.loads((sample.main / ".tally-sessions").read_text())["second"]
    assert entry["backend_port"] == moved["backend"]
    assert entry["worktree"] == str(sample.main.parent / "tally-second")  # beside main


def test_a_worktree_without_invoke_yaml_still_sees_mains(sample: Sample) -> None:
    git(sample.main, "rm", "-q", "--cached", "invoke.yaml")
    git(sample.main, "commit", "-q", "-m", "invoke.yaml is local")
    assert run_cli(["inv", "session.add", "a", "-q"], sample.main).returncode == 0
    wt = sample.main.parent / "tally-a"
    assert not (wt / "invoke.yaml").exists()
    r = run_cli(["inv", "session.list", "--json", "--brief"], wt)
    assert r.returncode == 0, r.stderr
    [row] = json.loads(r.stdout)
    assert row["backend_port"] == sample.config["ports"]["backend"]  # not 8000


@pytest.mark.parametrize(
    "argv",
    [
        ["inv", "session.add", "--help"],
        ["inv", "session.remove", "-h"],
        ["inv", "session.claude-perms", "-h"],
        ["tally-session", "add", "-h"],
        ["tally-session", "relink", "--help"],
    ],
    ids=["inv-add", "inv-remove", "inv-dashed-name", "ts-add", "ts-alias"],
)
def test_help_after_a_task_that_takes_a_name(sample: Sample, argv: list[str]) -> None:
    r = run_cli(argv, sample.main)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("Usage:") and "--name" in r.stdout
    assert sample.registry() == {}


INV_COMPLETE = [
    # (id, the command line so far, offered: names or some of invoke's own words)
    ("remove", "session.remove", "names"),
    ("remove-partial", "session.remove fe", "names"),
    ("remove-name", "session.remove --name", "names"),
    ("open-name", "session.open --name f", "names"),
    ("alias", "session.relink", "names"),
    ("resume-name", "session.resume --name", "names"),
    ("new-name", "session.add", ["session.add", "session.list"]),
    ("no-name-task", "session.list", ["session.add", "session.list"]),
    ("partial-flag", "session.remove --fo", ["--force"]),
]


def test_inv_completes_session_names(sample: Sample) -> None:
    names = ["feature-auth", "fix-1"]
    for name in names:
        assert run_cli(["inv", "session.ports", name, "-q"], sample.main).returncode == 0
    for case, line, offered in INV_COMPLETE:
        r = run_cli(["inv", "--complete", "--", "inv", *line.split()], sample.main / "backend")
        assert (r.returncode, r.stderr) == (0, ""), case
        words = r.stdout.split()
        if offered == "names":
            assert words == names, case
        else:
            assert set(offered) <= set(words) and not set(names) & set(words), (case, words)


def test_worktrees_inside_the_main_checkout_see_mains_settings(sample: Sample) -> None:
    sample.write_config(worktrees=".worktrees")
    assert run_cli(["inv", "session.add", "in", "-q"], sample.main).returncode == 0
    wt = sample.main / ".worktrees" / "tally-in"
    r = run_cli(["inv", "session.add", "two", "--dry-run"], wt)
    assert r.returncode == 0, r.stderr
    assert str(sample.main / ".worktrees" / "tally-two") in r.stdout
    assert str(sample.config["ports"]["backend"] + 1) in r.stdout


@pytest.mark.parametrize("prog", ["inv", "tally-session"])
def test_a_broken_invoke_yaml_seen_from_a_worktree_is_one_line(sample: Sample, prog: str) -> None:
    assert run_cli(["inv", "session.add", "a", "-q"], sample.main).returncode == 0
    wt = sample.main.parent / "tally-a"
    (sample.main / "invoke.yaml").write_text("tally: {claude: null}\n")
    r = run_cli([prog, "session.list" if prog == "inv" else "list"], wt)
    assert r.returncode == 1 and len(r.stderr.splitlines()) == 1, r.stderr
    assert str(sample.main / "invoke.yaml") in r.stderr and "tally.claude" in r.stderr
    r = run_cli([prog, "--complete", "--", prog, "session.remove"], wt)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr


def test_a_refused_dry_run_exits_1_as_the_real_command_would(sample: Sample) -> None:
    (sample.main.parent / "tally-x").mkdir()  # someone else's folder in the way
    r = run_cli(["inv", "session.add", "x", "--dry-run"], sample.main)
    assert r.returncode == 1 and "refuse" in r.stdout
    assert run_cli(["inv", "session.add", "y", "-q"], sample.main).returncode == 0
    (sample.main.parent / "tally-y" / "mine.txt").write_text("work\n")
    r = run_cli(["inv", "session.remove", "y", "--dry-run"], sample.main)
    assert r.returncode == 1 and "refuse" in r.stdout
    assert (
        run_cli(["inv", "session.remove", "y", "--dry-run", "--force"], sample.main).returncode == 0
    )


def test_doctor_of_one_session_suggests_fixing_that_one(sample: Sample) -> None:
    assert run_cli(["inv", "session.add", "a", "-q"], sample.main).returncode == 0
    (sample.main.parent / "tally-a" / "frontend" / "node_modules").unlink()
    r = run_cli(["inv", "session.doctor", "--name", "a"], sample.main)
    assert r.returncode == 1 and "inv session.doctor --name a --fix" in r.stderr


def test_a_dropped_session_is_not_checked_again_after_fix(sample: Sample) -> None:
    assert run_cli(["inv", "session.add", "gone", "-q"], sample.main).returncode == 0
    shutil.rmtree(sample.main.parent / "tally-gone")
    r = run_cli(["inv", "session.doctor", "--name", "gone", "--fix"], sample.main)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "dropped the registry entry" in r.stdout and sample.registry() == {}


def test_a_folder_deleted_under_the_shell_is_one_line(sample: Sample, tmp_path: Path) -> None:
    gone = tmp_path / "gone"
    gone.mkdir()
    prog = VENV_BIN / "tally-session"
    r = subprocess.run(
        ["sh", "-c", f'cd "{gone}" && rmdir "{gone}" && "{prog}" list'],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 1 and "no longer exists" in r.stderr, r.stderr
    assert len(r.stderr.splitlines()) == 1


def test_worktreeinclude_with_a_name_that_is_not_utf8(sample: Sample) -> None:
    (sample.main / ".worktreeinclude").write_text(".env*\n")
    (sample.main / ".gitignore").write_text((sample.main / ".gitignore").read_text() + ".env*\n")
    with open(os.fsencode(sample.main) + b"/.env.caf\xe9", "wb") as f:
        f.write(b"X=1\n")
    r = run_cli(["inv", "session.add", "u", "-q"], sample.main)
    assert r.returncode == 0, r.stderr
    copied = os.fsencode(sample.main.parent / "tally-u") + b"/.env.caf\xe9"
    with open(copied, "rb") as f:
        assert f.read() == b"X=1\n"


# --- --host in one place: `hosted` gives a task the flag and forwards it ---------------------

HOSTED = {
    "add": ["name", "force", "dry_run", "no_wait", "host", "quiet"],
    "remove": ["name", "force", "keep_branch", "dry_run", "host", "quiet"],
    "resume": ["name", "no_wait", "host", "quiet"],
    "list": ["json", "git", "brief", "all_hosts", "host"],
    "doctor": ["name", "fix", "host", "quiet"],
    "ports": ["name", "host", "quiet"],
    "worktree": ["name", "host", "quiet"],
    "links": ["name", "refresh", "force", "dry_run", "host", "quiet"],
    "env": ["name", "force", "host", "quiet"],
    "claude-perms": ["name", "host", "quiet"],
    "tmux": ["name", "no_wait", "host", "quiet"],
    "restart": ["name", "window", "no_wait", "host", "quiet"],
    "land": ["name", "rebase", "squash", "merge", "message", "keep", "dry_run", "host", "quiet"],
    "prune": ["merged", "gone", "dry_run", "host", "quiet"],
    "pr": ["name", "draft", "host", "quiet"],
}


@pytest.mark.parametrize("task_name, flags", HOSTED.items(), ids=list(HOSTED))
def test_a_hosted_task_has_host_as_o_and_its_own_flags(task_name: str, flags: list[str]) -> None:
    from tally_tasks.tasks import session

    args = {a.name: a for a in session[task_name].get_arguments()}
    assert list(args) == flags
    assert tuple(args["host"].nicknames) == ("o",) and args["host"].kind is str


def test_host_with_a_local_only_flag_is_one_error(sample: Sample) -> None:
    r = run_cli(["inv", "session.list", "--host", "box1", "--all-hosts"], sample.main)
    assert r.returncode == 1
    assert r.stderr.strip().endswith("give --host NAME or --all-hosts, not both")
