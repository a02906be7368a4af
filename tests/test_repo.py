"""The main repository's git: the branch-name check that needs no git process."""

from __future__ import annotations

import os
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


def _layout(root: Path, kind: str) -> Path:
    """A folder to look for the repository from; `kind` names the layout."""
    main = root / "real" / "main"
    main.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", "-b", "main", str(main)], check=True)
    subprocess.run(["git", "-C", str(main), "commit", "-q", "--allow-empty", "-m", "i"], check=True)
    (main / "sub" / "deeper").mkdir(parents=True)
    wt = root / "real" / "wt"
    subprocess.run(["git", "-C", str(main), "worktree", "add", "-q", str(wt)], check=True)
    (wt / "in-wt").mkdir()
    (root / "link").symlink_to(root / "real")
    if kind == "relative-gitfile":  # as `worktree.useRelativePaths` writes it
        (wt / ".git").write_text("gitdir: ../main/.git/worktrees/wt\n")
    if kind == "empty-dot-git":  # not a repository: git walks on up
        (main / "sub" / ".git").mkdir()
    if kind == "bare-inside":
        subprocess.run(["git", "init", "-q", "--bare", str(main / "sub" / "b.git")], check=True)
    if kind == "broken-gitfile":
        (main / "sub" / ".git").write_text("not a gitfile\n")
    return {
        "main": main,
        "subfolder": main / "sub" / "deeper",
        "worktree": wt,
        "worktree-subfolder": wt / "in-wt",
        "through-a-link": root / "link" / "wt" / "in-wt",
        "relative-gitfile": wt / "in-wt",
        "inside-dot-git": main / ".git" / "refs",
        "empty-dot-git": main / "sub" / "deeper",
        "bare-inside": main / "sub" / "b.git",
        "broken-gitfile": main / "sub" / "deeper",
        "no-repository": root,
    }[kind]


@pytest.mark.parametrize(
    ("kind", "fast"),
    [
        ("main", True),
        ("subfolder", True),
        ("worktree", True),
        ("worktree-subfolder", True),
        ("through-a-link", True),
        ("relative-gitfile", True),
        ("inside-dot-git", False),
        ("empty-dot-git", False),
        ("bare-inside", False),
        ("broken-gitfile", False),
        ("no-repository", False),
    ],
)
def test_the_repository_is_found_as_git_finds_it(tmp_path: Path, kind: str, fast: bool) -> None:
    """find_main's walk up (no git run) answers as `git rev-parse --git-common-dir` does, and
    leaves what is not plain to git itself."""
    from tally_tasks import repo
    from tally_tasks.errors import TallyError

    start = _layout(tmp_path, kind)
    said = subprocess.run(
        ["git", "rev-parse", "--path-format=absolute", "--git-common-dir"],
        cwd=start,
        capture_output=True,
        text=True,
    )
    gits = Path(said.stdout.strip()) if said.returncode == 0 else None
    walked = repo._discovered(start)
    assert (walked is not None) == fast
    if walked is not None:
        assert walked == gits
    repo._found.clear()
    try:
        found: Path | None = repo.find_main(start)[1]
    except TallyError:
        found = None
    expected = gits if gits is not None and gits.name == ".git" else None
    assert found == expected


def test_a_repository_of_another_owner_is_left_to_git(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """git refuses another user's repository unless safe.directory says otherwise: the walk
    never answers for one."""
    from tally_tasks import repo

    start = _layout(tmp_path, "main")
    monkeypatch.setattr(repo.os, "geteuid", lambda: os.getuid() + 1)
    assert repo._discovered(start) is None
    monkeypatch.setattr(repo.os, "geteuid", lambda: 0)
    monkeypatch.setenv("SUDO_UID", "1000")
    assert repo._discovered(start) is None
