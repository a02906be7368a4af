"""The main repository's git: the branch-name check that needs no git process."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import Sample
from hypothesis import given, settings
from hypothesis import strategies as st

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


@pytest.mark.parametrize(
    "args",
    [("worktree", "list", "--porcelain"), ("rev-parse", "--verify", "nosuch"), ("nosuch",)],
    ids=["answer", "git-says-no", "no-such-command"],
)
def test_begun_gives_what_run_gives(sample: Sample, args: tuple[str, ...]) -> None:
    """A git call started early answers (or fails) exactly as the same call run at once."""
    from tally_tasks.errors import TallyError
    from tally_tasks.repo import Repo, begun, run

    repo = Repo(sample.main)
    result = begun(repo, *args)
    try:
        now: object = run(repo, *args)
    except TallyError as e:
        now = str(e)
    try:
        later: object = result()
    except TallyError as e:
        later = str(e)
    assert later == now


def test_begun_in_a_folder_that_is_gone(tmp_path: Path) -> None:
    from tally_tasks.errors import TallyError
    from tally_tasks.repo import Repo, begun

    with pytest.raises(TallyError, match="does not exist"):
        begun(Repo(tmp_path / "gone"), "status")
