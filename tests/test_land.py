"""`land` on real repositories: each method, pre_land, conflicts and refusals that leave the
repository as it was byte for byte, Ctrl-C at several moments, a branch already merged on
the forge."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import libtmux
import pytest
from conftest import (
    VENV_BIN,
    Sample,
    add_origin,
    commit,
    counting,
    forge_merge,
    git,
    git_state,
    poll,
    run_cli,
)

from tally_tasks.errors import TallyError
from tally_tasks.operations import add as add_op
from tally_tasks.operations import land
from tally_tasks.session import Project

NO_TMUX = ["ports", "worktree", "links", "env", "claude_perms"]


def made(sample: Sample, srv: libtmux.Server, **settings: Any) -> tuple[Project, Path]:
    """Session x (no tmux windows) with two commits of its own, and main one ahead."""
    project = sample.project(add_steps=NO_TMUX, **settings)
    add_op.run(project, "x", srv)
    wt = sample.main.parent / "tally-x"
    commit(wt, "feature/a.txt", "a\n", "add a")
    commit(wt, "feature/b.txt", "b\n", "add b")
    commit(sample.main, "backend/api.py", "api = 1\n", "main moves")
    return project, wt


def rev(folder: Path, ref: str = "HEAD") -> str:
    return git(folder, "rev-parse", ref).strip()


def subjects(folder: Path, span: str) -> list[str]:
    return git(folder, "log", "--format=%s", span).splitlines()


def gone(sample: Sample, wt: Path) -> bool:
    branches = git(sample.main, "branch", "--format=%(refname:short)").split()
    return "x" not in sample.registry() and not wt.exists() and "x" not in branches


# --- each method ----------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["rebase", "squash", "merge"])
def test_land_brings_main_forward_keeps_mains_own_changes_and_removes_the_session(
    sample: Sample, srv: libtmux.Server, capsys: pytest.CaptureFixture[str], method: str
) -> None:
    project, wt = made(sample, srv)
    old, tip = rev(sample.main), rev(wt)
    # the main checkout's own uncommitted work, in files the landing does not touch
    (sample.main / "notes.txt").write_text("mine\n")
    (sample.main / "backend" / "manage.py").write_text("# edited in main\n")
    capsys.readouterr()
    land.run(project, "x", srv, method)
    new = rev(sample.main, "refs/heads/main")
    assert rev(sample.main) == new and git(sample.main, "branch", "--show-current") == "main\n"
    if method == "rebase":
        assert subjects(sample.main, f"{old}..main") == ["add b", "add a"]
        assert git(sample.main, "rev-list", "--merges", f"{old}..main") == ""
    elif method == "squash":
        assert rev(sample.main, "main~1") == old
        assert git(sample.main, "log", "-1", "--format=%B").strip() == "x\n\n* add a\n* add b"
    else:
        assert (rev(sample.main, "main^1"), rev(sample.main, "main^2")) == (old, tip)
        assert subjects(sample.main, "-1") == ["Merge branch 'x'"]
    for rel, text in [
        ("feature/a.txt", "a\n"),
        ("feature/b.txt", "b\n"),
        ("backend/api.py", "api = 1\n"),
    ]:
        assert (sample.main / rel).read_text() == text
    assert (sample.main / "notes.txt").read_text() == "mine\n"
    assert (sample.main / "backend" / "manage.py").read_text() == "# edited in main\n"
    status = git(sample.main, "status", "--porcelain").splitlines()
    assert sorted(status) == [" M backend/manage.py", "?? notes.txt"]
    assert gone(sample, wt)
    out = capsys.readouterr().out
    assert f"main {old[:7]} → {new[:7]}" in out
    assert "deleted x (merged into main)" in out


def test_keep_leaves_the_session_on_the_landed_commit(sample: Sample, srv: libtmux.Server) -> None:
    project, wt = made(sample, srv)
    land.run(project, "x", srv, "rebase", keep=True)
    assert rev(wt) == rev(sample.main, "main") == rev(sample.main, "x")
    assert "x" in sample.registry()
    assert git(wt, "status", "--porcelain", "--untracked-files=no") == ""


def test_squash_of_one_commit_keeps_its_message_and_author(
    sample: Sample, srv: libtmux.Server
) -> None:
    project = sample.project(add_steps=NO_TMUX)
    add_op.run(project, "x", srv)
    wt = sample.main.parent / "tally-x"
    (wt / "one.txt").write_text("1\n")
    git(wt, "add", "one.txt")
    git(
        wt,
        "-c",
        "user.name=Ada",
        "-c",
        "user.email=ada@example.invalid",
        "commit",
        "-q",
        "--author",
        "Ada <ada@example.invalid>",
        "-m",
        "Add one\n\nBecause.",
    )
    land.run(project, "x", srv, "squash")
    assert git(sample.main, "log", "-1", "--format=%an <%ae>|%B").strip() == (
        "Ada <ada@example.invalid>|Add one\n\nBecause."
    )


@pytest.mark.parametrize("method", ["rebase", "squash", "merge"])
def test_git_without_an_identity_is_one_line_and_changes_nothing(
    sample: Sample, srv: libtmux.Server, monkeypatch: pytest.MonkeyPatch, method: str
) -> None:
    project, wt = made(sample, srv)
    for key in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL"):
        monkeypatch.delenv(key)
    git(sample.main, "config", "user.useConfigOnly", "true")  # no guessing from the host name
    before = git_state(sample.main, wt)
    with pytest.raises(TallyError, match=r"git does not know who you are, .* git config --global"):
        land.run(project, "x", srv, method)
    assert git_state(sample.main, wt) == before


@pytest.mark.parametrize("method", ["squash", "merge"])
def test_message_names_the_new_commit(sample: Sample, srv: libtmux.Server, method: str) -> None:
    project, _ = made(sample, srv)
    land.run(project, "x", srv, method, message="Land the a and b files")
    assert subjects(sample.main, "-1") == ["Land the a and b files"]


# --- pre_land -------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["rebase", "squash", "merge"])
def test_pre_land_runs_in_the_worktree_on_what_would_land(
    sample: Sample, srv: libtmux.Server, method: str
) -> None:
    seen = sample.home / "pre-land.txt"
    hook = f'test -f backend/api.py && test -f feature/b.txt && echo "$TALLY_SESSION $PWD" > {seen}'
    project, wt = made(sample, srv, hooks={"pre_land": [hook]})
    land.run(project, "x", srv, method)
    assert seen.read_text() == f"x {wt}\n"


@pytest.mark.parametrize("method", ["rebase", "squash", "merge"])
def test_a_failing_pre_land_leaves_everything_as_it_was(
    sample: Sample, srv: libtmux.Server, method: str
) -> None:
    project, wt = made(sample, srv, hooks={"pre_land": ["echo tests fail >&2; exit 3"]})
    before = git_state(sample.main, wt)
    with pytest.raises(TallyError, match=r"hook pre_land .* failed with status 3: tests fail"):
        land.run(project, "x", srv, method)
    assert git_state(sample.main, wt) == before
    assert "x" in sample.registry()


def test_a_pre_land_hook_that_changes_files_stops_land(sample: Sample, srv: libtmux.Server) -> None:
    project, wt = made(sample, srv, hooks={"pre_land": ["echo formatted >> feature/a.txt"]})
    old, tip = rev(sample.main), rev(wt)
    with pytest.raises(TallyError, match=r"pre_land hook left changes: M feature/a.txt"):
        land.run(project, "x", srv, "rebase")
    assert (rev(sample.main, "main"), rev(wt)) == (old, tip)
    assert (wt / "feature/a.txt").read_text() == "a\nformatted\n"  # the hook's, kept


def test_what_pre_land_leaves_is_checked_again_before_the_remove(
    sample: Sample, srv: libtmux.Server
) -> None:
    """The landing changes the worktree and runs pre_land: remove looks again at what it
    would delete (here a database the hook made, which git ignores and tally.protect
    keeps): the branch has landed, the session stays."""
    project, wt = made(sample, srv, hooks={"pre_land": ["touch feature/db.sqlite3"]})
    said = (
        r"x landed in main, but the session stays: session x has work that would be lost: "
        r"1 git-ignored file\(s\) that tally.protect keeps: feature/db.sqlite3"
    )
    with pytest.raises(TallyError, match=said):
        land.run(project, "x", srv, "rebase")
    assert (wt / "feature" / "db.sqlite3").exists() and "x" in sample.registry()
    assert rev(sample.main, "main") == rev(wt)


# --- conflicts and refusals: nothing changes ------------------------------------------------


@pytest.mark.parametrize("method", ["rebase", "squash", "merge"])
def test_a_conflict_names_the_files_and_changes_nothing(
    sample: Sample, srv: libtmux.Server, method: str
) -> None:
    project, wt = made(sample, srv)
    commit(wt, "backend/manage.py", "# the branch's\n", "branch edits manage.py")
    commit(sample.main, "backend/manage.py", "# main's\n", "main edits manage.py")
    before = git_state(sample.main, wt)
    with pytest.raises(TallyError, match=r"conflict in backend/manage.py; nothing changed"):
        land.run(project, "x", srv, method)
    assert git_state(sample.main, wt) == before


def _dirty_worktree(sample: Sample, wt: Path) -> None:
    (wt / "notes.txt").write_text("mine\n")


def _main_on_another_branch(sample: Sample, wt: Path) -> None:
    git(sample.main, "switch", "-q", "-c", "other")


def _main_detached(sample: Sample, wt: Path) -> None:
    git(sample.main, "switch", "-q", "--detach")


def _main_dirty_where_landing_writes(sample: Sample, wt: Path) -> None:
    (sample.main / "feature").mkdir()
    (sample.main / "feature" / "a.txt").write_text("main's own a\n")


def _main_mid_merge(sample: Sample, wt: Path) -> None:
    git(sample.main, "switch", "-q", "-c", "side", "main~1")
    commit(sample.main, "backend/api.py", "api = 2\n", "side")
    git(sample.main, "switch", "-q", "main")
    subprocess.run(["git", "merge", "side"], cwd=sample.main, capture_output=True)


REFUSALS: list[tuple[Callable[[Sample, Path], None], str]] = [
    (
        _dirty_worktree,
        r"session x cannot land: 1 uncommitted or untracked change\(s\): \?\? notes.txt",
    ),
    (
        _main_on_another_branch,
        r"the main checkout is on other, not main; switch it with: git -C .* switch main",
    ),
    (_main_detached, r"the main checkout is on a detached HEAD, not main"),
    (
        _main_dirty_where_landing_writes,
        r"uncommitted changes in 1 file\(s\) that landing x changes: feature/a.txt; commit or",
    ),
    (_main_mid_merge, r"the main checkout is in the middle of a merge"),
]


@pytest.mark.parametrize(
    ("make", "says"),
    REFUSALS,
    ids=[
        "worktree-dirty",
        "main-on-another-branch",
        "main-detached",
        "main-dirty-in-a-landing-file",
        "main-mid-merge",
    ],
)
def test_refusals_name_the_fix_and_change_nothing(
    sample: Sample, srv: libtmux.Server, make: Callable[[Sample, Path], None], says: str
) -> None:
    project, wt = made(sample, srv)
    make(sample, wt)
    before = git_state(sample.main, wt)
    for dry_run in (True, False):
        with pytest.raises(TallyError, match=says):
            land.check(project, "x", "rebase") if dry_run else land.run(project, "x", srv, "rebase")
    assert not land.plan(project, "x", "rebase")
    assert git_state(sample.main, wt) == before


def test_a_session_without_commits_has_nothing_to_land(sample: Sample, srv: libtmux.Server) -> None:
    project = sample.project(add_steps=NO_TMUX)
    add_op.run(project, "x", srv)
    with pytest.raises(TallyError, match="x has no commit of its own yet: nothing to land"):
        land.run(project, "x", srv, "rebase")
    assert "x" in sample.registry()


def test_a_message_is_refused_for_a_rebase(sample: Sample, srv: libtmux.Server) -> None:
    project, _ = made(sample, srv)
    with pytest.raises(TallyError, match="--message is for --squash and --merge"):
        land.run(project, "x", srv, "rebase", message="m")


def test_dry_run_lists_the_commits_and_changes_nothing(
    sample: Sample, srv: libtmux.Server, capsys: pytest.CaptureFixture[str]
) -> None:
    project, wt = made(sample, srv, hooks={"pre_land": ["pytest -q"]})
    before = git_state(sample.main, wt)
    capsys.readouterr()
    assert land.plan(project, "x", "squash")
    out = capsys.readouterr().out
    a, b = git(wt, "log", "--format=%h %s", "-2").splitlines()[::-1]
    assert "2 commit(s) into one, onto main" in out and ": x" in out
    assert out.index(a) < out.index(b)
    assert "pre-land     pytest -q" in out
    assert "remove       session x and its branch x" in out
    assert git_state(sample.main, wt) == before


# --- already merged on the forge ------------------------------------------------------------


@pytest.mark.parametrize("how", ["squash", "rebase"])
def test_a_branch_merged_on_the_forge_has_nothing_to_land(
    sample: Sample, srv: libtmux.Server, capsys: pytest.CaptureFixture[str], how: str
) -> None:
    bare = add_origin(sample.main)
    project, wt = made(sample, srv)
    git(wt, "push", "-q", "-u", "origin", "x")
    forge_merge(bare, "x", how)
    git(sample.main, "fetch", "-q", "--prune")
    old = rev(sample.main, "main")
    capsys.readouterr()
    land.run(project, "x", srv, "rebase")
    out = capsys.readouterr().out
    verb = {"squash": "squash-merged", "rebase": "rebase-merged"}[how]
    assert f"nothing to land: x is {verb} into origin/main already" in out
    assert f"deleted x ({verb} into origin/main)" in out
    assert rev(sample.main, "main") == old
    assert gone(sample, wt)


def test_nothing_to_land_asks_removes_questions_once(
    sample: Sample, srv: libtmux.Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing landed, nothing changed since land's checks: remove does not ask again."""
    project, wt = made(sample, srv)
    git(sample.main, "merge", "-q", "--no-edit", "x")
    path, log = counting(tmp_path / "counting", "git")
    monkeypatch.setenv("PATH", path)
    land.run(project, "x", srv, "rebase")
    asked = [
        [w for w in line.split()[1:] if w[0] != "-"][0] for line in log.read_text().splitlines()
    ]
    assert gone(sample, wt)
    assert [asked.count(c) for c in ("status", "ls-files", "stash")] == [1, 1, 1], asked


# --- Ctrl-C ---------------------------------------------------------------------------------

WAIT = 'touch "$MARK"; while [ ! -e "$RELEASE" ]; do sleep 0.05; done'


def _interrupt_land(main: Path, tmp_path: Path, *flags: str) -> tuple[int, str, str]:
    """Run `inv session.land x`; when a hook of the test says it has reached its moment
    (MARK), send SIGINT, then let the hook go on (RELEASE). ARM: a hook's one-shot switch."""
    mark, release, arm = tmp_path / "mark", tmp_path / "release", tmp_path / "arm"
    arm.touch()
    env = {**os.environ, "MARK": str(mark), "RELEASE": str(release), "ARM": str(arm)}
    proc = subprocess.Popen(
        [str(VENV_BIN / "inv"), "session.land", "x", *flags],
        cwd=main,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        poll(lambda: mark.exists() or proc.poll() is not None, timeout=30)
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGINT)
        release.touch()  # git goes on to its end; land undoes it all then (or not: too late)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, out, err


def _git_hook(sample: Sample, name: str, body: str) -> None:
    hook = sample.main / ".git" / "hooks" / name
    hook.write_text(f"#!/bin/sh\n{body}\n")
    hook.chmod(0o755)


def _during_the_rebase(sample: Sample) -> dict[str, Any]:
    _git_hook(sample, "pre-rebase", WAIT)
    return {}


def _during_the_merge_in_the_worktree(sample: Sample) -> dict[str, Any]:
    # the first ref git moves in the worktree: git is in the middle of its merge
    _git_hook(
        sample,
        "reference-transaction",
        'cat > /dev/null; if [ "$1" = prepared ] && [ -e "$ARM" ]; then rm "$ARM"; '
        + WAIT
        + "; fi",
    )
    return {}


def _during_pre_land(sample: Sample) -> dict[str, Any]:
    return {"hooks": {"pre_land": ['touch "$MARK"; sleep 30']}}


MOMENTS = [
    (_during_the_rebase, "rebase"),
    (_during_the_rebase, "squash"),
    (_during_the_merge_in_the_worktree, "merge"),
    (_during_pre_land, "rebase"),
    (_during_pre_land, "squash"),
    (_during_pre_land, "merge"),
]


@pytest.mark.parametrize(
    ("moment", "method"),
    MOMENTS,
    ids=[
        "rebase-in-git",
        "squash-in-git",
        "merge-in-git",
        "rebase-pre-land",
        "squash-pre-land",
        "merge-pre-land",
    ],
)
def test_ctrl_c_leaves_the_repository_as_it_was(
    sample: Sample,
    srv: libtmux.Server,
    tmp_path: Path,
    moment: Callable[[Sample], dict[str, Any]],
    method: str,
) -> None:
    settings = moment(sample)
    sample.write_config(add_steps=NO_TMUX, **settings)
    _, wt = made(sample, srv, **settings)
    before = git_state(sample.main, wt)
    code, _, err = _interrupt_land(sample.main, tmp_path, f"--{method}")
    assert code == 130, err
    assert "interrupted" in err
    assert git_state(sample.main, wt) == before
    assert "x" in sample.registry()


def test_ctrl_c_as_main_moves_lands_and_keeps_the_session(
    sample: Sample, srv: libtmux.Server, tmp_path: Path
) -> None:
    """Past the point of no return (main's ref is being written) the landing completes;
    the session stays, and land says how to remove it."""
    _git_hook(
        sample,
        "reference-transaction",
        'if grep -q " refs/heads/main$" && [ "$1" = committed ] && [ -n "$MARK" ]; then '
        + WAIT
        + "; fi",
    )
    sample.write_config(add_steps=NO_TMUX)
    _, wt = made(sample, srv)
    tip = rev(wt)
    code, _, err = _interrupt_land(sample.main, tmp_path)
    assert code == 130, err
    assert "interrupted after x landed in main; the session stays" in err
    assert subjects(sample.main, "-2") == ["add b", "add a"]
    assert rev(sample.main, "main") == rev(wt) != tip
    assert "x" in sample.registry()


# --- the command line -----------------------------------------------------------------------


@pytest.mark.parametrize("prog", ["inv", "tally-session"])
def test_land_from_the_command_line_takes_its_method_from_config(
    sample: Sample, srv: libtmux.Server, prog: str
) -> None:
    sample.write_config(add_steps=NO_TMUX, land={"method": "squash"})
    _, wt = made(sample, srv)
    old = rev(sample.main)
    task = "session.land" if prog == "inv" else "land"
    r = run_cli([prog, task, "x", "--dry-run"], sample.main)
    assert r.returncode == 0, r.stderr
    assert "squash       2 commit(s) into one" in r.stdout
    r = run_cli([prog, task, "x", "--rebase", "--merge"], sample.main)
    assert (r.returncode, r.stderr.strip()) == (1, "✗ give one of --rebase, --squash, --merge")
    (wt / "notes.txt").write_text("mine\n")
    r = run_cli([prog, task, "x", "--dry-run"], sample.main)
    assert r.returncode == 1 and "refuse       session x cannot land" in r.stdout
    (wt / "notes.txt").unlink()
    r = run_cli([prog, task, "x"], sample.main)
    assert r.returncode == 0, r.stderr
    assert rev(sample.main, "main~1") == old  # one commit: squashed, as configured
    assert "x" not in sample.registry()
