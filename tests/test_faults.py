"""Never lose work, never collide: concurrency, kills at every step, hostile input, stale state.

Real processes against real git and tmux: `inv` is started as a user would, killed with
SIGKILL at exact step boundaries (TALLY_TEST_FAULT=pause:<step> makes it wait there), and
what is left is checked.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import libtmux
import pytest
from conftest import (
    VENV_BIN,
    Sample,
    git,
    make_sample,
    obeying_permissions,
    poll,
    preflights_in,
    run_cli,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tally_tasks import ports, status
from tally_tasks import tmux as tmux_
from tally_tasks.errors import TallyError
from tally_tasks.operations import add as add_op
from tally_tasks.operations import remove as remove_op

STEPS = ["ports", "worktree", "links", "env", "claude_perms", "tmux"]


def start(args: list[str], cwd: Path, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(VENV_BIN / args[0]), *args[1:]],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )


def paused_add(main: Path, name: str, step: str, mark: Path) -> subprocess.Popen[str]:
    """`inv session.add NAME -q` that stops at the end of `step` until killed (it writes
    `mark` when it gets there)."""
    return start(
        ["inv", "session.add", name, "-q"],
        main,
        TALLY_TEST_FAULT=f"pause:{step}",
        TALLY_TEST_FAULT_MARK=str(mark),
    )


def tmux_sessions() -> set[str]:
    proc = subprocess.run(
        ["tmux", "list-sessions", "-F", "#{session_name}"], capture_output=True, text=True
    )
    return set(proc.stdout.split())


def branches(main: Path) -> set[str]:
    return set(git(main, "branch", "--format=%(refname:short)").split())


def claude_json(sample: Sample) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((sample.home / ".claude.json").read_text())
    return data


def write_claude_json(sample: Sample) -> None:
    data = {
        "numStartups": 3,
        "projects": {
            str(sample.main): {"allowedTools": ["Bash(npm test:*)"], "hasTrustDialogAccepted": True}
        },
    }
    path = sample.home / ".claude.json"
    path.write_text(json.dumps(data))
    path.chmod(0o600)


# --- 1. concurrency ----------------------------------------------------------------------


def test_eight_concurrent_adds_all_succeed_with_distinct_ports(sample: Sample) -> None:
    procs = [start(["inv", "session.add", f"s{i}", "-q"], sample.main) for i in range(8)]
    results = [(p.wait(timeout=120), p.stderr.read() if p.stderr else "") for p in procs]
    assert all(rc == 0 for rc, _ in results), results
    reg = sample.registry()
    assert sorted(reg) == [f"s{i}" for i in range(8)]
    ports = [e["backend_port"] for e in reg.values()] + [e["frontend_port"] for e in reg.values()]
    assert len(set(ports)) == 16
    assert all("state" not in e for e in reg.values())
    assert {f"tally-s{i}" for i in range(8)} <= tmux_sessions()


def test_adds_racing_removes(sample: Sample) -> None:
    for i in range(3):
        assert run_cli(["inv", "session.add", f"old{i}", "-q"], sample.main).returncode == 0
    procs = [start(["inv", "session.add", f"new{i}", "-q"], sample.main) for i in range(3)]
    procs += [start(["inv", "session.remove", f"old{i}", "-q"], sample.main) for i in range(3)]
    results = [(p.wait(timeout=120), p.stderr.read() if p.stderr else "") for p in procs]
    assert all(rc == 0 for rc, _ in results), results
    assert sorted(sample.registry()) == ["new0", "new1", "new2"]
    assert not any((sample.main.parent / f"tally-old{i}").exists() for i in range(3))
    assert branches(sample.main) == {"main", "new0", "new1", "new2"}
    assert {"tally-new0", "tally-new1", "tally-new2"} == tmux_sessions()


def test_two_adds_of_one_name_make_one_session_and_the_loser_takes_nothing(
    sample: Sample, tmp_path: Path
) -> None:
    mark = tmp_path / "paused"
    first = paused_add(sample.main, "dup", "worktree", mark)
    try:
        poll(mark.exists, timeout=30)
        # the second comes while the first is still adding: refused, and it undoes nothing
        r = run_cli(["inv", "session.add", "dup"], sample.main)
        assert r.returncode == 1 and f"(pid {first.pid}) is adding 'dup'" in r.stderr, r.stderr
        assert "dup" in sample.registry() and (sample.main.parent / "tally-dup").is_dir()
        # a second that fails on its own (a step after the claim) must not drop the entry
        r = run_cli(["inv", "session.add", "dup"], sample.main, env={"TALLY_TEST_FAULT": "x"})
        assert r.returncode == 1 and "dup" in sample.registry()
    finally:
        first.kill()
        first.wait()
    # the adder is gone: the next add may finish the session
    r = run_cli(["inv", "session.add", "dup", "-q"], sample.main)
    assert r.returncode == 0, r.stderr
    entry = sample.registry()["dup"]
    assert "state" not in entry and "pid" not in entry
    assert "tally-dup" in tmux_sessions()


HOLD_LOCK = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
os.pwrite(fd, f"{os.getpid()} {time.time():.0f}\\n".encode(), 0)
open(sys.argv[2], "w").close()
time.sleep(600)
"""


def test_lock_timeout_says_who_holds_it_and_a_killed_holder_frees_it(
    sample: Sample, tmp_path: Path
) -> None:
    lock = sample.main / ".git" / "tally-sessions.lock"
    ready = tmp_path / "ready"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(lock), str(ready)])
    try:
        poll(ready.exists)
        r = run_cli(
            ["inv", "session.add", "x"], sample.main, env={"INVOKE_TALLY_LOCK_TIMEOUT": "0.3"}
        )
        assert r.returncode == 1
        assert "another tally-session is holding .tally-sessions since" in r.stderr
        assert f"pid {holder.pid}" in r.stderr
        assert "Traceback" not in r.stderr
        assert sample.registry() == {}
    finally:
        holder.kill()
        holder.wait()
    r = run_cli(["inv", "session.add", "x", "-q"], sample.main)
    assert r.returncode == 0, r.stderr


# --- 2. crash safety -----------------------------------------------------------------------


def test_ctrl_c_during_add_undoes_it_and_says_what_was_undone(
    sample: Sample, tmp_path: Path
) -> None:
    mark = tmp_path / "mark"
    proc = paused_add(sample.main, "x", "links", mark)
    poll(mark.exists, timeout=30)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert err == "✗ interrupted in the links step; undone: worktree, registry entry\n"
    assert sample.registry() == {}
    assert not (sample.main.parent / "tally-x").exists()


@pytest.mark.parametrize("recovery", ["add-again", "remove-force"])
@pytest.mark.parametrize("step", STEPS)
def test_kill_at_each_step_boundary(
    sample: Sample, tmp_path: Path, step: str, recovery: str
) -> None:
    write_claude_json(sample)
    assert run_cli(["inv", "session.add", "other", "-q"], sample.main).returncode == 0
    other = sample.registry()["other"]
    mark = tmp_path / "mark"
    proc = paused_add(sample.main, "x", step, mark)
    poll(mark.exists, timeout=30)
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    reg = sample.registry()  # valid JSON, or this raises
    assert reg["other"] == other
    assert reg["x"]["state"] == "creating"
    config = claude_json(sample)
    assert config["numStartups"] == 3 and str(sample.main) in config["projects"]
    r = run_cli(["inv", "session.list"], sample.main)
    assert "unfinished" in r.stdout

    wt = sample.main.parent / "tally-x"
    if recovery == "add-again":
        r = run_cli(["inv", "session.add", "x"], sample.main)
        assert r.returncode == 0, r.stderr
        assert "state" not in sample.registry()["x"]
        assert (wt / "frontend" / "node_modules").is_symlink()
        assert (wt / "backend" / ".env").read_text() == "SECRET_KEY=s3cret\n"
        assert claude_json(sample)["projects"][str(wt)]["hasTrustDialogAccepted"] is True
        assert "tally-x" in tmux_sessions()
    else:
        r = run_cli(["inv", "session.remove", "x", "--force"], sample.main)
        assert r.returncode == 0, r.stderr
        assert set(sample.registry()) == {"other"}
        assert not wt.exists()
        assert "x" not in branches(sample.main)
        assert "tally-x" not in tmux_sessions()
        assert str(wt) not in claude_json(sample)["projects"]
        assert "tally-x" not in git(sample.main, "worktree", "list")
    assert sample.registry()["other"] == other
    assert (sample.main / "frontend" / "node_modules" / "pkg" / "index.js").exists()


# --- 3. hostile input ---------------------------------------------------------------------

HOSTILE = [
    ("space", "a b"),
    ("single-quote", "it's"),
    ("double-quote", 'a"b'),
    ("subshell", "$(touch pwned)"),
    ("backticks", "`touch pwned`"),
    ("semicolon", "a;touch pwned"),
    ("newline", "a\ntouch pwned"),
    ("unicode", "café"),
    ("long", "a" * 201),
    ("leading-dash", "-rf"),
    ("dotdot", "a..b"),
    ("glob", "a*"),
    ("tilde", "~x"),
    ("colon", "a:b"),
]


@pytest.mark.parametrize("name", [n for _, n in HOSTILE], ids=[i for i, _ in HOSTILE])
def test_hostile_names_are_refused_in_one_line_with_no_side_effect(
    sample: Sample, tmp_path: Path, name: str
) -> None:
    before = (branches(sample.main), sorted(p.name for p in sample.main.parent.iterdir()))
    r = run_cli(["inv", "session.add", f"--name={name}"], sample.main)
    assert r.returncode == 1
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "Traceback" not in r.stderr
    after = (branches(sample.main), sorted(p.name for p in sample.main.parent.iterdir()))
    assert after == before
    assert sample.registry() == {}
    assert not list(tmp_path.rglob("pwned"))
    assert not list(Path.cwd().glob("pwned"))


def test_names_differing_only_by_slug_are_refused(sample: Sample) -> None:
    assert run_cli(["inv", "session.add", "feature/auth", "-q"], sample.main).returncode == 0
    r = run_cli(["inv", "session.add", "feature-auth"], sample.main)
    assert r.returncode == 1
    assert "clashes with existing session 'feature/auth'" in r.stderr
    assert list(sample.registry()) == ["feature/auth"]


def test_main_repo_path_with_spaces_quotes_and_dollars(isolated_env: Path) -> None:
    s = make_sample(isolated_env, parent="My Projects/it's $HOME")
    s.config["windows"] = [
        {"name": "agent", "dir": "", "cmd": "claude -n {session} --dir {worktree}"},
        {"name": "backend", "dir": "backend", "cmd": "python manage.py runserver {backend_port}"},
    ]
    s.write_config()
    r = run_cli(["inv", "session.add", "x"], s.main)
    assert r.returncode == 0, r.stderr
    wt = s.main.parent / "tally-x"
    call = s.wait_calls("claude")[0]
    assert call["argv"] == ["-n", "tally-x", "--dir", str(wt)]
    assert call["cwd"] == str(wt)
    assert s.wait_calls("python")[0]["cwd"] == str(wt / "backend")
    r = run_cli(["inv", "session.list", "--json"], s.main)
    assert json.loads(r.stdout)[0]["worktree"] == str(wt)
    assert run_cli(["inv", "session.remove", "x"], s.main).returncode == 0
    assert not wt.exists()


BAD_CONFIG = [
    # (id, invoke.yaml's text, what the one line must name besides the file)
    ("port-string", "tally: {ports: {backend: abc, frontend: 5000}}", "tally.ports.backend"),
    ("windows-string", "tally: {windows: nope}", "tally.windows"),
    ("link-null", "tally: {links: [null]}", "tally.links[0]"),
    ("activate-int", "tally: {activate: 3}", "tally.activate"),
    ("mapping-null", "tally: {claude: null}", "tally.claude"),
    ("mapping-int", "tally: {ports: 5}", "tally.ports"),
    ("tally-int", "tally: 7", "tally must be a mapping"),
    ("top-level-list", "[1, 2]", "must hold a mapping"),
    ("not-yaml", "tally: {ports: [", "not valid YAML (line 2"),
    ("hosts-list", "tally: {hosts: [a, b]}", "tally.hosts must be a mapping"),
    ("hooks-empty", "tally:\n  hooks:", "tally.hooks must be a mapping"),
]


@pytest.mark.parametrize("prog", ["inv", "tally-session"])
@pytest.mark.parametrize(
    ("text", "names"), [c[1:] for c in BAD_CONFIG], ids=[c[0] for c in BAD_CONFIG]
)
def test_a_broken_invoke_yaml_is_one_line_naming_file_and_key(
    sample: Sample, prog: str, text: str, names: str
) -> None:
    (sample.main / "invoke.yaml").write_text(text + "\n")
    add = ["session.add", "x"] if prog == "inv" else ["add", "x"]
    r = run_cli([prog, *add], sample.main)
    assert r.returncode == 1, r.stdout + r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
    assert str(sample.main / "invoke.yaml") in r.stderr and names in r.stderr, r.stderr
    assert sample.registry() == {}


def test_a_bad_value_from_the_environment_names_the_variable(sample: Sample) -> None:
    r = run_cli(["inv", "session.add", "x"], sample.main, env={"INVOKE_TALLY_PORTS_BACKEND": "0"})
    assert r.returncode == 1 and "tally.ports.backend" in r.stderr
    assert "INVOKE_TALLY_" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize(
    "content",
    ["[1, 2]", '{"x": null}', '{"x": {"backend_port": "8000"}}', "{not json", '{"x": []}'],
    ids=["list", "null-entry", "port-string", "invalid", "entry-list"],
)
def test_corrupt_registry_is_named_and_left_alone(sample: Sample, content: str) -> None:
    reg = sample.main / ".tally-sessions"
    reg.write_text(content)
    for args in (["session.add", "y"], ["session.list"], ["session.resume"]):
        r = run_cli(["inv", *args], sample.main)
        assert r.returncode == 1, args
        assert ".tally-sessions" in r.stderr and "Traceback" not in r.stderr
    assert reg.read_text() == content


# --- property: valid names round-trip, invalid ones change nothing ------------------------

NAME_CHARS = st.sampled_from(list("abcXYZ019._-/ $;'\"`é:*~\\"))


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(name=st.text(NAME_CHARS, min_size=0, max_size=12))
def test_property_valid_round_trips_invalid_refused(sample: Sample, name: str) -> None:
    project = sample.project(windows=[{"name": "sh", "dir": "", "cmd": "true"}])
    srv = libtmux.Server()
    before = (branches(sample.main), sorted(p.name for p in sample.main.parent.iterdir()))
    try:
        add_op.run(project, name, srv)
    except TallyError as e:
        assert "\n" not in str(e)
        assert sample.registry() == {}
        after = (branches(sample.main), sorted(p.name for p in sample.main.parent.iterdir()))
        assert after == before
        return
    rows = status.rows(project, srv)
    assert [r["name"] for r in rows] == [name]
    assert rows[0]["running"] is True and rows[0]["branch"] == name
    remove_op.run(project, name, srv)
    assert sample.registry() == {}
    after = (branches(sample.main), sorted(p.name for p in sample.main.parent.iterdir()))
    assert after == before


# --- 5. files that are not ours ----------------------------------------------------------


def test_claude_json_rewritten_concurrently_loses_no_keys(sample: Sample) -> None:
    write_claude_json(sample)
    config = sample.home / ".claude.json"
    lock = sample.home / ".claude.json.lock"
    stop = threading.Event()
    written: list[str] = []

    def claude_code() -> None:
        # Claude Code's own writer: mkdir lock, read, change, atomic replace.
        i = 0
        while not stop.is_set():
            try:
                os.mkdir(lock)
            except FileExistsError:
                continue
            try:
                data = json.loads(config.read_text())
                data.setdefault("tips", {})[f"k{i}"] = i
                tmp = config.with_name(".claude.json.writer")
                tmp.write_text(json.dumps(data))
                tmp.chmod(0o600)
                os.replace(tmp, config)
                written.append(f"k{i}")
                i += 1
            finally:
                os.rmdir(lock)
            # Claude Code writes on events, not in a spin: a writer that takes the lock
            # back the instant it drops it would starve any mkdir-lock user
            time.sleep(0.001)

    writer = threading.Thread(target=claude_code)
    writer.start()
    try:
        procs = [start(["inv", "session.add", f"c{i}", "-q"], sample.main) for i in range(4)]
        results = [(p.wait(timeout=120), p.stderr.read() if p.stderr else "") for p in procs]
    finally:
        stop.set()
        writer.join()
    assert all(rc == 0 for rc, _ in results), results
    data = claude_json(sample)
    assert data["numStartups"] == 3
    assert set(data["tips"]) == set(written) and written
    for i in range(4):
        entry = data["projects"][str(sample.main.parent / f"tally-c{i}")]
        assert entry["allowedTools"] == ["Bash(npm test:*)"]
        assert entry["hasTrustDialogAccepted"] is True
    assert (config.stat().st_mode & 0o777) == 0o600


def test_corrupt_claude_json_is_never_rewritten(sample: Sample) -> None:
    config = sample.home / ".claude.json"
    config.write_bytes(b'{"projects": {oops')
    r = run_cli(["inv", "session.add", "x"], sample.main)
    assert r.returncode == 0, r.stderr
    assert "not valid JSON, left untouched" in r.stdout
    assert config.read_bytes() == b'{"projects": {oops'
    assert run_cli(["inv", "session.remove", "x", "-q"], sample.main).returncode == 0
    assert config.read_bytes() == b'{"projects": {oops'


def test_env_copies_stay_private_under_a_permissive_umask(sample: Sample) -> None:
    proc = subprocess.run(
        ["sh", "-c", f"umask 000 && exec {VENV_BIN / 'inv'} session.add x -q"],
        cwd=sample.main,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    env = sample.main.parent / "tally-x" / "backend" / ".env"
    assert (env.stat().st_mode & 0o777) == 0o600


# --- 7. stale state -----------------------------------------------------------------------


def test_worktree_deleted_by_hand_is_reported_with_the_fix(sample: Sample) -> None:
    assert run_cli(["inv", "session.add", "x", "-q"], sample.main).returncode == 0
    subprocess.run(["tmux", "kill-server"], capture_output=True)
    shutil.rmtree(sample.main.parent / "tally-x")
    r = run_cli(["inv", "session.resume"], sample.main)
    assert r.returncode == 0
    assert "worktree" in r.stdout and "is gone" in r.stdout
    assert "inv session.remove --name x" in r.stdout
    assert "tally-x" not in tmux_sessions()
    r = run_cli(["inv", "session.list"], sample.main)
    assert "(missing)" in r.stdout and "inv session.remove --name x\n" in r.stdout
    r = run_cli(["inv", "session.tmux", "x"], sample.main)
    assert r.returncode == 1 and "inv session.worktree --name x" in r.stderr
    assert run_cli(["inv", "session.remove", "x", "--force"], sample.main).returncode == 0
    assert sample.registry() == {}


def test_worktree_unknown_to_registry_is_reported_and_can_be_adopted(sample: Sample) -> None:
    wt = sample.main.parent / "tally-stray"
    git(sample.main, "worktree", "add", "-q", "-b", "stray", str(wt))
    r = run_cli(["inv", "session.list"], sample.main)
    assert f"worktree {wt} is not in .tally-sessions" in r.stdout
    assert "inv session.add --name stray" in r.stdout
    r = run_cli(["inv", "session.add", "stray"], sample.main)
    assert r.returncode == 0, r.stderr
    assert "(exists)" in r.stdout
    assert "not in .tally-sessions" not in run_cli(["inv", "session.list"], sample.main).stdout


def test_foreign_tmux_session_with_our_name_is_refused(sample: Sample) -> None:
    subprocess.run(
        ["tmux", "new-session", "-d", "-s", "tally-x", "-c", str(sample.main.parent)], check=True
    )
    r = run_cli(["inv", "session.add", "x"], sample.main)
    assert r.returncode == 1
    assert "tmux kill-session -t =tally-x" in r.stderr
    assert sample.registry() == {}


def test_recorded_port_held_by_another_program_is_named_on_resume(sample: Sample) -> None:
    assert run_cli(["inv", "session.add", "x", "-q"], sample.main).returncode == 0
    port = sample.registry()["x"]["backend_port"]
    subprocess.run(["tmux", "kill-server"], capture_output=True)
    poll(lambda: ports.is_free(port))  # its server ends with the hang-up, a moment later
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen()
        r = run_cli(["inv", "session.resume"], sample.main)
    assert f"backend port {port} is held by pid {os.getpid()}" in r.stdout
    assert f"lsof -i :{port}" in r.stdout
    # and the wait after it says whose the answer on the port is: not the session's
    assert r.returncode == 1
    assert "1 session(s) started with problems: x (backend foreign)" in r.stderr


def test_lock_file_lives_in_git_dir_not_in_the_checkout(sample: Sample) -> None:
    assert run_cli(["inv", "session.add", "x", "-q"], sample.main).returncode == 0
    assert (sample.main / ".git" / "tally-sessions.lock").exists()
    status_lines = git(sample.main, "status", "--porcelain").splitlines()
    assert status_lines == [], status_lines
    fd = os.open(sample.main / ".git" / "tally-sessions.lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # nobody holds it now
    finally:
        os.close(fd)


def test_commits_on_a_detached_head_block_remove(sample: Sample) -> None:
    assert run_cli(["inv", "session.add", "x", "-q"], sample.main).returncode == 0
    wt = sample.main.parent / "tally-x"
    git(wt, "checkout", "-q", "--detach")
    (wt / "f.txt").write_text("work\n")
    git(wt, "add", "f.txt")
    git(wt, "commit", "-q", "-m", "detached work")
    r = run_cli(["inv", "session.remove", "x"], sample.main)
    assert r.returncode == 1
    assert "commit(s) on a detached HEAD, on no branch" in r.stderr and "detached work" in r.stderr
    assert wt.exists()
    assert run_cli(["inv", "session.remove", "x", "--force"], sample.main).returncode == 0


# --- round-two regressions ------------------------------------------------------------------


def test_remove_waits_for_a_running_add_unless_forced_and_then_add_gives_up(
    sample: Sample, tmp_path: Path
) -> None:
    mark = tmp_path / "paused"
    adding = paused_add(sample.main, "race", "links", mark)
    try:
        poll(mark.exists, timeout=30)
        r = run_cli(["inv", "session.remove", "race"], sample.main)
        assert r.returncode == 1 and f"an add of it is still running (pid {adding.pid})" in r.stderr
        r = run_cli(["inv", "session.doctor", "--fix", "--name", "race"], sample.main)
        assert "being added right now" in r.stdout and "race" in sample.registry()
        r = run_cli(["inv", "session.remove", "race", "--force", "-q"], sample.main)
        assert r.returncode == 0, r.stderr
    finally:
        adding.kill()
        adding.wait()
    assert "race" not in sample.registry()


def test_a_reused_pid_does_not_block_finishing_an_unfinished_add(sample: Sample) -> None:
    assert run_cli(["inv", "session.ports", "p", "-q"], sample.main).returncode == 0
    reg = sample.registry()
    # an add killed long ago whose pid now belongs to another process (this one)
    reg["p"].update(state="creating", pid=os.getpid(), pid_start="another-boot:1")
    (sample.main / ".tally-sessions").write_text(json.dumps(reg))
    r = run_cli(["inv", "session.add", "p", "-q"], sample.main)
    assert r.returncode == 0, r.stderr
    assert "state" not in sample.registry()["p"]


def test_a_session_started_with_the_ports_step_is_finished_by_add(sample: Sample) -> None:
    assert run_cli(["inv", "session.ports", "step", "-q"], sample.main).returncode == 0
    r = run_cli(["inv", "session.add", "step", "-q"], sample.main)
    assert r.returncode == 0, r.stderr
    assert "tally-step" in tmux_sessions()


def test_output_to_a_reader_that_leaves_does_not_stop_add_halfway(sample: Sample) -> None:
    inv = VENV_BIN / "inv"
    r = subprocess.run(
        f"{inv} session.add piped | head -1", shell=True, cwd=sample.main, capture_output=True
    )
    assert r.returncode == 0
    poll(lambda: "tally-piped" in tmux_sessions(), timeout=15)
    entry = sample.registry()["piped"]
    assert "state" not in entry  # finished, not half-made
    assert (sample.main.parent / "tally-piped" / "frontend" / "node_modules").is_symlink()


def test_a_registry_temp_file_of_a_killed_writer_is_swept(sample: Sample) -> None:
    left = sample.main / "..tally-sessions.abc123.tmp"
    left.write_text('{"half": ')
    assert run_cli(["inv", "session.add", "a", "-q"], sample.main).returncode == 0
    assert not left.exists()
    assert (sample.main / ".gitignore").exists() and list(sample.registry()) == ["a"]


# --- fourth safety round (issue 12) --------------------------------------------------------


@pytest.mark.parametrize(
    ("parent", "name"),
    [
        ("Dev", "x#(touch PWNED)"),
        ("team#Sharp", "tally"),
        ("Dev", "a#{session_name}"),
        ("Dev", "a##b"),
    ],
    ids=["project-runs-a-command", "parent-session-format", "brace-format", "double-hash"],
)
def test_tmux_formats_in_folder_names_neither_run_nor_move_windows(
    isolated_env: Path, parent: str, name: str
) -> None:
    s = make_sample(isolated_env, parent=parent, name=name)
    s.write_config()
    r = run_cli(["inv", "session.add", "feat"], s.main)
    assert r.returncode == 0, r.stderr
    wt = s.main.parent / f"{name}-feat"
    assert s.wait_calls("python")[0]["cwd"] == str(wt / "backend")
    assert s.wait_calls("claude")[0]["cwd"] == str(wt)
    assert s.wait_calls("npm")[0]["cwd"] == str(wt / "frontend")
    r = run_cli(["inv", "session.doctor", "--name", "feat"], s.main)
    assert r.returncode == 0, r.stdout + r.stderr
    assert list(isolated_env.rglob("PWNED*")) == []


def test_no_write_follows_a_link_a_branch_commits_out_of_the_worktree(sample: Sample) -> None:
    """`.claude/settings.local.json` committed as a link to the user's global Claude
    settings, `frontend` as a link to a folder outside: add writes through neither."""
    (sample.main / ".claude").mkdir()
    (sample.main / ".claude" / "settings.local.json").write_text(
        json.dumps({"permissions": {"allow": ["Bash(rm -rf:*)"]}})
    )
    global_settings = sample.home / ".claude" / "settings.json"
    global_settings.parent.mkdir()
    global_settings.write_text('{"permissions": {"allow": []}}\n')
    elsewhere = sample.home / "elsewhere"
    elsewhere.mkdir()
    scratch = sample.root / "scratch"  # the branch is made in a worktree of its own
    git(sample.main, "worktree", "add", "-q", "-b", "evil", str(scratch))
    shutil.rmtree(scratch / "frontend")
    (scratch / "frontend").symlink_to(elsewhere)
    (scratch / ".claude").mkdir()
    (scratch / ".claude" / "settings.local.json").symlink_to(global_settings)
    git(scratch, "add", "-A")
    git(scratch, "commit", "-q", "-m", "links out")
    git(sample.main, "worktree", "remove", str(scratch))

    # (--no-wait: its frontend would serve from `elsewhere`, outside the worktree: not up)
    r = run_cli(["inv", "session.add", "evil", "--no-wait"], sample.main)
    assert r.returncode == 0, r.stderr
    assert global_settings.read_text() == '{"permissions": {"allow": []}}\n'
    assert os.listdir(sample.home / ".claude") == ["settings.json"]
    assert os.listdir(elsewhere) == []
    for rel in (".claude/settings.local.json", "frontend/node_modules", "frontend/.env"):
        assert f"{rel} lies behind a link out of the worktree, skipped" in r.stdout, r.stdout


@pytest.mark.parametrize(
    ("prog", "task"), [("tally-session", "remove"), ("inv", "session.remove")], ids=["ts", "inv"]
)
def test_a_hostile_registry_key_is_reported_and_never_run_by_completion(
    sample: Sample, prog: str, task: str
) -> None:
    """bash's `compgen -W` expands the words completion prints: a registry key
    `$(touch${IFS}FILE)` would run on `remove <TAB>`."""
    planted = sample.root / "P"
    key = f"$(touch${{IFS}}{planted})"
    entry = {"worktree": str(sample.root / "w"), "branch": "w"}
    (sample.main / ".tally-sessions").write_text(json.dumps({key: entry, "good": entry}))
    script = (
        f"source <({VENV_BIN / prog} --print-completion-script bash)\n"
        f'COMP_WORDS=({prog} {task} ""); COMP_CWORD=2\n'
        f'_complete_{prog} {prog} "" {task}; printf "%s\\n" "${{COMPREPLY[@]}}"\n'
    )
    env = {**os.environ, "PATH": f"{VENV_BIN}:{os.environ['PATH']}"}
    r = subprocess.run(
        ["bash", "-c", script], cwd=sample.main, capture_output=True, text=True, env=env
    )
    assert not planted.exists()
    assert key not in r.stdout and "good" not in r.stdout  # nothing from that registry
    r = run_cli([prog, "list" if prog == "tally-session" else "session.list"], sample.main)
    assert r.returncode == 1
    assert "session name '$(touch${IFS" in r.stderr and "fix or remove that entry" in r.stderr
    assert "Traceback" not in r.stderr and not planted.exists()


@pytest.mark.parametrize("mode", ["hardlink", "copy"])
def test_remove_takes_read_only_folders_of_a_linked_tree(sample: Sample, mode: str) -> None:
    """Go's module cache in a hard-linked or copied tree: read-only folders. As a user
    (root here runs without its power over permission bits), remove takes it all."""
    cache = sample.main / "gomod" / "example.com" / "lib@v1.0.0"
    cache.mkdir(parents=True)
    (cache / "lib.go").write_text("package lib\n")
    for d in (cache, cache.parent, cache.parent.parent):
        d.chmod(0o555)
    sample.write_config(links=[{"path": "gomod", "mode": mode}])
    assert run_cli(["inv", "session.add", "x", "-q"], sample.main).returncode == 0
    wt = sample.main.parent / "tally-x"
    assert (wt / "gomod").stat().st_mode & 0o777 == 0o555
    argv = obeying_permissions([str(VENV_BIN / "inv"), "session.remove", "x"])
    r = subprocess.run(argv, cwd=sample.main, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert not wt.exists() and sample.registry() == {} and "x" not in branches(sample.main)
    assert (cache / "lib.go").read_text() == "package lib\n"
    assert cache.stat().st_mode & 0o777 == 0o555


@pytest.mark.parametrize("where", ["parent", "inside"])
def test_remove_refuses_a_worktree_it_could_only_half_delete(sample: Sample, where: str) -> None:
    """git empties a worktree it cannot delete halfway and forgets it: no later remove
    could finish. remove finds what stops it first (the worktrees' folder not writable,
    a folder of another user's in the worktree), names it, and changes nothing; once
    fixed, remove goes through."""
    if where == "inside" and os.geteuid() != 0:
        pytest.skip("making a folder another user's needs root")
    assert run_cli(["inv", "session.add", "x", "-q", "--no-wait"], sample.main).returncode == 0
    wt = sample.main.parent / "tally-x"
    if where == "parent":
        blocker = wt.parent
        blocker.chmod(0o555)
    else:
        blocker = wt / "vendor"
        (blocker / "lib").mkdir(parents=True)
        (blocker / "lib" / "lib.go").write_text("package lib\n")
        for path in (blocker / "lib" / "lib.go", blocker / "lib", blocker):
            os.chown(path, 65534, 65534)
            path.chmod(0o444 if path.is_file() else 0o555)
    argv = obeying_permissions([str(VENV_BIN / "inv"), "session.remove", "x", "--force"])
    try:
        r = subprocess.run(argv, cwd=sample.main, capture_output=True, text=True, timeout=60)
    finally:
        if where == "parent":
            blocker.chmod(0o755)
        else:
            for path in (blocker, blocker / "lib", blocker / "lib" / "lib.go"):
                os.chown(path, 0, 0)
    said = f"cannot be deleted: {blocker} is not writable by you; nothing removed"
    assert r.returncode == 1 and said in r.stderr, r.stdout + r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert (wt / ".git").is_file() and "x" in sample.registry() and "x" in branches(sample.main)
    r = subprocess.run(argv, cwd=sample.main, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert not wt.exists() and sample.registry() == {} and "x" not in branches(sample.main)


HANGING = """#!/bin/sh
case " $* " in
  *" status "*|*" stash "*) : > {mark}; until [ -e {release} ]; do sleep 0.01; done ;;
esac
exec {real} "$@"
"""


def test_ctrl_c_in_removes_checks_changes_nothing_and_leaves_no_git_running(
    sample: Sample, tmp_path: Path
) -> None:
    """Ctrl-C while remove's checks wait for git (status and the stashes hang here; the
    three calls are started together): nothing is removed, and the git calls it had
    started, the one it waited for and the one it had not asked yet, are ended, not left
    running. The signal goes to inv alone: ending them is its job."""
    wrappers, mark, release = tmp_path / "hanging", tmp_path / "in-status", tmp_path / "go"
    wrappers.mkdir()
    (wrappers / "git").write_text(
        HANGING.format(mark=mark, release=release, real=shutil.which("git"))
    )
    (wrappers / "git").chmod(0o755)
    assert run_cli(["inv", "session.add", "x", "-q", "--no-wait"], sample.main).returncode == 0
    wt = sample.main.parent / "tally-x"

    def ours() -> list[str]:
        """Processes of the hanging git stand-in (its shell, and what it started)."""
        found = []
        for proc in Path("/proc").iterdir():
            try:
                argv = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            if proc.name.isdigit() and str(wrappers).encode() in argv:
                found.append(proc.name)
        return found

    proc = subprocess.Popen(
        [str(VENV_BIN / "inv"), "session.remove", "x", "-q"],
        cwd=sample.main,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PATH": f"{wrappers}:{os.environ['PATH']}"},
        start_new_session=True,
    )
    try:
        poll(mark.exists, timeout=30)
        os.kill(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode != 0, out + err
        assert (wt / ".git").is_file() and "x" in sample.registry(), out + err
        assert "x" in branches(sample.main) and "tally-x" in tmux_sessions(), out + err
        poll(lambda: not ours(), timeout=10)
    finally:
        release.touch()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_failed_worktree_step_of_remove_is_named(
    sample: Sample, srv: libtmux.Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An error in a step of remove names the step and says what is left."""
    project = sample.project()
    add_op.run(project, "x", srv)

    def fails(repo: Any, path: Path) -> bool:
        raise TallyError(f"cannot delete the worktree {path}: Permission denied ({path})")

    monkeypatch.setattr(remove_op.worktree, "remove", fails)
    with pytest.raises(TallyError) as e:
        remove_op.run(project, "x", srv)
    assert str(e.value).startswith("worktree step failed: cannot delete the worktree ")
    assert "its tmux session is stopped, its branch x and its entry are kept" in str(e.value)
    assert "x" in sample.registry()


def test_links_refresh_keeps_the_sessions_own_data(sample: Sample) -> None:
    """backend/db.sqlite3 copied, node_modules hard-linked: `links --refresh` (which
    doctor suggests) rebuilds only what lacks main's, never the session's database."""
    import sqlite3

    sample.write_config(
        links=[
            {"path": "backend/db.sqlite3", "mode": "copy"},
            {"path": "frontend/node_modules", "mode": "hardlink"},
        ]
    )
    assert run_cli(["inv", "session.add", "x", "-q"], sample.main).returncode == 0
    wt = sample.main.parent / "tally-x"
    with sqlite3.connect(wt / "backend" / "db.sqlite3") as db:
        db.execute("insert into t values ('the session''s')")
    (sample.main / "frontend" / "node_modules" / "newpkg").mkdir()
    r = run_cli(["inv", "session.links", "x", "--refresh"], sample.main)
    assert r.returncode == 0, r.stderr
    with sqlite3.connect(wt / "backend" / "db.sqlite3") as db:
        assert db.execute("select x from t").fetchall() == [("the session's",)]
    assert (wt / "frontend" / "node_modules" / "newpkg").is_dir()

    (wt / "frontend" / "node_modules" / "mine").mkdir()  # the session installs one
    (sample.main / "frontend" / "node_modules" / "other").mkdir()
    r = run_cli(["inv", "session.links", "x", "--refresh", "--dry-run"], sample.main)
    assert r.returncode == 0, r.stderr
    assert "· links        backend/db.sqlite3 (copy) up to date, kept" in r.stdout
    assert "frontend/node_modules kept: it has changed since it was built" in r.stdout
    r = run_cli(["inv", "session.links", "x", "--refresh"], sample.main)
    assert "frontend/node_modules (hardlink) lacks other" in r.stdout
    assert "not rebuilt: it has changed since it was built" in r.stdout
    assert "replace it anyway with: inv session.links --name x --refresh --force" in r.stdout
    assert (wt / "frontend" / "node_modules" / "mine").is_dir()
    r = run_cli(["tally-session", "links", "x", "--refresh", "--force"], sample.main)
    assert r.returncode == 0, r.stderr
    assert (wt / "frontend" / "node_modules" / "other").is_dir()
    assert not (wt / "frontend" / "node_modules" / "mine").exists()
    with sqlite3.connect(wt / "backend" / "db.sqlite3") as db:  # still never reset
        assert db.execute("select x from t").fetchall() == [("the session's",)]


@pytest.mark.parametrize("failing", ["claude_perms", "tmux"])
def test_a_failed_add_gives_back_a_claude_entry_that_was_there_before(
    sample: Sample, failing: str
) -> None:
    """The worktree's path had an entry in ~/.claude.json before this add (an earlier
    session of that name: its history and MCP servers): undo restores it as it was."""
    from tally_tasks.nodejson import stringify

    wt = sample.main.parent / "tally-x"
    old = {"history": [{"display": "earlier work"}], "mcpServers": {"db": {"command": "pg"}}}
    config = sample.home / ".claude.json"
    projects = {
        str(sample.main): {"allowedTools": ["Bash(ls)"], "hasTrustDialogAccepted": True},
        str(wt): old,
    }
    config.write_text(stringify({"numStartups": 3, "projects": projects}, newline=True))
    before = config.read_bytes()
    r = run_cli(
        ["inv", "session.add", "x"], sample.main, env={"TALLY_TEST_FAULT": f"fail:{failing}"}
    )
    assert r.returncode == 1 and "Claude Code entry" in r.stderr, r.stderr
    assert config.read_bytes() == before
    assert not wt.exists() and sample.registry() == {}


@pytest.mark.parametrize("where", ["main", "main-parent", "git-dir"])
def test_an_entry_whose_worktree_is_the_main_checkout_is_refused_before_any_process(
    sample: Sample, serve: Any, where: str
) -> None:
    """remove --force (and doctor --fix, resume) of such an entry would stop main's own
    dev server, then fail; it is refused first, and nothing is touched."""
    port = sample.config["ports"]["backend"]
    server = serve(port, sample.main / "backend")  # main's dev server, on the entry's port
    path = {
        "main": sample.main,
        "main-parent": sample.main.parent,
        "git-dir": sample.main / ".git" / "trees" / "tally-x",
    }[where]
    entry = {"backend_port": port, "worktree": str(path), "branch": "main"}
    (sample.main / ".tally-sessions").write_text(json.dumps({"x": entry}))
    tmux = libtmux.Server()
    tmux.cmd("new-session", "-d", "-s", "tally-x", "-c", str(sample.main))
    for args in (
        ["inv", "session.remove", "x", "--force"],
        ["inv", "session.doctor", "--fix"],
        ["inv", "session.resume"],
        ["inv", "session.tmux", "x"],
    ):
        r = run_cli(args, sample.main)
        said = r.stdout + r.stderr
        assert (
            "is the main checkout" in said
            or "holds the main checkout" in said
            or ("inside the repository's git dir" in said)
        ), (args, said)
        assert server.poll() is None, args  # main's dev server still runs
    assert tmux.has_session("tally-x")  # its tmux session was not ours to kill
    assert (sample.main / ".git").is_dir() and (sample.main / "backend" / "manage.py").exists()
    assert "x" in sample.registry()


def test_worktrees_inside_the_git_dir_are_refused(sample: Sample) -> None:
    sample.write_config(worktrees=".git/trees")
    r = run_cli(["inv", "session.add", "x"], sample.main)
    assert r.returncode == 1 and "inside the repository's git dir" in r.stderr, r.stderr
    assert "set tally.worktrees" in r.stderr
    assert sample.registry() == {} and not (sample.main / ".git" / "trees").exists()


def test_a_checkout_with_the_same_folder_name_never_takes_the_others_tmux_session(
    isolated_env: Path,
) -> None:
    """~/a/tally and ~/b/tally both make tmux session tally-feat: b never treats a's as
    its own (resume, list, doctor, the tmux step, remove), and never ends it."""
    a = make_sample(isolated_env, parent="a")
    b = make_sample(isolated_env, parent="b")
    a.write_config()
    assert run_cli(["inv", "session.add", "feat", "-q"], a.main).returncode == 0
    a_wt = a.main.parent / "tally-feat"

    def a_windows() -> dict[str, str]:
        return tmux_.windows(tmux_.Server(), "tally-feat") or {}

    poll(
        lambda: (
            set(a_windows().values()) == {str(a_wt), str(a_wt / "backend"), str(a_wt / "frontend")}
        )
    )
    before = a_windows()

    b.write_config()
    r = run_cli(["inv", "session.add", "feat"], b.main)  # refused, nothing made
    assert r.returncode == 1 and "another checkout's" in r.stderr and "tally.project" in r.stderr
    assert b.registry() == {}
    for step in ("ports", "worktree"):  # b's session, made step by step
        assert run_cli(["inv", f"session.{step}", "feat", "-q"], b.main).returncode == 0
    r = run_cli(["inv", "session.resume"], b.main)
    assert "already running" not in r.stdout and "another checkout's" in r.stdout + r.stderr
    r = run_cli(["inv", "session.list", "--json"], b.main)
    assert json.loads(r.stdout)[0]["running"] is False
    r = run_cli(["inv", "session.doctor", "--name", "feat"], b.main)
    assert r.returncode == 1 and "another checkout's" in r.stdout + r.stderr
    r = run_cli(["inv", "session.tmux", "feat"], b.main)
    assert r.returncode == 1 and "another checkout's" in r.stderr
    r = run_cli(["inv", "session.remove", "feat"], b.main)
    assert r.returncode == 0, r.stderr
    assert "left alone" in r.stdout + r.stderr
    assert b.registry() == {} and not (b.main.parent / "tally-feat").exists()
    assert a_windows() == before  # a's agent and dev servers still run


def test_a_late_step_of_remove_that_fails_still_drops_the_entry(sample: Sample) -> None:
    """Once the worktree is gone, a failing step (the branch cannot be deleted) is said,
    and the entry goes too: no entry is left that only doctor --fix could clear."""
    assert run_cli(["inv", "session.add", "x", "-q"], sample.main).returncode == 0
    lock = sample.main / ".git" / "refs" / "heads" / "x.lock"
    lock.write_text("")  # another git holds the branch
    r = run_cli(["inv", "session.remove", "x"], sample.main)
    assert r.returncode == 1
    assert "session x is removed, but its branch step failed" in r.stderr, r.stderr
    assert "git branch -D x" in r.stderr
    assert sample.registry() == {} and not (sample.main.parent / "tally-x").exists()
    lock.unlink()
    git(sample.main, "branch", "-D", "x")  # as said


# --- ignored files: listed when remove deletes them, the protected ones kept ----------------


def ignoring(sample: Sample) -> None:
    """The project ignores bytecode, logs, dumps and a backups folder."""
    with (sample.main / ".gitignore").open("a") as f:
        f.write("__pycache__/\n*.log\n*.sql\n*.dump\nbackups/\n")
    git(sample.main, "commit", "-qam", "ignore more")


def make_files(root: Path, *rels: str) -> None:
    for rel in rels:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("data\n")


def test_remove_and_its_dry_run_list_the_ignored_files_that_go(sample: Sample) -> None:
    ignoring(sample)
    assert run_cli(["inv", "session.add", "x", "-q"], sample.main).returncode == 0
    wt = sample.main.parent / "tally-x"
    make_files(
        wt,
        "backend/app/__pycache__/a.pyc",
        "backend/app/__pycache__/b.pyc",
        "backend/lib/__pycache__/c.pyc",
        "backend/debug.log",
    )
    listed = "4 git-ignored file(s): __pycache__/ (3 files in 2 folders), backend/debug.log"
    r = run_cli(["inv", "session.remove", "x", "--dry-run"], sample.main)
    assert r.returncode == 0, r.stdout + r.stderr
    [line] = [ln for ln in r.stdout.splitlines() if "ignored" in ln]
    assert line == "· ignored      delete " + listed  # never the tool's links and copies
    r = run_cli(["inv", "session.remove", "x"], sample.main)
    assert r.returncode == 0, r.stderr
    assert "ignored      deleted " + listed + "\n" in r.stdout
    assert not wt.exists()


PROTECTED = [
    pytest.param("backend/prod.sql", {}, id="loose"),
    pytest.param("backups/2024/prod.dump", {}, id="inside-an-ignored-folder"),
    pytest.param("backend/app.log", {"protect": ["*.log"]}, id="configured"),
]


@pytest.mark.parametrize(("rel", "config"), PROTECTED)
def test_a_protected_ignored_file_makes_remove_refuse_without_force(
    sample: Sample, rel: str, config: dict[str, Any]
) -> None:
    ignoring(sample)
    sample.write_config(**config)
    assert run_cli(["inv", "session.add", "x", "-q"], sample.main).returncode == 0
    wt = sample.main.parent / "tally-x"
    make_files(wt, rel)
    r = run_cli(["inv", "session.remove", "x", "--dry-run"], sample.main)
    assert r.returncode == 1 and f"git-ignored file(s) that tally.protect keeps: {rel}" in r.stdout
    r = run_cli(["inv", "session.remove", "x"], sample.main)
    assert r.returncode == 1, r.stdout
    assert f"1 git-ignored file(s) that tally.protect keeps: {rel}" in r.stderr
    assert "session.remove --name x --force" in r.stderr
    assert (wt / rel).read_text() == "data\n" and "x" in sample.registry()
    kept = f"delete (--force) what tally.protect keeps: {rel}"
    r = run_cli(["inv", "session.remove", "x", "--force", "--dry-run"], sample.main)
    assert r.returncode == 0 and kept in r.stdout, r.stdout
    r = run_cli(["inv", "session.remove", "x", "--force"], sample.main)
    assert r.returncode == 0 and "deleted (--force) what tally.protect keeps" in r.stdout
    assert not wt.exists() and "x" not in sample.registry()


def test_with_protect_empty_an_ignored_dump_is_listed_not_kept(sample: Sample) -> None:
    ignoring(sample)
    sample.write_config(protect=[])
    assert run_cli(["inv", "session.add", "x", "-q"], sample.main).returncode == 0
    make_files(sample.main.parent / "tally-x", "backend/prod.sql")
    r = run_cli(["inv", "session.remove", "x"], sample.main)
    assert r.returncode == 0 and "deleted 1 git-ignored file(s): backend/prod.sql" in r.stdout


# --- other login shells: windows and hooks under bash, zsh and fish -------------------------

LOGIN_SHELLS = ["bash", "zsh", "fish"]
ACTIVATE = {
    "bash": "export TALLY_ACTIVATED=yes",
    "zsh": "export TALLY_ACTIVATED=yes",
    "fish": "set -gx TALLY_ACTIVATED yes",
}


def login_shell(name: str) -> str:
    import shutil

    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed (CI installs it: .ci/run)")
    return found


def windows_in(sample: Sample, name: str, activate: str = "", **extra: Any) -> dict[str, str]:
    """invoke.yaml for a user whose login shell is `name`; the env to run `inv` with."""
    sample.write_config(activate=activate or ACTIVATE[name], **extra)
    return {"SHELL": login_shell(name)}


@pytest.mark.parametrize("name", LOGIN_SHELLS)
def test_window_lines_work_in_the_users_login_shell_on_add_and_on_resume(
    sample: Sample, name: str
) -> None:
    env = windows_in(
        sample,
        name,
        windows=[
            {
                "name": "backend",
                "dir": "backend",
                "cmd": "python manage.py runserver {backend_port}",
            },
            # POSIX grouping and a fallback: `( )` is a command substitution in fish
            {
                "name": "agent",
                "dir": "",
                "cmd": "(exit 3) || claude -n {session}",
                "resume_cmd": "claude --resume {session} || claude -n {session}",
            },
        ],
    )
    r = run_cli(["inv", "session.add", "x"], sample.main, env=env)
    assert r.returncode == 0, r.stderr
    wt = sample.main.parent / "tally-x"
    [backend] = sample.wait_calls("python")
    assert (backend["cwd"], backend["activated"]) == (str(wt / "backend"), "yes")
    [agent] = sample.wait_calls("claude")
    assert (agent["argv"], agent["cwd"], agent["activated"]) == (["-n", "tally-x"], str(wt), "yes")
    typed_once("tally-x", ["backend", "agent"])
    subprocess.run(["tmux", "kill-server"], capture_output=True)
    r = run_cli(["inv", "session.resume"], sample.main, env=env)
    assert r.returncode == 0, r.stderr
    resumed = sample.wait_calls("claude", 2)[1]
    assert (resumed["argv"], resumed["activated"]) == (["--resume", "tally-x"], "yes")
    sample.wait_calls("python", 2)
    typed_once("tally-x", ["backend", "agent"])


def typed_once(session: str, windows: list[str]) -> None:
    """Each window's line shows once on its screen (typed once its shell's editor read:
    not echoed by the terminal before the prompt, then again after it)."""
    for window in windows:
        argv = ["tmux", "capture-pane", "-p", "-J", "-t", f"={session}:={window}"]
        screen = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
        assert screen.count("TALLY_ACTIVATED") == 1, screen


def test_window_lines_follow_the_running_servers_shell_over_shell(sample: Sample) -> None:
    fish = login_shell("fish")
    env = {**os.environ, "SHELL": fish}
    subprocess.run(["tmux", "new-session", "-d", "-s", "mine"], check=True, env=env)
    sample.write_config(activate=ACTIVATE["fish"])  # fish's words: the windows are fish
    r = run_cli(["inv", "session.add", "x"], sample.main, env={"SHELL": "/bin/bash"})
    assert r.returncode == 0, r.stderr
    assert sample.wait_calls("python")[0]["activated"] == "yes"
    assert sample.wait_calls("claude")[0]["argv"] == ["-n", "tally-x"]


HOOKS = [
    # (id, post_add hook, add succeeds)
    ("runs", "cd backend && touch ran-$TALLY_SESSION", True),
    ("fails", "(exit 4) && touch never", False),
]


@pytest.mark.parametrize("name", LOGIN_SHELLS)
@pytest.mark.parametrize(("hook", "ok"), [c[1:] for c in HOOKS], ids=[c[0] for c in HOOKS])
def test_hooks_run_in_the_users_login_shell_and_a_failing_one_fails_add(
    sample: Sample, name: str, hook: str, ok: bool
) -> None:
    env = windows_in(sample, name, windows=[{"name": "sh", "dir": ""}], hooks={"post_add": [hook]})
    r = run_cli(["inv", "session.add", "x"], sample.main, env=env)
    wt = sample.main.parent / "tally-x"
    if ok:
        assert r.returncode == 0, r.stderr
        assert (wt / "backend" / "ran-x").exists()
        assert f"post-add     {hook}" in r.stdout
    else:
        assert r.returncode == 1, r.stdout
        assert f"hook post_add `{hook}` failed with status 4" in r.stderr
        assert not wt.exists() and sample.registry() == {}


@pytest.mark.parametrize("name", LOGIN_SHELLS)
def test_an_activation_the_shell_cannot_parse_fails_the_hook(sample: Sample, name: str) -> None:
    hooks = {"post_add": ["true"]}
    env = windows_in(sample, name, "echo (", windows=[{"name": "sh", "dir": ""}], hooks=hooks)
    r = run_cli(["inv", "session.add", "x"], sample.main, env=env)
    assert r.returncode == 1, r.stdout  # fish -c says 0 after a parse error
    assert "hook post_add `true` failed with status" in r.stderr
    assert sample.registry() == {}


def test_a_shell_no_line_is_written_for_is_refused_before_anything_is_made(
    sample: Sample, tmp_path: Path
) -> None:
    tcsh = tmp_path / "bin" / "tcsh"  # a stand-in: tmux only needs an executable shell
    tcsh.write_text('#!/bin/sh\nexec /bin/sh "$@"\n')
    tcsh.chmod(0o755)
    tcsh_env = {**os.environ, "SHELL": str(tcsh)}
    before = sorted(p.name for p in sample.main.parent.iterdir())
    r = run_cli(["inv", "session.add", "x"], sample.main, env={"SHELL": str(tcsh)})
    assert r.returncode == 1 and len(r.stderr.splitlines()) == 1, r.stderr
    assert f"$SHELL is {tcsh}, a shell tally-tasks cannot write" in r.stderr
    assert sample.registry() == {} and "tally-x" not in tmux_sessions()
    assert sorted(p.name for p in sample.main.parent.iterdir()) == before
    r = run_cli(["inv", "session.doctor"], sample.main, env={"SHELL": str(tcsh)})
    assert r.returncode == 1 and f"$SHELL is {tcsh}, a shell tally-tasks cannot" in r.stdout
    # a running tmux server's default-shell is the windows' shell, whatever $SHELL says
    subprocess.run(["tmux", "new-session", "-d", "-s", "mine"], check=True, env=tcsh_env)
    r = run_cli(["inv", "session.add", "x"], sample.main, env={"SHELL": "/bin/bash"})
    assert f"tmux's default-shell is {tcsh}, a shell" in r.stderr and sample.registry() == {}


# --- interrupts at every moment of add ------------------------------------------------------

# A stand-in for git and tmux that runs the real program, counts the calls the adding
# process itself makes, and at call $SWEEP_AT sends Ctrl-C to the adding process's group
# (what a terminal does) just as the program finished: the moment between "made" and
# "recorded" that an undo registered after the step misses.
SWEEP_WRAPPER = """#!/bin/sh
"{real}" "$@"
rc=$?
set -- $(cat /proc/$$/stat)
if [ "$4" = "$5" ]; then
  # counted under a lock: add begins some calls together
  n=$(flock "{counter}.lock" sh -c 'n=$(( $(cat "$1" 2>/dev/null || echo 0) + 1 ))
    echo "$n" > "$1"; echo "$n"' sh "{counter}")
  if [ "$n" = "$SWEEP_AT" ]; then
    trap '' INT
    kill -INT "-$5"
  fi
fi
exit $rc
"""

# the hook Ctrl-Cs the adding process (its shell's parent) and waits: it must be ended
SWEEP_HOOK = 'if [ -n "$SWEEP_HOOK" ]; then kill -INT "-$PPID"; sleep 30; fi'


def in_worktree(wt: Path) -> list[str]:
    """Processes whose working folder is the worktree or inside it (deleted or not)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cwd = os.readlink(proc / "cwd")
        except OSError:
            continue
        cwd = cwd.removesuffix(" (deleted)")
        if cwd == str(wt) or cwd.startswith(str(wt) + "/"):
            found.append(f"{proc.name} {(proc / 'cmdline').read_bytes()!r}")
    return found


class Sweep:
    """`inv session.add x` run again and again, Ctrl-C'd at a different moment each time."""

    def __init__(self, sample: Sample, tmp_path: Path, flags: tuple[str, ...] = ("-q",)) -> None:
        import shutil

        self.sample, self.flags = sample, flags
        self.wt = sample.main.parent / "tally-x"
        self.counter = tmp_path / "calls"
        wrappers = tmp_path / "sweep-bin"
        wrappers.mkdir()
        for prog in ("git", "tmux"):
            real = shutil.which(prog)
            assert real is not None
            (wrappers / prog).write_text(SWEEP_WRAPPER.format(real=real, counter=self.counter))
            (wrappers / prog).chmod(0o755)
        self.path = f"{wrappers}:{os.environ['PATH']}"
        sample.write_config(hooks={"post_add": [SWEEP_HOOK]})
        write_claude_json(sample)
        self.claude = claude_json(sample)

    def add(self, **env: str) -> subprocess.Popen[str]:
        self.counter.unlink(missing_ok=True)
        return subprocess.Popen(
            [str(VENV_BIN / "inv"), "session.add", "x", *self.flags],
            cwd=self.sample.main,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PATH": self.path, **env},
            start_new_session=True,  # its own group, as a terminal's foreground job
        )

    def calls(self) -> int:
        return int(self.counter.read_text()) if self.counter.exists() else 0

    def settled(self, proc: subprocess.Popen[str], moment: str) -> str:
        """After the add ended: nothing of it left, or the session whole (a Ctrl-C as it
        finished); then cleared for the next run. Says which."""
        out, err = proc.communicate(timeout=60)
        where = f"Ctrl-C {moment} (exit {proc.returncode}): {out}{err}"
        if "Traceback" in err:  # Python's own: inv still importing, or already ending
            begun, ended = self.calls() > 0, err.startswith("Exception ignored in")
            assert (ended or not begun) and "KeyboardInterrupt" in err, where
        entry = self.sample.registry().get("x")
        if entry is not None and "state" not in entry:  # finished: every part there
            assert self.wt.is_dir() and "x" in branches(self.sample.main), where
            assert "tally-x" in tmux_sessions(), where
            r = run_cli(["inv", "session.remove", "x", "--force", "-q"], self.sample.main)
            assert r.returncode == 0, r.stderr
            return "complete"
        assert proc.returncode != 0, where
        assert entry is None, where
        assert not self.wt.exists(), where
        assert "tally-x" not in git(self.sample.main, "worktree", "list"), where
        assert "x" not in branches(self.sample.main), where
        assert "tally-x" not in tmux_sessions(), where
        assert claude_json(self.sample) == self.claude, where
        poll(lambda: not in_worktree(self.wt), timeout=5)  # a hang-up takes a moment
        return "undone"


@pytest.mark.parametrize(
    "flags",
    # without --quiet, the preflight's login shell runs beside the checks' calls
    [("-q",), ("--no-wait",)],
    ids=["quiet", "preflight-beside-the-checks"],
)
def test_ctrl_c_at_every_moment_of_add_leaves_nothing_behind(
    sample: Sample, tmp_path: Path, flags: tuple[str, ...]
) -> None:
    sweep = Sweep(sample, tmp_path, flags)
    # how many git and tmux calls a whole add makes
    assert sweep.settled(sweep.add(), "never") == "complete"
    total = sweep.calls()
    assert total >= 7  # the checks, the worktree, tmux: a sweep worth making
    outcomes: dict[str, str] = {}
    # just as each git or tmux call of the add returns
    took = 0.0  # about as long as a whole add: until its last call
    for n in range(1, total + 1):
        started = time.monotonic()
        outcomes[f"call {n}"] = sweep.settled(sweep.add(SWEEP_AT=str(n)), f"after call {n}")
        took = max(took, time.monotonic() - started)
    # at each step boundary (the add waits there), and inside the post_add hook
    for step in STEPS:
        mark = tmp_path / f"at-{step}"
        proc = sweep.add(TALLY_TEST_FAULT=f"pause:{step}", TALLY_TEST_FAULT_MARK=str(mark))
        poll(mark.exists, timeout=30)
        os.killpg(proc.pid, signal.SIGINT)
        outcomes[step] = sweep.settled(proc, f"after {step}")
    outcomes["hook"] = sweep.settled(sweep.add(SWEEP_HOOK="1"), "in the post_add hook")
    # and at times spread over a whole add
    for i in range(1, 6):
        delay = took * i / 6
        proc = sweep.add()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=delay)  # the stimulus: Ctrl-C after `delay` s
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
        outcomes[f"{delay:.2f}s"] = sweep.settled(proc, f"at {delay:.2f} s")
    assert outcomes["call 1"] == outcomes["ports"] == outcomes["hook"] == "undone", outcomes
    assert list(outcomes.values()).count("undone") >= total, outcomes
    assert not preflights_in(sample.main)  # none left running by an interrupted add
