"""The main repository's git: the branch-name check that needs no git process, and
calls started ahead of the question."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import Sample, counting
from hypothesis import given, settings
from hypothesis import strategies as st

from tally_tasks import repo as repo_
from tally_tasks.errors import TallyError
from tally_tasks.repo import branch_name_ok


def git_says(name: str) -> bool:
    proc = subprocess.run(["git", "check-ref-format", "--branch", name], capture_output=True)
    return proc.returncode == 0


@pytest.mark.parametrize(
    "name",
    [
        "feature-auth",
        "feat/x",
        "x.lock.y",
        "v1.2",
        "a_b",
        "HEAD",
        "head",
        "-x",
        "a.lock",
        "a/b.lock/c",
        "a/.b",
        ".a",
        "a..b",
        "a/",
        "/a",
        "a//b",
        "a.",
        "a/./b",
        "a b",
        "a@{b",
        "@",
        "a~1",
        "é",
    ],
)
def test_branch_name_ok_is_gits_answer(name: str) -> None:
    assert branch_name_ok(name) == git_says(name)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="aHEAD.-_/lock", min_size=1, max_size=12))
def test_branch_name_ok_is_gits_rule_for_every_name_of_its_characters(name: str) -> None:
    assert branch_name_ok(name) == git_says(name), name


@pytest.fixture
def counted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every git call from here on, a line each in the file returned."""
    path, log = counting(tmp_path / "counting", "git")
    monkeypatch.setenv("PATH", path)
    return log


@pytest.mark.parametrize(
    ("args", "ask"),
    [
        (("rev-parse", "HEAD"), lambda r, a: repo_.run(r, *a)),
        (("ls-files", "-z"), lambda r, a: repo_.names(r, *a)),
        (("rev-parse", "--verify", "--quiet", "nope"), lambda r, a: repo_.ok(r, *a)),
        (("rev-parse", "--verify", "nope"), lambda r, a: repo_.git(r, *a).stderr),
    ],
    ids=["run", "names", "ok", "git"],
)
def test_a_call_started_ahead_answers_as_one_asked_then(
    sample: Sample, counted: Path, args: tuple[str, ...], ask: object
) -> None:
    """The same answer, from the one process started ahead."""
    repo = repo_.Repo(sample.main)
    asked = ask(repo, args)  # type: ignore[operator]
    counted.write_text("")
    with repo_.ahead() as start:
        start(repo, *args, text=args[0] != "ls-files")
        assert ask(repo, args) == asked  # type: ignore[operator]
    assert counted.read_text().splitlines() == [" ".join(["git", *args])]


def test_a_failed_call_started_ahead_says_what_it_says_asked_then(sample: Sample) -> None:
    repo = repo_.Repo(sample.main)
    with pytest.raises(TallyError) as then:
        repo_.run(repo, "rev-parse", "--verify", "nope")
    with repo_.ahead() as start, pytest.raises(TallyError) as ahead:
        start(repo, "rev-parse", "--verify", "nope")
        repo_.run(repo, "rev-parse", "--verify", "nope")
    assert str(ahead.value) == str(then.value) == "git rev-parse failed: Needed a single revision"


def test_another_call_is_not_answered_by_one_started_ahead(sample: Sample, counted: Path) -> None:
    """Other arguments, another mode (bytes), other variables: git is asked."""
    repo = repo_.Repo(sample.main)
    with repo_.ahead() as start:
        start(repo, "rev-parse", "HEAD")
        tree = repo_.run(repo, "rev-parse", "HEAD^{tree}")
        as_names = repo_.names(repo, "rev-parse", "HEAD")
        with_env = repo_.run(repo, "rev-parse", "HEAD", env={"GIT_TRACE": "0"})
        assert repo_.run(repo, "rev-parse", "HEAD") == with_env != tree  # the one started
    assert as_names == [with_env]
    calls = ["git rev-parse HEAD"] * 3 + ["git rev-parse HEAD^{tree}"]
    assert sorted(counted.read_text().splitlines()) == sorted(calls)


@pytest.mark.parametrize(
    "raised", [None, TallyError("refused"), KeyboardInterrupt()], ids=["done", "error", "ctrl-c"]
)
def test_calls_started_ahead_and_never_asked_are_ended(
    sample: Sample, raised: BaseException | None
) -> None:
    """Left unasked (the block ends early: an error, Ctrl-C), each is ended and reaped:
    nothing is left running, nothing waits to be read."""
    repo = repo_.Repo(sample.main)
    started: list[subprocess.Popen[str]] = []

    def block() -> None:
        with repo_.ahead() as start:
            start(repo, "status")
            start(repo, "log")
            started.extend(repo_._ahead.values())
            if raised is not None:
                raise raised

    if raised is None:
        block()
    else:
        with pytest.raises(type(raised)):
            block()
    assert len(started) == 2 and all(p.returncode is not None for p in started)
    assert all(p.stdout is not None and p.stdout.closed for p in started)
    assert repo_._ahead == {}


def test_a_call_that_cannot_start_ahead_fails_when_asked_as_any_call(tmp_path: Path) -> None:
    gone = repo_.Repo(tmp_path / "gone")
    with repo_.ahead() as start, pytest.raises(TallyError, match="does not exist"):
        start(gone, "status")
        repo_.run(gone, "status")
