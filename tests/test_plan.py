"""`--dry-run` plans against real git and tmux: each says what the real command then does.

Every test runs the plan, checks that nothing changed, and where it can runs the real
command afterwards to show the plan was right (the same refusal, the same copies, the same
window lines).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import libtmux
import pytest
from conftest import Sample, git

from tally_tasks import tmux
from tally_tasks.errors import TallyError
from tally_tasks.operations import add as add_op
from tally_tasks.operations import remove as remove_op
from tally_tasks.steps import tmux as tmux_step

NO_TMUX = ["ports", "worktree", "links", "env", "claude_perms"]

Setup = Callable[[Sample, libtmux.Server], str]


def wt_of(sample: Sample, slug: str) -> Path:
    return sample.main.parent / f"tally-{slug}"


def state(sample: Sample, srv: libtmux.Server) -> dict[str, Any]:
    """Everything add and remove touch."""
    reg = sample.main / ".tally-sessions"
    return {
        "registry": reg.read_bytes() if reg.exists() else None,
        "branches": git(sample.main, "branch", "--format=%(refname:short)"),
        "worktrees": git(sample.main, "worktree", "list", "--porcelain"),
        "status": git(sample.main, "status", "--porcelain", "--ignored"),
        "folders": sorted(p.name for p in sample.main.parent.iterdir()),
        "tmux": tmux.running(srv),
    }


def planned(out: str) -> list[tuple[str, str]]:
    """The plan's `· step  detail` lines as (step, detail)."""
    return [
        (parts[1], parts[2] if len(parts) > 2 else "")
        for line in out.splitlines()
        if line.startswith("· ") and (parts := line.split(None, 2))
    ]


def details(lines: list[tuple[str, str]], step: str) -> list[str]:
    return [d for s, d in lines if s == step]


def add_x(sample: Sample, srv: libtmux.Server, **overrides: Any) -> Path:
    add_op.run(sample.project(add_steps=NO_TMUX, **overrides), "x", srv)
    return wt_of(sample, "x")


# --- remove: refusals ---------------------------------------------------------------------


def not_a_worktree(sample: Sample, srv: libtmux.Server) -> str:
    folder = wt_of(sample, "x")
    entry = {"x": {"worktree": str(folder), "branch": "x"}}
    (sample.main / ".tally-sessions").write_text(json.dumps(entry))
    folder.mkdir()
    (folder / "notes.txt").write_text("not yours\n")
    return "x"


def owned_by_another(sample: Sample, srv: libtmux.Server) -> str:
    add_op.run(sample.project(add_steps=NO_TMUX), "dup", srv)
    reg = sample.registry()
    reg["evil"] = {"worktree": reg["dup"]["worktree"], "branch": "evil"}
    (sample.main / ".tally-sessions").write_text(json.dumps(reg))
    return "evil"


def other_branch(sample: Sample, srv: libtmux.Server) -> str:
    git(add_x(sample, srv), "switch", "-q", "-c", "experiment")
    return "x"


def locked(sample: Sample, srv: libtmux.Server) -> str:
    git(sample.main, "worktree", "lock", "--reason", "on a USB disk", str(add_x(sample, srv)))
    return "x"


def user_work(sample: Sample, srv: libtmux.Server) -> str:
    (add_x(sample, srv) / "notes.txt").write_text("mine\n")
    return "x"


REMOVE = [
    pytest.param(not_a_worktree, False, "is not a git worktree of", id="not-a-worktree"),
    pytest.param(not_a_worktree, True, "is not a git worktree of", id="not-a-worktree-force"),
    pytest.param(owned_by_another, False, "is the worktree of session 'dup' too", id="owned"),
    pytest.param(owned_by_another, True, "is the worktree of session 'dup' too", id="owned-force"),
    pytest.param(other_branch, False, "the worktree is on experiment, not x", id="branch"),
    pytest.param(other_branch, True, None, id="branch-force"),
    pytest.param(locked, False, "the worktree is locked (on a USB disk)", id="locked"),
    pytest.param(locked, True, None, id="locked-force"),
    pytest.param(user_work, False, "1 uncommitted or untracked change(s)", id="work"),
    pytest.param(user_work, True, None, id="work-force"),
]


@pytest.mark.parametrize(("setup", "force", "refusal"), REMOVE)
def test_remove_plan_refuses_exactly_where_remove_refuses(
    sample: Sample,
    srv: libtmux.Server,
    capsys: pytest.CaptureFixture[str],
    setup: Setup,
    force: bool,
    refusal: str | None,
) -> None:
    name = setup(sample, srv)
    before = state(sample, srv)
    capsys.readouterr()
    remove_op.plan(sample.project(), name, srv, force, keep_branch=False)
    lines = planned(capsys.readouterr().out)
    assert state(sample, srv) == before
    if refusal is None:
        assert details(lines, "refuse") == []
        assert details(lines, "worktree") == [f"remove {wt_of(sample, name)}"]
        remove_op.run(sample.project(), name, srv, force=force)
        assert name not in sample.registry()
        return
    refused = details(lines, "refuse")
    assert any(refusal in d for d in refused), refused
    assert refused[-1].startswith("nothing would be removed")
    assert [s for s, _ in lines] == ["refuse"] * len(refused)
    with pytest.raises(TallyError, match=re.escape(refusal)):
        remove_op.run(sample.project(), name, srv, force=force)
    assert state(sample, srv) == before


# --- remove: hooks and left-over dev servers ----------------------------------------------


@pytest.mark.parametrize("gone", [False, True], ids=["worktree-there", "worktree-gone"])
def test_remove_plan_lists_pre_remove_hooks_or_says_they_would_not_run(
    sample: Sample, srv: libtmux.Server, capsys: pytest.CaptureFixture[str], gone: bool
) -> None:
    hooks = {"pre_remove": ["touch {name}.HOOK", "echo bye"]}
    wt = add_x(sample, srv, hooks=hooks)
    if gone:
        shutil.rmtree(wt)
    capsys.readouterr()
    remove_op.plan(sample.project(hooks=hooks), "x", srv, force=False, keep_branch=False)
    shown = details(planned(capsys.readouterr().out), "pre-remove")
    if gone:
        assert shown == [f"not run: worktree {wt} is gone (2 hook(s))"]
    else:
        assert shown == ["touch x.HOOK", "echo bye"]
        assert not (wt / "x.HOOK").exists()


@pytest.mark.parametrize("inside", [True, False], ids=["in-the-worktree", "elsewhere"])
def test_remove_plan_lists_the_dev_servers_it_would_stop_and_stops_none(
    sample: Sample,
    srv: libtmux.Server,
    capsys: pytest.CaptureFixture[str],
    serve: Callable[[int, Path], subprocess.Popen[bytes]],
    tmp_path: Path,
    inside: bool,
) -> None:
    wt = add_x(sample, srv)
    port = sample.registry()["x"]["backend_port"]
    proc = serve(port, wt / "backend" if inside else tmp_path)
    capsys.readouterr()
    remove_op.plan(sample.project(), "x", srv, force=False, keep_branch=False)
    shown = details(planned(capsys.readouterr().out), "processes")
    assert proc.poll() is None
    if inside:
        [line] = shown
        assert line.startswith(f"stop pid {proc.pid} (") and "http.server" in line, line
    else:
        assert shown == []


# --- add ----------------------------------------------------------------------------------


def test_add_plan_lists_worktreeinclude_copies_as_the_env_step_makes_them(
    sample: Sample, srv: libtmux.Server, capsys: pytest.CaptureFixture[str]
) -> None:
    (sample.main / "backend" / "local.cfg").write_text("DEBUG=1\n")
    (sample.main / "secrets").mkdir()
    (sample.main / "secrets" / "key.pem").write_text("k\n")
    with (sample.main / ".git" / "info" / "exclude").open("a") as f:
        f.write("backend/local.cfg\nsecrets/\n")
    (sample.main / ".worktreeinclude").write_text(
        "backend/local.cfg\nsecrets/\nbackend/.env\nfrontend/node_modules\nbackend/db.sqlite3\n"
    )
    before = state(sample, srv)
    add_op.plan(sample.project(add_steps=NO_TMUX), "x", srv)
    env = details(planned(capsys.readouterr().out), "env")
    assert state(sample, srv) == before
    assert env == [
        "backend/.env  (copy)",
        "frontend/.env  (copy)",
        "backend/local.cfg  (copy, from .worktreeinclude)",
        "secrets  (copy, from .worktreeinclude)",
    ]
    wt = add_x(sample, srv)
    for rel in ("backend/.env", "frontend/.env", "backend/local.cfg", "secrets/key.pem"):
        assert (wt / rel).is_file() and not (wt / rel).is_symlink(), rel
    assert (wt / "frontend" / "node_modules").is_symlink()


WINDOWS = [
    {"name": "both", "dir": "backend", "cmd": "echo {name}; python manage.py runserver 1"},
    {"name": "solo", "dir": "frontend", "cmd": "npm run dev -- --port {frontend_port}"},
    {"name": "root", "dir": ".", "cmd": "claude -n {session}"},
    {"name": "idle", "dir": "", "cmd": ""},
]


def test_add_plan_shows_the_window_lines_the_real_add_types(
    sample: Sample, srv: libtmux.Server, capsys: pytest.CaptureFixture[str]
) -> None:
    before = state(sample, srv)
    add_op.plan(sample.project(windows=WINDOWS), "x", srv)
    shown = details(planned(capsys.readouterr().out), "tmux")
    assert state(sample, srv) == before
    wt = wt_of(sample, "x")
    assert shown[0] == (
        f"tally-x:both in {wt / 'backend'}: "
        "export TALLY_ACTIVATED=yes && ( echo x; python manage.py runserver 1 )"
    )
    project = sample.project(windows=WINDOWS)
    session = add_op.run(project, "x", srv)
    assert tmux.window_names(srv, "tally-x") == ["both", "solo", "root", "idle"]
    typed = [
        f"tally-x:{r.name} in {r.dir}: {r.keys}" if r.keys else f"tally-x:{r.name} in {r.dir}"
        for r in tmux_step.window_runs(project, session)
    ]
    assert [line.removesuffix(" (an idle shell)") for line in shown] == typed


def folder_in_place(sample: Sample, srv: libtmux.Server) -> None:
    wt_of(sample, "x").mkdir()
    (wt_of(sample, "x") / "notes.txt").write_text("not yours\n")


def foreign_tmux(sample: Sample, srv: libtmux.Server) -> None:
    srv.cmd("new-session", "-d", "-s", "tally-x")


def branch_elsewhere(sample: Sample, srv: libtmux.Server) -> None:
    git(sample.main, "worktree", "add", "-q", "-b", "x", str(sample.main.parent / "other"))


def worktree_on_other_branch(sample: Sample, srv: libtmux.Server) -> None:
    git(sample.main, "worktree", "add", "-q", "-b", "y", str(wt_of(sample, "x")))


def window_dir_typo(sample: Sample, srv: libtmux.Server) -> None:
    sample.config["windows"] = [{"name": "backend", "dir": "backnd", "cmd": "true"}]


ADD = [
    pytest.param(folder_in_place, "already exists and is not this session's worktree", id="folder"),
    pytest.param(foreign_tmux, "a tmux session tally-x already runs", id="tmux"),
    pytest.param(branch_elsewhere, "branch x is already checked out at", id="branch-elsewhere"),
    pytest.param(worktree_on_other_branch, "is a worktree on y, not x", id="other-branch"),
    pytest.param(window_dir_typo, "config key tally.windows[0].dir: backnd/", id="window-dir"),
]


@pytest.mark.parametrize(("setup", "refusal"), ADD)
def test_add_plan_refuses_where_add_fails(
    sample: Sample,
    srv: libtmux.Server,
    capsys: pytest.CaptureFixture[str],
    setup: Callable[[Sample, libtmux.Server], None],
    refusal: str,
) -> None:
    setup(sample, srv)
    before = state(sample, srv)
    add_op.plan(sample.project(), "x", srv)
    lines = planned(capsys.readouterr().out)
    assert state(sample, srv) == before
    assert [s for s, _ in lines] == ["refuse", "refuse"], lines
    assert refusal in lines[0][1]
    assert lines[1][1] == "nothing would be created"
    with pytest.raises(TallyError, match=re.escape(refusal)):
        add_op.run(sample.project(), "x", srv)
    after = state(sample, srv)
    assert "x" not in sample.registry()  # undone (an emptied registry file stays)
    assert (after["worktrees"], after["branches"]) == (before["worktrees"], before["branches"])


def test_remove_plan_keeps_a_branch_checked_out_elsewhere_as_remove_does(
    sample: Sample, srv: libtmux.Server, capsys: pytest.CaptureFixture[str]
) -> None:
    git(add_x(sample, srv), "switch", "-q", "-c", "experiment")
    git(sample.main, "switch", "-q", "x")
    capsys.readouterr()
    remove_op.plan(sample.project(), "x", srv, force=True, keep_branch=False)
    want = f"keep x: checked out at {sample.main}"
    assert details(planned(capsys.readouterr().out), "branch") == [want]
    remove_op.run(sample.project(), "x", srv, force=True)
    assert f"kept x: checked out at {sample.main}" in capsys.readouterr().out
    assert "x" in git(sample.main, "branch", "--format=%(refname:short)").split()
