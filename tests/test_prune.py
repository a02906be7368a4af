"""`prune`: every session whose branch is merged (forge squash and rebase merges too) or
whose upstream is gone goes, with remove's refusals; real repositories and a bare origin."""

from __future__ import annotations

from pathlib import Path

import libtmux
import pytest
from conftest import Sample, add_origin, commit, counting, forge_merge, git, git_state, run_cli

from tally_tasks.errors import TallyError
from tally_tasks.operations import add as add_op
from tally_tasks.operations import prune

NO_TMUX = ["ports", "worktree", "links", "env", "claude_perms"]


def world(sample: Sample, srv: libtmux.Server) -> dict[str, Path]:
    """Sessions in every state prune tells apart; the forge's merges are not fetched yet."""
    bare = add_origin(sample.main)
    project = sample.project(add_steps=NO_TMUX)
    wts = {}
    for name in ("squashed", "rebased", "wip", "fresh", "abandoned", "dirty"):
        add_op.run(project, name, srv)
        wts[name] = sample.main.parent / f"tally-{name}"
    for name in ("squashed", "rebased", "wip", "abandoned", "dirty"):
        commit(wts[name], f"{name}.txt", f"{name}\n", f"work on {name}")
    for name in ("squashed", "dirty"):  # one commit squashed is that commit replayed
        commit(wts[name], f"{name}-2.txt", f"{name}\n", f"more work on {name}")
    for name in ("squashed", "rebased", "abandoned", "dirty"):
        git(wts[name], "push", "-q", "-u", "origin", name)
    forge_merge(bare, "squashed", "squash")
    forge_merge(bare, "rebased", "rebase")
    forge_merge(bare, "dirty", "squash")
    git(bare, "branch", "-q", "-D", "abandoned")  # a pull request closed without merging
    (wts["dirty"] / "notes.txt").write_text("mine\n")
    return wts


@pytest.mark.parametrize(
    ("merged", "gone", "removed"),
    [
        (True, False, {"squashed", "rebased"}),
        (False, True, {"squashed", "rebased", "abandoned"}),
        (True, True, {"squashed", "rebased", "abandoned"}),
    ],
    ids=["merged", "gone", "both"],
)
def test_prune_removes_finished_sessions_and_lists_the_kept(
    sample: Sample,
    srv: libtmux.Server,
    capsys: pytest.CaptureFixture[str],
    merged: bool,
    gone: bool,
    removed: set[str],
) -> None:
    wts = world(sample, srv)
    with pytest.raises(TallyError, match=r"1 finished session\(s\) kept .*: dirty; "):
        prune.run(sample.project(), srv, merged, gone)
    out = capsys.readouterr().out
    assert set(sample.registry()) == set(wts) - removed
    for name in removed:
        assert not wts[name].exists()
    assert "dirty: dirty is squash-merged into origin/main, but 1 uncommitted" in out or (
        "dirty: dirty's upstream origin/dirty is gone, but 1 uncommitted" in out
    )
    branches = set(git(sample.main, "branch", "--format=%(refname:short)").split())
    if "abandoned" in removed:  # its work is on no other branch: the branch stays
        assert "abandoned" in branches
        assert "kept abandoned: 1 commit(s) not merged into main" in out
    assert not {"squashed", "rebased"} & branches
    if merged:
        assert "squashed: squashed is squash-merged into origin/main" in out
        assert "rebased: rebased is rebase-merged into origin/main" in out


def test_dry_run_fetches_nothing_and_changes_nothing(
    sample: Sample, srv: libtmux.Server, capsys: pytest.CaptureFixture[str]
) -> None:
    wts = world(sample, srv)
    git(sample.main, "fetch", "-q", "--prune")  # a dry run does not fetch: done by hand
    before = git_state(sample.main, *wts.values())
    registry = sample.registry()
    with pytest.raises(TallyError, match="dirty"):
        prune.run(sample.project(), srv, True, True, dry_run=True)
    out = capsys.readouterr().out
    assert "would run git fetch --all --prune first" in out
    for name in ("squashed", "rebased", "abandoned"):
        assert f"· remove       {name}: " in out
    assert git_state(sample.main, *wts.values()) == before
    assert sample.registry() == registry


def test_nothing_to_prune_without_a_remote(
    sample: Sample, srv: libtmux.Server, capsys: pytest.CaptureFixture[str]
) -> None:
    project = sample.project(add_steps=NO_TMUX)
    add_op.run(project, "fresh", srv)
    add_op.run(project, "wip", srv)
    commit(sample.main.parent / "tally-wip", "wip.txt", "wip\n", "wip")
    prune.run(project, srv)
    assert capsys.readouterr().out.strip().endswith("nothing to prune")
    assert set(sample.registry()) == {"fresh", "wip"}


def test_a_session_merged_locally_is_pruned(sample: Sample, srv: libtmux.Server) -> None:
    project = sample.project(add_steps=NO_TMUX)
    add_op.run(project, "done", srv)
    commit(sample.main.parent / "tally-done", "done.txt", "done\n", "done")
    git(sample.main, "merge", "-q", "--no-edit", "done")
    prune.run(project, srv, merged_=True, gone=False)
    assert sample.registry() == {}


def test_prune_asks_removes_questions_once(
    sample: Sample, srv: libtmux.Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What prune found clear, just before, remove does not ask again: one `git status`,
    one look at the ignored files and one at the stashes for the session."""
    project = sample.project(add_steps=NO_TMUX)
    add_op.run(project, "done", srv)
    commit(sample.main.parent / "tally-done", "done.txt", "done\n", "done")
    git(sample.main, "merge", "-q", "--no-edit", "done")
    path, log = counting(tmp_path / "counting", "git")
    monkeypatch.setenv("PATH", path)
    prune.run(project, srv, merged_=True, gone=False)
    asked = [
        [w for w in line.split()[1:] if w[0] != "-"][0] for line in log.read_text().splitlines()
    ]
    assert sample.registry() == {} and not (sample.main.parent / "tally-done").exists()
    assert [asked.count(c) for c in ("status", "ls-files", "stash")] == [1, 1, 1], asked


@pytest.mark.parametrize("prog", ["inv", "tally-session"])
def test_prune_from_the_command_line(sample: Sample, srv: libtmux.Server, prog: str) -> None:
    sample.write_config(add_steps=NO_TMUX)
    project = sample.project(add_steps=NO_TMUX)
    add_op.run(project, "done", srv)
    commit(sample.main.parent / "tally-done", "done.txt", "done\n", "done")
    git(sample.main, "merge", "-q", "--no-edit", "done")
    task = "session.prune" if prog == "inv" else "prune"
    r = run_cli([prog, task, "--merged", "--dry-run"], sample.main)
    assert r.returncode == 0, r.stderr
    assert "remove       done: done is merged into main" in r.stdout
    r = run_cli([prog, task], sample.main)
    assert r.returncode == 0, r.stderr
    assert sample.registry() == {}
