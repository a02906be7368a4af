"""The session pipeline against real git and a real tmux server: add, steps, remove, resume, rows.

The stand-ins `python`, `npm` and `claude` record what each tmux window ran.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import threading
from pathlib import Path
from typing import Any

import libtmux
import pytest
from conftest import (
    Sample,
    add_origin,
    add_submodule,
    commit,
    forge_merge,
    git,
    init_submodules,
    poll,
    proc_walks,
    run_cli,
)

from tally_tasks import sessions, status, tmux
from tally_tasks.errors import TallyError
from tally_tasks.operations import add as add_op
from tally_tasks.operations import remove as remove_op
from tally_tasks.operations import resume as resume_op
from tally_tasks.session import Project, Session
from tally_tasks.steps import claude_perms as claude_step
from tally_tasks.steps import env as env_step
from tally_tasks.steps import links as links_step
from tally_tasks.steps import ports as ports_step
from tally_tasks.steps import tmux as tmux_step
from tally_tasks.steps import worktree as worktree_step

STEPS = ["ports", "worktree", "links", "env", "claude_perms", "tmux"]
NO_TMUX = ["ports", "worktree", "links", "env", "claude_perms"]


def wt_of(sample: Sample, slug: str) -> Path:
    return sample.main.parent / f"tally-{slug}"


def branches(main: Path) -> set[str]:
    return set(git(main, "branch", "--format=%(refname:short)").split())


def worktrees(main: Path) -> list[str]:
    out = git(main, "worktree", "list", "--porcelain")
    return [ln.split(" ", 1)[1] for ln in out.splitlines() if ln.startswith("worktree ")]


def session_id(srv: libtmux.Server, name: str) -> str:
    """tmux's id for session `name` (a recreated session gets a new one)."""
    out = srv.cmd("list-sessions", "-F", "#{session_name} #{session_id}").stdout
    [found] = [line.split()[1] for line in out if line.split()[0] == name]
    return str(found)


def main_data_intact(main: Path) -> None:
    index = main / "frontend" / "node_modules" / "pkg" / "index.js"
    assert index.read_text() == "module.exports = 1\n"
    with sqlite3.connect(main / "backend" / "db.sqlite3") as db:
        assert db.execute("select count(*) from t").fetchone() == (0,)
    assert (main / "backend" / ".env").read_text() == "SECRET_KEY=s3cret\n"


def by_session(calls: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for call in calls:
        found.setdefault(call["env"]["TALLY_SESSION"], []).append(call)
    return found


def add(sample: Sample, srv: libtmux.Server, name: str, **overrides: Any) -> Session:
    return add_op.run(sample.project(**overrides), name, srv)


def assert_nothing_left(sample: Sample, srv: libtmux.Server, name: str, slug: str) -> None:
    assert name not in sample.registry()
    assert not wt_of(sample, slug).exists()
    assert worktrees(sample.main) == [str(sample.main)]
    assert name not in branches(sample.main)
    assert f"tally-{slug}" not in tmux.running(srv)


# --- add ------------------------------------------------------------------------------------


def test_add_starts_every_window_activated_in_its_folder(
    sample: Sample, srv: libtmux.Server
) -> None:
    backend, frontend = sample.config["ports"]["backend"], sample.config["ports"]["frontend"]
    session = add(sample, srv, "feature-auth")
    wt = wt_of(sample, "feature-auth")
    assert (session.worktree, session.branch, session.tmux_name) == (
        wt,
        "feature-auth",
        "tally-feature-auth",
    )
    assert session.ports == {"backend": backend, "frontend": frontend}

    want = {
        "python": (["manage.py", "runserver", str(backend)], wt / "backend"),
        "npm": (["run", "dev", "--", "--port", str(frontend), "--strictPort"], wt / "frontend"),
        "claude": (["-n", "tally-feature-auth"], wt),
    }
    for prog, (argv, cwd) in want.items():
        [call] = sample.wait_calls(prog)
        assert (call["argv"], call["cwd"], call["activated"]) == (argv, str(cwd), "yes"), prog
        assert call["env"]["TALLY_SESSION"] == "feature-auth"
        assert call["env"]["TALLY_BACKEND_PORT"] == str(backend)
        assert call["env"]["TALLY_FRONTEND_PORT"] == str(frontend)
    assert tmux.window_names(srv, "tally-feature-auth") == ["backend", "frontend", "claude"]

    assert git(wt, "branch", "--show-current").strip() == "feature-auth"
    assert git(sample.main, "rev-parse", "feature-auth") == git(sample.main, "rev-parse", "main")
    for link in ("frontend/node_modules", "backend/db.sqlite3"):
        assert (wt / link).is_symlink()
        assert os.readlink(wt / link) == str(sample.main / link)
    for copy in ("backend/.env", "frontend/.env"):
        assert not (wt / copy).is_symlink()
        assert (wt / copy).read_text() == (sample.main / copy).read_text()
    assert (wt / "backend" / ".env").stat().st_mode & 0o777 == 0o600

    entry = sample.registry()["feature-auth"]
    assert list(entry)[:4] == ["backend_port", "frontend_port", "worktree", "branch"]
    assert entry["backend_port"] == backend
    assert entry["frontend_port"] == frontend
    assert entry["worktree"] == str(wt)
    assert entry["branch"] == "feature-auth"
    assert "state" not in entry


def test_two_sessions_get_distinct_ports(sample: Sample, srv: libtmux.Server) -> None:
    a = add(sample, srv, "a", add_steps=NO_TMUX)
    b = add(sample, srv, "b", add_steps=NO_TMUX)
    reg = sample.registry()
    assert reg["a"]["backend_port"] == a.ports["backend"]
    assert reg["b"]["backend_port"] == b.ports["backend"]
    numbers = [*a.ports.values(), *b.ports.values()]
    assert len(set(numbers)) == 4
    for port, base in sample.config["ports"].items():
        assert a.ports[port] >= base and b.ports[port] >= base


def test_a_running_session_whose_name_begins_with_the_new_ones_is_not_its(
    sample: Sample, srv: libtmux.Server
) -> None:
    """tmux takes an absent session's name as a prefix unless told not to: adding x
    while xy runs was refused as "a tmux session tally-x already runs"."""
    add(sample, srv, "xy")
    add(sample, srv, "x")
    assert {"tally-x", "tally-xy"} <= tmux.running(srv)


def test_a_name_with_a_slash_gets_a_flat_folder_and_tmux_name(
    sample: Sample, srv: libtmux.Server
) -> None:
    session = add(sample, srv, "feature/auth")
    wt = wt_of(sample, "feature-auth")
    assert session.worktree == wt
    assert git(wt, "branch", "--show-current").strip() == "feature/auth"
    assert "feature/auth" in branches(sample.main)
    assert tmux.running(srv) == {"tally-feature-auth"}
    assert sample.registry()["feature/auth"]["branch"] == "feature/auth"


def test_a_name_whose_slug_clashes_is_refused(sample: Sample, srv: libtmux.Server) -> None:
    add(sample, srv, "feature/auth", add_steps=NO_TMUX)
    before = sample.registry()
    with pytest.raises(TallyError, match="clashes with existing session 'feature/auth'"):
        add(sample, srv, "feature-auth")
    assert sample.registry() == before
    assert "feature-auth" not in branches(sample.main)
    assert git(wt_of(sample, "feature-auth"), "branch", "--show-current").strip() == "feature/auth"
    assert tmux.running(srv) == set()


def test_adding_a_finished_session_again_points_to_resume(
    sample: Sample, srv: libtmux.Server
) -> None:
    add(sample, srv, "x")
    before = sample.registry()
    sid = session_id(srv, "tally-x")
    with pytest.raises(TallyError, match=r"session 'x' already exists; .*resume"):
        add(sample, srv, "x")
    assert sample.registry() == before
    assert session_id(srv, "tally-x") == sid
    assert wt_of(sample, "x").is_dir()


def test_add_on_an_existing_branch_checks_it_out(sample: Sample, srv: libtmux.Server) -> None:
    git(sample.main, "branch", "x")
    add(sample, srv, "x", add_steps=NO_TMUX)
    assert git(wt_of(sample, "x"), "branch", "--show-current").strip() == "x"


def test_add_refuses_a_foreign_tmux_session_of_the_same_name(
    sample: Sample, srv: libtmux.Server, tmp_path: Path
) -> None:
    tmux.create(srv, "tally-x", [tmux.WindowRun("mine", tmp_path, "")], {})
    with pytest.raises(TallyError, match="a tmux session tally-x already runs"):
        add(sample, srv, "x")
    assert sample.registry() == {}
    assert not wt_of(sample, "x").exists()
    assert tmux.window_names(srv, "tally-x") == ["mine"]


MAIN_APPROVALS = {"allowedTools": ["Bash(npm test:*)"], "hasTrustDialogAccepted": True}


def write_claude_json(sample: Sample, projects: dict[str, Any] | None = None) -> Path:
    """A temp-HOME ~/.claude.json in which the main checkout is trusted, plus `projects`."""
    config = sample.home / ".claude.json"
    everything = {str(sample.main): MAIN_APPROVALS, **(projects or {})}
    config.write_text(json.dumps({"numStartups": 2, "projects": everything}))
    return config


def test_add_gives_the_worktree_mains_claude_approvals(sample: Sample, srv: libtmux.Server) -> None:
    config = write_claude_json(sample)
    add(sample, srv, "x", add_steps=NO_TMUX)
    projects = json.loads(config.read_text())["projects"]
    assert projects[str(wt_of(sample, "x"))] == MAIN_APPROVALS


# --- each step on its own mends what is missing -----------------------------------------------


@pytest.fixture
def made(sample: Sample, srv: libtmux.Server) -> tuple[Project, Session]:
    """A session made without tmux: the file steps' tests need no windows."""
    project = sample.project(add_steps=NO_TMUX)
    add_op.run(project, "x", srv)
    return project, sessions.get(project, "x")


def test_step_links_recreates_a_deleted_link(sample: Sample, made: tuple[Project, Session]) -> None:
    project, session = made
    link = session.worktree / "frontend" / "node_modules"
    link.unlink()
    links_step.apply(project, session)
    assert os.readlink(link) == str(sample.main / "frontend" / "node_modules")
    assert (link / "pkg" / "index.js").is_file()
    links_step.apply(project, session)  # twice is harmless
    assert link.is_symlink()


def test_step_links_leaves_a_real_folder_in_a_links_place(
    sample: Sample, made: tuple[Project, Session], capsys: pytest.CaptureFixture[str]
) -> None:
    project, session = made
    link = session.worktree / "frontend" / "node_modules"
    link.unlink()
    link.mkdir()
    (link / "mine.js").write_text("mine\n")
    links_step.apply(project, session)
    assert not link.is_symlink()
    assert (link / "mine.js").read_text() == "mine\n"
    assert "exists and is not a link, left alone" in capsys.readouterr().out


def test_step_env_recopies_a_deleted_copy_and_keeps_an_edited_one(
    sample: Sample, made: tuple[Project, Session]
) -> None:
    project, session = made
    backend_env = session.worktree / "backend" / ".env"
    frontend_env = session.worktree / "frontend" / ".env"
    backend_env.unlink()
    frontend_env.write_text("VITE_X=mine\n")
    env_step.apply(project, session)
    assert backend_env.read_text() == "SECRET_KEY=s3cret\n"
    assert backend_env.stat().st_mode & 0o777 == 0o600
    assert frontend_env.read_text() == "VITE_X=mine\n"
    env_step.apply(project, session, force=True)
    assert frontend_env.read_text() == "VITE_X=1\n"


def test_step_tmux_readds_a_closed_window_only(sample: Sample, srv: libtmux.Server) -> None:
    project = sample.project()
    add_op.run(project, "x", srv)
    session = sessions.get(project, "x")
    for prog in ("python", "npm", "claude"):
        sample.wait_calls(prog)
    sid = session_id(srv, "tally-x")
    srv.cmd("kill-window", "-t", "=tally-x:=frontend")
    assert tmux.window_names(srv, "tally-x") == ["backend", "claude"]
    assert tmux_step.start(project, session, srv) == "mended"
    assert sorted(tmux.window_names(srv, "tally-x")) == ["backend", "claude", "frontend"]
    assert session_id(srv, "tally-x") == sid
    npm = sample.wait_calls("npm", 2)[-1]
    port = str(session.ports["frontend"])
    assert npm["argv"] == ["run", "dev", "--", "--port", port, "--strictPort"]
    assert (npm["cwd"], npm["activated"]) == (str(session.worktree / "frontend"), "yes")
    assert tmux_step.start(project, session, srv) == "running"
    assert len(tmux.window_names(srv, "tally-x")) == 3
    assert len(sample.calls("python")) == len(sample.calls("claude")) == 1


def test_step_tmux_starts_a_missing_session(
    sample: Sample, srv: libtmux.Server, made: tuple[Project, Session]
) -> None:
    _, session = made
    assert tmux_step.start(sample.project(), session, srv) == "started"
    assert tmux.window_names(srv, "tally-x") == ["backend", "frontend", "claude"]


@pytest.mark.parametrize("held", [False, True], ids=["ports-free", "backend-held"])
def test_step_tmux_names_a_port_another_program_holds_and_looks_only_then(
    sample: Sample,
    srv: libtmux.Server,
    made: tuple[Project, Session],
    held: bool,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Before the windows start: a port of the session's that another program listens on
    is named; while every port binds, /proc is not walked for holders (nobody holds one:
    `ports.holders` asks the kernel's socket tables first)."""
    _, session = made
    walked = proc_walks(monkeypatch)
    port = session.ports["backend"]
    with socket.socket() as other:
        if held:
            other.bind(("127.0.0.1", port))
            other.listen()
        assert tmux_step.start(sample.project(), session, srv) == "started"
    out = capsys.readouterr().out
    if held:
        assert walked
        assert f"backend port {port} is held by pid {os.getpid()}" in out
    else:
        assert walked == []
        assert "is held by" not in out


def test_a_worktree_deleted_by_hand_is_made_again_on_its_branch(
    sample: Sample, made: tuple[Project, Session]
) -> None:
    _, session = made
    wt = session.worktree
    (wt / "notes.txt").write_text("committed work\n")
    git(wt, "add", "notes.txt")
    git(wt, "commit", "-q", "-m", "work")
    shutil.rmtree(wt)
    r = run_cli(["inv", "session.worktree", "x"], sample.main)
    assert r.returncode == 0 and "(existing branch x)" in r.stdout, r.stdout + r.stderr
    for task in ("session.links", "session.env"):
        r = run_cli(["inv", task, "x"], sample.main)
        assert r.returncode == 0, (task, r.stderr)
    assert (wt / "notes.txt").read_text() == "committed work\n"  # the branch's commit is back
    assert (wt / "frontend" / "node_modules").is_symlink()
    assert (wt / "backend" / ".env").read_text() == "SECRET_KEY=s3cret\n"
    assert worktrees(sample.main) == [str(sample.main), str(wt)]


def test_step_ports_keeps_the_ports_a_session_has(made: tuple[Project, Session]) -> None:
    project, session = made
    assert ports_step.assign(project, "x")[0].ports == session.ports


@pytest.mark.parametrize(
    "call",
    [
        lambda p, srv: ports_step.assign(p, "nope")[0],
        lambda p, srv: sessions.get(p, "nope"),
        lambda p, srv: remove_op.run(p, "nope", srv),
        lambda p, srv: resume_op.run(p, srv, name="nope"),
    ],
    ids=["step_ports", "get", "remove", "resume"],
)
def test_an_unknown_session_is_a_clear_error(
    sample: Sample, srv: libtmux.Server, call: Any
) -> None:
    with pytest.raises(TallyError, match="no session named 'nope'"):
        call(sample.project(), srv)
    assert sample.registry() == {}


def test_steps_after_worktree_need_the_worktree(
    sample: Sample, srv: libtmux.Server, made: tuple[Project, Session]
) -> None:
    project, session = made
    shutil.rmtree(session.worktree)
    for step in (links_step.apply, env_step.apply, claude_step.apply):
        with pytest.raises(TallyError, match="is missing; run: .*worktree"):
            step(project, session)
    with pytest.raises(TallyError, match="is missing"):
        tmux_step.start(project, session, srv)
    main_data_intact(sample.main)


# --- rollback ---------------------------------------------------------------------------------


@pytest.mark.parametrize("step", STEPS)
def test_a_failing_step_undoes_everything_this_add_made(
    sample: Sample, srv: libtmux.Server, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    monkeypatch.setenv("TALLY_TEST_FAULT", f"fail:{step}")
    with pytest.raises(TallyError, match=f"^{step.replace('_', '-')} step failed: injected"):
        add(sample, srv, "x")
    assert sample.registry() == {}
    assert_nothing_left(sample, srv, "x", "x")
    assert tmux.running(srv) == set()
    main_data_intact(sample.main)


@pytest.mark.parametrize("step", ["claude_perms", "tmux"])
def test_rollback_drops_the_claude_json_entry_this_add_made(
    sample: Sample, srv: libtmux.Server, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    config = write_claude_json(sample)
    before = json.loads(config.read_text())
    monkeypatch.setenv("TALLY_TEST_FAULT", f"fail:{step}")
    with pytest.raises(TallyError, match="step failed"):
        add(sample, srv, "x")
    assert_nothing_left(sample, srv, "x", "x")
    assert json.loads(config.read_text()) == before


@pytest.mark.parametrize("with_config", [False, True], ids=["no-claude-json", "claude-json"])
def test_the_undo_list_names_only_what_this_add_made(
    sample: Sample, srv: libtmux.Server, monkeypatch: pytest.MonkeyPatch, with_config: bool
) -> None:
    if with_config:
        write_claude_json(sample)
    monkeypatch.setenv("TALLY_TEST_FAULT", "fail:tmux")
    with pytest.raises(TallyError) as e:
        add(sample, srv, "x")
    undone = str(e.value).rsplit("(undone: ", 1)[1].rstrip(")").split(", ")
    claude = ["Claude Code entry"] if with_config else []
    assert undone == ["tmux session", *claude, "worktree", "registry entry"]


def test_remove_says_it_dropped_the_claude_json_entry(
    sample: Sample, srv: libtmux.Server, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_claude_json(sample)
    session = add(sample, srv, "x")
    capsys.readouterr()
    remove_op.run(sample.project(), "x", srv)
    assert f"dropped the entry of {session.worktree} in {config}" in capsys.readouterr().out
    assert str(session.worktree) not in json.loads(config.read_text())["projects"]


def test_rollback_keeps_a_branch_that_was_there_before(
    sample: Sample, srv: libtmux.Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    git(sample.main, "branch", "x")
    monkeypatch.setenv("TALLY_TEST_FAULT", "fail:tmux")
    with pytest.raises(TallyError, match="tmux step failed"):
        add(sample, srv, "x")
    assert "x" in branches(sample.main)
    assert not wt_of(sample, "x").exists()
    assert sample.registry() == {}


def test_rollback_leaves_other_sessions_alone(
    sample: Sample, srv: libtmux.Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    add(sample, srv, "other", add_steps=NO_TMUX)
    before = sample.registry()
    monkeypatch.setenv("TALLY_TEST_FAULT", "fail:links")
    with pytest.raises(TallyError, match="links step failed"):
        add(sample, srv, "x")
    assert sample.registry() == before
    assert wt_of(sample, "other").is_dir()
    assert "other" in branches(sample.main)


def test_a_window_folder_the_worktree_lacks_fails_add_naming_key_and_folder(
    sample: Sample, srv: libtmux.Server
) -> None:
    """`backnd` used to run the backend's command in the worktree's root without a word."""
    windows = [
        {"name": "backend", "dir": "backnd", "cmd": "python manage.py runserver {backend_port}"}
    ]
    sample.write_config(windows=windows)
    with pytest.raises(TallyError) as e:
        add(sample, srv, "x", windows=windows)
    assert str(e.value).startswith(
        f"tmux step failed: {sample.main / 'invoke.yaml'}: config key tally.windows[0].dir: "
        "backnd/ does not exist in the worktree "
    )
    assert "did you mean backend?" in str(e.value)
    assert_nothing_left(sample, srv, "x", "x")
    assert sample.calls("python") == []


def test_a_folder_in_the_worktrees_place_fails_add_and_is_untouched(
    sample: Sample, srv: libtmux.Server
) -> None:
    folder = wt_of(sample, "x")
    folder.mkdir()
    (folder / "notes.txt").write_text("not yours\n")
    with pytest.raises(TallyError, match="^worktree step failed: .*already exists"):
        add(sample, srv, "x")
    assert sample.registry() == {}
    assert [p.name for p in folder.iterdir()] == ["notes.txt"]
    assert (folder / "notes.txt").read_text() == "not yours\n"
    assert "x" not in branches(sample.main)
    assert tmux.running(srv) == set()


# --- remove ---------------------------------------------------------------------------------


def make_dirty(wt: Path) -> str:
    (wt / "backend" / "manage.py").write_text("# changed\n")
    return " M backend/manage.py"


def make_untracked(wt: Path) -> str:
    (wt / "notes.txt").write_text("mine\n")
    return "?? notes.txt"


def make_stash(wt: Path) -> str:
    (wt / "backend" / "manage.py").write_text("# stashed\n")
    git(wt, "stash", "-q")
    assert git(wt, "status", "--porcelain", "--untracked-files=no") == ""
    return "stash(es) of x: stash@{0}"


@pytest.mark.parametrize(
    "spoil", [make_dirty, make_untracked, make_stash], ids=lambda f: f.__name__
)
def test_remove_refuses_while_the_user_has_work(
    sample: Sample, srv: libtmux.Server, spoil: Any
) -> None:
    add(sample, srv, "x")
    wt = wt_of(sample, "x")
    shown = spoil(wt)
    before = sample.registry()
    with pytest.raises(TallyError, match="work that would be lost") as err:
        remove_op.run(sample.project(), "x", srv)
    assert shown in str(err.value)
    assert "--force" in str(err.value)
    assert "node_modules" not in str(err.value)
    assert sample.registry() == before
    assert wt.is_dir()
    assert (wt / "frontend" / "node_modules").is_symlink()
    assert "x" in branches(sample.main)
    assert tmux.exists(srv, "tally-x")


def test_a_stash_of_another_branch_mentioning_the_session_does_not_block_remove(
    sample: Sample, srv: libtmux.Server
) -> None:
    add(sample, srv, "auth", add_steps=NO_TMUX)
    (sample.main / "backend" / "manage.py").write_text("# half done\n")
    git(sample.main, "stash", "push", "-q", "-m", "wip on auth: half done")
    remove_op.run(sample.project(), "auth", srv)
    assert "auth" not in sample.registry()
    assert "On main: wip on auth: half done" in git(sample.main, "stash", "list")


@pytest.mark.parametrize("force", [False, True], ids=["plain", "force"])
def test_remove_takes_everything_of_the_session_and_nothing_of_main(
    sample: Sample, srv: libtmux.Server, force: bool
) -> None:
    add(sample, srv, "x")
    add(sample, srv, "other", add_steps=NO_TMUX)
    wt = wt_of(sample, "x")
    if force:
        make_dirty(wt)
        make_untracked(wt)
    config = write_claude_json(
        sample, {str(wt): {"allowedTools": ["Bash"]}, "/elsewhere": {"x": 1}}
    )
    remove_op.run(sample.project(), "x", srv, force=force)
    assert not wt.exists()
    assert str(wt) not in worktrees(sample.main)
    assert branches(sample.main) == {"main", "other"}
    assert not tmux.exists(srv, "tally-x")
    assert list(sample.registry()) == ["other"]
    main_data_intact(sample.main)
    assert json.loads(config.read_text()) == {
        "numStartups": 2,
        "projects": {str(sample.main): MAIN_APPROVALS, "/elsewhere": {"x": 1}},
    }


@pytest.mark.parametrize(
    ("commit", "force", "keep_branch", "kept", "says"),
    [
        (True, False, False, True, "kept x: 1 commit(s) not merged into main"),
        (True, True, False, False, "deleted x"),
        (False, False, True, True, "kept x (--keep-branch)"),
        (False, False, False, False, "deleted x"),
    ],
    ids=["unmerged-kept", "unmerged-force-deleted", "merged-keep-branch", "merged-deleted"],
)
def test_remove_decides_the_branchs_fate(
    sample: Sample,
    srv: libtmux.Server,
    capsys: pytest.CaptureFixture[str],
    commit: bool,
    force: bool,
    keep_branch: bool,
    kept: bool,
    says: str,
) -> None:
    add(sample, srv, "x", add_steps=NO_TMUX)
    wt = wt_of(sample, "x")
    if commit:
        (wt / "feature.txt").write_text("done\n")
        git(wt, "add", "feature.txt")
        git(wt, "commit", "-q", "-m", "feature")
    capsys.readouterr()
    remove_op.run(sample.project(), "x", srv, force=force, keep_branch=keep_branch)
    assert not wt.exists()
    assert sample.registry() == {}
    assert ("x" in branches(sample.main)) is kept
    assert says in capsys.readouterr().out
    main_data_intact(sample.main)


@pytest.mark.parametrize(
    ("how", "says"),
    [("squash", "squash-merged into origin/main"), ("rebase", "rebase-merged into origin/main")],
    ids=["squashed-on-the-forge", "rebased-on-the-forge"],
)
def test_remove_deletes_a_branch_merged_on_the_forge_saying_how_it_knew(
    sample: Sample, srv: libtmux.Server, capsys: pytest.CaptureFixture[str], how: str, says: str
) -> None:
    bare = add_origin(sample.main)
    add(sample, srv, "x", add_steps=NO_TMUX)
    wt = wt_of(sample, "x")
    commit(wt, "a.txt", "a\n", "add a")
    commit(wt, "b.txt", "b\n", "add b")
    git(wt, "push", "-q", "-u", "origin", "x")
    forge_merge(bare, "x", how)
    git(sample.main, "fetch", "-q", "--prune")
    capsys.readouterr()
    remove_op.run(sample.project(), "x", srv)
    assert f"deleted x ({says})" in capsys.readouterr().out
    assert "x" not in branches(sample.main)


def test_remove_of_a_session_whose_worktree_is_gone(sample: Sample, srv: libtmux.Server) -> None:
    add(sample, srv, "x")
    shutil.rmtree(wt_of(sample, "x"))
    remove_op.run(sample.project(), "x", srv)
    assert_nothing_left(sample, srv, "x", "x")
    main_data_intact(sample.main)


def test_remove_finishes_what_a_stopped_remove_left(sample: Sample, srv: libtmux.Server) -> None:
    """git emptied the worktree and forgot it, then the remove stopped: the empty folder
    left has nothing to lose, and the next remove takes it and the rest."""
    add(sample, srv, "x")
    wt = wt_of(sample, "x")
    git(sample.main, "worktree", "remove", "--force", str(wt))
    wt.mkdir()
    remove_op.run(sample.project(), "x", srv)
    assert_nothing_left(sample, srv, "x", "x")


def test_remove_leaves_a_folder_that_is_not_a_worktree(sample: Sample, srv: libtmux.Server) -> None:
    sample.main.joinpath(".tally-sessions").write_text(
        json.dumps({"x": {"worktree": str(wt_of(sample, "x")), "branch": "x"}})
    )
    folder = wt_of(sample, "x")
    folder.mkdir()
    (folder / "notes.txt").write_text("not yours\n")
    with pytest.raises(TallyError, match="is not a git worktree of"):
        remove_op.run(sample.project(), "x", srv, force=True)
    assert (folder / "notes.txt").read_text() == "not yours\n"
    assert "x" in sample.registry()


def test_remove_refuses_a_locked_worktree_unless_forced(
    sample: Sample, srv: libtmux.Server
) -> None:
    add(sample, srv, "x", add_steps=NO_TMUX)
    git(sample.main, "worktree", "lock", "--reason", "on a USB disk", str(wt_of(sample, "x")))
    with pytest.raises(TallyError, match=r"the worktree is locked \(on a USB disk\)"):
        remove_op.run(sample.project(), "x", srv)
    assert wt_of(sample, "x").is_dir() and "x" in sample.registry()
    remove_op.run(sample.project(), "x", srv, force=True)
    assert_nothing_left(sample, srv, "x", "x")


def test_remove_never_takes_a_worktree_another_entry_owns(
    sample: Sample, srv: libtmux.Server
) -> None:
    add(sample, srv, "dup", add_steps=NO_TMUX)
    reg = sample.registry()
    reg["evil"] = {"worktree": reg["dup"]["worktree"], "branch": "evil"}
    (sample.main / ".tally-sessions").write_text(json.dumps(reg))
    for force in (False, True):
        with pytest.raises(TallyError, match="is the worktree of session 'dup' too"):
            remove_op.run(sample.project(), "evil", srv, force=force)
    assert wt_of(sample, "dup").is_dir() and set(sample.registry()) == {"dup", "evil"}


def test_remove_refuses_a_worktree_switched_to_another_branch_unless_forced(
    sample: Sample, srv: libtmux.Server
) -> None:
    add(sample, srv, "x", add_steps=NO_TMUX)
    git(wt_of(sample, "x"), "switch", "-q", "-c", "experiment")
    with pytest.raises(TallyError, match="the worktree is on experiment, not x"):
        remove_op.run(sample.project(), "x", srv)
    remove_op.run(sample.project(), "x", srv, force=True)
    assert not wt_of(sample, "x").exists() and "x" not in sample.registry()


def test_a_pre_remove_hook_never_runs_in_main_when_the_worktree_is_gone(
    sample: Sample, srv: libtmux.Server, capsys: pytest.CaptureFixture[str]
) -> None:
    project = sample.project(add_steps=NO_TMUX, hooks={"pre_remove": ["touch HOOK_RAN_HERE"]})
    add_op.run(project, "x", srv)
    shutil.rmtree(wt_of(sample, "x"))
    remove_op.run(project, "x", srv, force=True)
    assert not (sample.main / "HOOK_RAN_HERE").exists()
    assert "hooks not run" in capsys.readouterr().out
    assert "x" not in sample.registry()


def test_a_claude_lock_held_at_remove_still_drops_the_entry(
    sample: Sample, srv: libtmux.Server, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_claude_json(sample)
    project = sample.project(add_steps=STEPS[:-1], claude={"lock_stale": 0.5})
    add_op.run(project, "x", srv)
    lock = config.with_name(".claude.json.lock")
    lock.mkdir()  # held, and kept fresh: never stale
    stop = threading.Event()

    def touch() -> None:
        while not stop.wait(0.1):
            os.utime(lock)

    keeper = threading.Thread(target=touch)
    keeper.start()
    try:
        remove_op.run(project, "x", srv)
    finally:
        stop.set()
        keeper.join()
    assert "x" not in sample.registry() and not wt_of(sample, "x").exists()
    assert "claude-prune" in capsys.readouterr().out


def test_remove_from_inside_the_sessions_own_window_finishes(
    sample: Sample, srv: libtmux.Server, tmp_path: Path
) -> None:
    add(sample, srv, "inside", windows=[{"name": "sh", "dir": "", "cmd": ""}])
    out = tmp_path / "remove.out"
    srv.cmd(
        "send-keys",
        "-t",
        "=tally-inside:=sh",
        f"inv session.remove inside > {out} 2>&1",
        "Enter",
    )
    poll(lambda: "inside" not in sample.registry(), timeout=30)
    poll(lambda: "tally-inside" not in tmux.running(srv), timeout=10)
    assert not wt_of(sample, "inside").exists()
    assert "inside" not in branches(sample.main)
    text = out.read_text()
    assert "dropped inside" in text and "this window with it" in text, text


# --- resume ---------------------------------------------------------------------------------


def test_resume_after_the_server_died_recreates_every_session(
    sample: Sample, srv: libtmux.Server
) -> None:
    add(sample, srv, "a")
    add(sample, srv, "b")
    for prog in ("python", "npm", "claude"):
        sample.wait_calls(prog, 2)
    srv.kill()
    poll(lambda: not srv.is_alive())
    fresh = libtmux.Server()
    assert tmux.running(fresh) == set()
    assert sorted(resume_op.run(sample.project(), fresh)) == ["a", "b"]
    assert tmux.running(fresh) == {"tally-a", "tally-b"}
    for name in ("tally-a", "tally-b"):
        assert tmux.window_names(fresh, name) == ["backend", "frontend", "claude"]
    claude = by_session(sample.wait_calls("claude", 4))
    for name in ("a", "b"):
        first, again = claude[name]
        assert first["argv"] == ["-n", f"tally-{name}"]
        assert again["argv"] == ["--continue"]
        assert (again["cwd"], again["activated"]) == (str(wt_of(sample, name)), "yes")
    python = by_session(sample.wait_calls("python", 4))
    backend = sample.registry()["b"]["backend_port"]
    assert python["b"][-1]["argv"] == ["manage.py", "runserver", str(backend)]
    assert python["b"][-1]["env"]["TALLY_BACKEND_PORT"] == str(backend)


def test_resume_leaves_running_sessions_and_reports_gone_worktrees(
    sample: Sample, srv: libtmux.Server, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("a", "b", "c"):
        add(sample, srv, name)
    sample.wait_calls("claude", 3)
    sid = session_id(srv, "tally-a")
    tmux.kill(srv, "tally-b")
    tmux.kill(srv, "tally-c")
    shutil.rmtree(wt_of(sample, "c"))
    capsys.readouterr()

    assert resume_op.run(sample.project(), srv) == ["b"]
    out = capsys.readouterr().out
    assert "a: already running" in out
    assert f"c: worktree {wt_of(sample, 'c')} is gone" in out
    assert tmux.running(srv) == {"tally-a", "tally-b"}
    assert session_id(srv, "tally-a") == sid
    claude = by_session(sample.wait_calls("claude", 4))
    assert [c["argv"] for c in claude["b"]] == [["-n", "tally-b"], ["--continue"]]
    assert len(claude["a"]) == 1
    assert "c" in sample.registry()  # reported, not dropped
    main_data_intact(sample.main)


def test_resume_of_a_worktree_lacking_a_window_folder_names_it_and_starts_the_others(
    sample: Sample, srv: libtmux.Server, capsys: pytest.CaptureFixture[str]
) -> None:
    add(sample, srv, "a", add_steps=NO_TMUX)
    add(sample, srv, "b", add_steps=NO_TMUX)
    shutil.rmtree(wt_of(sample, "b") / "backend")
    capsys.readouterr()
    with pytest.raises(TallyError, match=r"^1 session\(s\) did not start: tally-b$"):
        resume_op.run(sample.project(), srv)
    out = capsys.readouterr().out
    assert "b: config key tally.windows[0].dir: backend/ does not exist in the worktree" in out
    assert tmux.running(srv) == {"tally-a"}


def test_resume_one_by_name(sample: Sample, srv: libtmux.Server) -> None:
    add(sample, srv, "a", add_steps=NO_TMUX)
    add(sample, srv, "b", add_steps=NO_TMUX)
    assert resume_op.run(sample.project(), srv, name="b") == ["b"]
    assert tmux.running(srv) == {"tally-b"}
    assert resume_op.run(sample.project(), srv, name="b") == []


def test_resume_with_no_sessions(sample: Sample, srv: libtmux.Server) -> None:
    assert resume_op.run(sample.project(), srv) == []
    assert tmux.running(srv) == set()


CLAUDE_ONLY = [
    {
        "name": "claude",
        "dir": "",
        "cmd": "claude -n {session}",
        "resume_cmd": "claude --resume {session} || claude -n {session}",
    }
]
FAILING_ACTIVATE = "python activating && false"  # records that it ran, then fails


def typed_lines_done(sample: Sample, srv: libtmux.Server, n: int) -> None:
    """Wait until the window's shell has finished the lines typed so far (`n`-th sentinel)."""
    srv.cmd("send-keys", "-t", "=tally-x:=claude", "-l", "--", "npm sentinel")
    srv.cmd("send-keys", "-t", "=tally-x:=claude", "Enter")
    sample.wait_calls("npm", n)


def test_a_failing_activation_stops_the_windows_command(
    sample: Sample, srv: libtmux.Server
) -> None:
    add(sample, srv, "x", activate=FAILING_ACTIVATE, windows=CLAUDE_ONLY)
    sample.wait_calls("python")
    typed_lines_done(sample, srv, 1)
    assert sample.calls("claude") == []


def test_a_failing_activation_stops_the_resume_command_and_its_fallback(
    sample: Sample, srv: libtmux.Server
) -> None:
    project = sample.project(activate=FAILING_ACTIVATE, windows=CLAUDE_ONLY, add_steps=NO_TMUX)
    add_op.run(project, "x", srv)
    assert resume_op.run(project, srv) == ["x"]
    sample.wait_calls("python")
    typed_lines_done(sample, srv, 1)
    assert sample.calls("claude") == []


# --- rows -----------------------------------------------------------------------------------


def test_rows_say_which_sessions_run_and_their_ports(sample: Sample, srv: libtmux.Server) -> None:
    a = add(sample, srv, "a")
    b = add(sample, srv, "b", add_steps=NO_TMUX)
    rows = {r["name"]: r for r in status.rows(sample.project(), srv)}
    assert sorted(rows) == ["a", "b"]
    assert rows["a"]["running"] is True
    assert rows["b"]["running"] is False
    for session, row in ((a, rows["a"]), (b, rows["b"])):
        assert row["backend_port"] == session.ports["backend"]
        assert row["frontend_port"] == session.ports["frontend"]
        assert row["branch"] == session.name
        assert row["worktree"] == str(session.worktree)
        assert row["tmux"] == f"tally-{session.name}"
        assert row["dirty"] is False  # the tool's links and copies are not the user's work
        assert row["worktree_exists"] is True
        assert "state" not in row
    tmux.kill(srv, "tally-a")
    assert [r["running"] for r in status.rows(sample.project(), srv)] == [False, False]


def test_rows_with_no_sessions(sample: Sample, srv: libtmux.Server) -> None:
    assert status.rows(sample.project(), srv) == []


# --- round-two regressions ------------------------------------------------------------------


def test_a_real_file_where_a_link_belongs_is_the_users_and_blocks_remove(
    sample: Sample, srv: libtmux.Server
) -> None:
    add(sample, srv, "x", add_steps=NO_TMUX)
    db = wt_of(sample, "x") / "backend" / "db.sqlite3"
    db.unlink()
    db.write_text("my own rows\n")
    with pytest.raises(TallyError, match="your own file.*backend/db.sqlite3"):
        remove_op.run(sample.project(), "x", srv)
    assert db.read_text() == "my own rows\n"
    remove_op.run(sample.project(), "x", srv, force=True)
    main_data_intact(sample.main)


def test_windows_left_in_a_deleted_worktree_are_restarted(
    sample: Sample, srv: libtmux.Server
) -> None:
    """The worktree removed by hand and made again under a running session: its windows
    work in the deleted folder until the tmux step (or doctor --fix) restarts them."""
    project = sample.project()
    session = add_op.run(project, "x", srv)
    sample.wait_calls("claude")  # the windows are up and running
    shutil.rmtree(session.worktree)
    worktree_step.create(project, session)
    links_step.apply(project, session)
    poll(lambda: tmux.windows_in_deleted_folders(srv, "tally-x"), timeout=10)
    assert tmux_step.start(project, session, srv) == "started"  # every window was stale
    poll(lambda: tmux.windows_in_deleted_folders(srv, "tally-x") == [], timeout=10)
    calls = sample.wait_calls("claude", 2)
    assert calls[-1]["argv"][:1] == ["--continue"]  # a restart resumes


def test_the_tmux_step_brings_a_dead_session_back_with_its_resume_commands(
    sample: Sample, srv: libtmux.Server
) -> None:
    add(sample, srv, "x")
    sample.wait_calls("claude")
    srv.cmd("kill-session", "-t", "=tally-x")
    r = run_cli(["inv", "session.tmux", "x"], sample.main)
    assert r.returncode == 0, r.stderr
    calls = sample.wait_calls("claude", 2)
    assert calls[-1]["argv"][:1] == ["--continue"]


def test_a_failing_pre_remove_hook_stops_remove_unless_forced(
    sample: Sample, srv: libtmux.Server
) -> None:
    project = sample.project(add_steps=NO_TMUX, hooks={"pre_remove": ["exit 3"]})
    add_op.run(project, "x", srv)
    with pytest.raises(TallyError, match=r"exit 3.*remove anyway with: .*--force"):
        remove_op.run(project, "x", srv)
    assert wt_of(sample, "x").is_dir() and "x" in sample.registry()
    remove_op.run(project, "x", srv, force=True)
    assert not wt_of(sample, "x").exists() and "x" not in sample.registry()


def test_hooks_run_in_sh_when_shell_is_not_there(
    sample: Sample, srv: libtmux.Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHELL", "/usr/bin/no-such-shell")
    hook = "echo ran > hook.out"
    add_op.run(sample.project(add_steps=NO_TMUX, hooks={"post_add": [hook]}), "x", srv)
    assert (wt_of(sample, "x") / "hook.out").read_text() == "ran\n"


def test_unpushed_submodule_commits_block_remove(
    sample: Sample, srv: libtmux.Server, tmp_path: Path
) -> None:
    add_submodule(sample.main, tmp_path / "lib")
    add(sample, srv, "s", add_steps=NO_TMUX)
    wt = wt_of(sample, "s")
    init_submodules(wt)
    (wt / "lib" / "b.txt").write_text("b\n")
    git(wt / "lib", "add", "b.txt")
    git(wt / "lib", "commit", "-q", "-m", "only here")
    git(wt, "commit", "-q", "-am", "bump lib")
    with pytest.raises(TallyError, match="submodule lib: 1 commit"):
        remove_op.run(sample.project(), "s", srv)
    assert (wt / "lib" / "b.txt").exists()


def _half_made(sample: Sample, name: str) -> Path:
    """What a `git worktree add` killed mid-checkout leaves, under an add killed with it."""
    wt = wt_of(sample, name)
    (sample.main / ".git" / "worktrees" / wt.name / "locked").write_text("initializing")
    (wt / "backend" / "manage.py").unlink()  # half checked out
    reg = sample.registry()
    reg[name].update(state="creating", pid=2**22 + 1)
    (sample.main / ".tally-sessions").write_text(json.dumps(reg))
    return wt


def test_plain_remove_clears_a_half_made_worktree(sample: Sample, srv: libtmux.Server) -> None:
    add(sample, srv, "h", add_steps=NO_TMUX)
    _half_made(sample, "h")
    remove_op.run(sample.project(), "h", srv)
    assert_nothing_left(sample, srv, "h", "h")


def test_add_finishes_a_half_made_worktree_of_a_session_begun_step_by_step(
    sample: Sample, srv: libtmux.Server
) -> None:
    add(sample, srv, "h", add_steps=["ports", "worktree"])
    _half_made(sample, "h")
    reg = sample.registry()
    for key in ("state", "pid"):  # begun with the step tasks, not by add
        reg["h"].pop(key)
    (sample.main / ".tally-sessions").write_text(json.dumps(reg))
    add_op.run(sample.project(), "h", srv)
    assert (wt_of(sample, "h") / "backend" / "manage.py").exists()
    assert "locked" not in git(sample.main, "worktree", "list", "--porcelain")


def test_a_locked_worktree_deleted_by_hand_is_forgotten_by_a_forced_remove(
    sample: Sample, srv: libtmux.Server
) -> None:
    add(sample, srv, "lk", add_steps=NO_TMUX)
    git(sample.main, "worktree", "lock", str(wt_of(sample, "lk")))
    shutil.rmtree(wt_of(sample, "lk"))
    remove_op.run(sample.project(), "lk", srv, force=True)
    assert worktrees(sample.main) == [str(sample.main)]
    add(sample, srv, "lk", add_steps=NO_TMUX)  # and it can be made again


def test_a_tracked_file_at_a_link_path_is_not_the_users_work(
    sample: Sample, srv: libtmux.Server
) -> None:
    project = sample.project(add_steps=NO_TMUX, links=["backend/manage.py"])
    add_op.run(project, "t", srv)
    remove_op.run(project, "t", srv)
    assert not wt_of(sample, "t").exists()


def test_a_window_of_yours_in_a_deleted_folder_is_left_alone(
    sample: Sample, srv: libtmux.Server
) -> None:
    project = sample.project()
    session = add_op.run(project, "x", srv)
    sample.wait_calls("claude")
    srv.cmd("new-window", "-d", "-t", "=tally-x:", "-n", "notes", "-c", str(session.worktree))
    # its shell in the worktree first (deleted before tmux's child got there, it would
    # start in HOME instead)
    poll(lambda: (tmux.windows(srv, "tally-x") or {}).get("notes") == str(session.worktree))
    shutil.rmtree(session.worktree)
    worktree_step.create(project, session)
    poll(lambda: "notes" in tmux.windows_in_deleted_folders(srv, "tally-x"), timeout=10)
    tmux_step.start(project, session, srv)
    assert tmux.windows_in_deleted_folders(srv, "tally-x") == ["notes"]
    assert set(tmux.window_names(srv, "tally-x")) == {"backend", "frontend", "claude", "notes"}
