"""The task layer: which settings a task sees, help, and the one-line error boundary."""

from __future__ import annotations

import json

import pytest
from conftest import Sample, git, run_cli


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
