"""Merged, really: a branch's content in the main branch by ancestry, by patch identity
(rebased), or as one squashed commit, locally or on origin; real repositories."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import add_origin, commit, forge_merge, git

from tally_tasks import merged
from tally_tasks import repo as repo_


@pytest.fixture
def main(isolated_env: Path) -> Path:
    main = isolated_env / "Dev" / "proj"
    main.mkdir(parents=True)
    git(main, "init", "-q", "-b", "main")
    commit(main, "app.py", "".join(f"line {i}\n" for i in range(20)), "init")
    return main


def branch_with_work(main: Path) -> None:
    """x: two commits of its own, changing app.py and adding a file."""
    git(main, "switch", "-q", "-c", "x")
    lines = (main / "app.py").read_text().replace("line 3\n", "line three\n")
    commit(main, "app.py", lines, "three in words")
    commit(main, "x.txt", "x\n", "add x")
    git(main, "switch", "-q", "main")


def main_moves(main: Path) -> None:
    commit(main, "other.txt", "other\n", "another change")


def merge(main: Path) -> None:
    main_moves(main)
    git(main, "merge", "-q", "--no-edit", "x")


def cherry_pick(main: Path) -> None:
    main_moves(main)
    git(main, "cherry-pick", "main..x")


def squash(main: Path) -> None:
    main_moves(main)
    git(main, "merge", "-q", "--squash", "x")
    git(main, "commit", "-q", "-m", "x (#1)")


def squash_then_changed(main: Path) -> None:
    """Squashed, then main changed the very lines the branch changed: merging the branch
    again would conflict; its combined diff is still a commit of main's."""
    squash(main)
    text = (main / "app.py").read_text().replace("line three\n", "line THREE\n")
    commit(main, "app.py", text, "louder")


def half_picked(main: Path) -> None:
    main_moves(main)
    git(main, "cherry-pick", "x~1")  # the first of its two commits only


def not_merged(main: Path) -> None:
    main_moves(main)


def reverted(main: Path) -> None:
    """Merged, then reverted: its commits are in main's history."""
    git(main, "merge", "-q", "--no-ff", "--no-edit", "x")
    git(main, "revert", "--no-edit", "-m", "1", "HEAD")


CASES: list[tuple[Callable[[Path], None], str | None]] = [
    (merge, "merged"),
    (reverted, "merged"),
    (cherry_pick, "rebased"),
    (squash, "squashed"),
    (squash_then_changed, "squashed"),
    (half_picked, None),
    (not_merged, None),
]


@pytest.mark.parametrize(
    ("how", "expected"),
    CASES,
    ids=[
        "merged",
        "merged-reverted",
        "rebased",
        "squashed",
        "squashed-changed-since",
        "half-picked",
        "not-merged",
    ],
)
def test_landed_says_how_it_knew(
    main: Path, how: Callable[[Path], None], expected: str | None
) -> None:
    branch_with_work(main)
    how(main)
    repo = repo_.Repo(main)
    landed = merged.landed(repo, "x", merged.targets(repo, "main"))
    assert (landed.how if landed else None) == expected
    if landed:
        assert landed.into == "main"
        assert str(landed).endswith("into main")


@pytest.mark.parametrize(
    "how", [c[0] for c in CASES] + [None], ids=[c[0].__name__ for c in CASES] + ["untouched"]
)
def test_the_branchs_known_commit_gives_the_same_answer(
    main: Path, how: Callable[[Path], None] | None
) -> None:
    if how is None:
        git(main, "branch", "x")  # a session with no commit of its own
    else:
        branch_with_work(main)
        how(main)
    repo = repo_.Repo(main)
    refs = repo_.refs(repo)
    into = merged.targets(repo, "main", refs)
    quick = merged.landed(repo, "x", into, refs.commits["x"])
    assert quick == merged.landed(repo, "x", merged.targets(repo, "main"))
    if how is None:
        assert quick == merged.Landed("merged", "main")
        assert into[0].commit == refs.commits["x"]


@pytest.mark.parametrize("how", ["squash", "rebase"])
def test_a_forge_merge_counts_once_fetched(main: Path, how: str) -> None:
    bare = add_origin(main)
    branch_with_work(main)
    git(main, "push", "-q", "-u", "origin", "x")
    forge_merge(bare, "x", how)
    repo = repo_.Repo(main)
    assert merged.landed(repo, "x", merged.targets(repo, "main")) is None  # not fetched yet
    git(main, "fetch", "-q", "--prune")
    into = merged.targets(repo, "main")
    assert [t.name for t in into] == ["main", "origin/main"]
    landed = merged.landed(repo, "x", into)
    assert landed == merged.Landed({"squash": "squashed", "rebase": "rebased"}[how], "origin/main")
    git(main, "pull", "-q", "--ff-only")  # pulled: local main has it, origin adds nothing
    assert [t.name for t in merged.targets(repo, "main")] == ["main"]
    assert merged.landed(repo, "x", merged.targets(repo, "main")) is not None


def test_targets_without_an_upstream_or_a_branch(main: Path) -> None:
    repo = repo_.Repo(main)
    tree = git(main, "rev-parse", "main^{tree}").strip()
    assert merged.targets(repo, "main") == [merged.Target("main", tree)]
    assert merged.targets(repo, "nope") == []


def test_untouched_is_a_branch_never_moved_since_add_made_it(main: Path, tmp_path: Path) -> None:
    git(main, "worktree", "add", "-q", "-b", "fresh", str(tmp_path / "fresh"), "HEAD")
    common = main / ".git"
    assert merged.untouched(common, "fresh")
    commit(tmp_path / "fresh", "f.txt", "f\n", "work")
    assert not merged.untouched(common, "fresh")
    git(main, "branch", "copied", "main")  # made from a branch, not from HEAD by add
    assert not merged.untouched(common, "copied")
    assert not merged.untouched(common, "missing")


def test_main_branch_is_origins_head_else_main_else_the_checkouts(main: Path) -> None:
    repo = repo_.Repo(main)
    git(main, "switch", "-q", "-c", "develop")
    assert repo_.main_branch(repo) == "main"
    assert repo_.main_branch(repo, "develop") == "develop"  # tally.land.into
    git(main, "branch", "-q", "-m", "main", "trunk")
    assert repo_.main_branch(repo) == "develop"  # no main or master: the checkout's
    git(main, "update-ref", "refs/remotes/origin/trunk", "trunk")
    git(main, "symbolic-ref", "refs/remotes/origin/HEAD", "refs/remotes/origin/trunk")
    assert repo_.main_branch(repo) == "trunk"  # as a clone of a repository on trunk has
    git(main, "switch", "-q", "--detach")
    git(main, "branch", "-q", "-D", "develop")
    git(main, "update-ref", "-d", "refs/remotes/origin/HEAD")
    assert repo_.main_branch(repo) == "HEAD"
