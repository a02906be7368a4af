"""Never lose work, never collide: concurrency, kills at every step, hostile input, stale state.

Real processes against real git and tmux: `inv` is started as a user would, killed with
SIGKILL at exact step boundaries (TALLY_TEST_FAULT=pause:<step> makes it wait there), and
what is left is checked.
"""

from __future__ import annotations

import fcntl
import json
import os
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
from conftest import VENV_BIN, Sample, git, make_sample, poll, run_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tally_tasks import status
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
    first = start(
        ["inv", "session.add", "dup", "-q"],
        sample.main,
        TALLY_TEST_FAULT="pause:worktree",
        TALLY_TEST_FAULT_MARK=str(mark),
    )
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
    proc = start(
        ["inv", "session.add", "x", "-q"],
        sample.main,
        TALLY_TEST_FAULT="pause:links",
        TALLY_TEST_FAULT_MARK=str(mark),
    )
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
    proc = start(
        ["inv", "session.add", "x", "-q"],
        sample.main,
        TALLY_TEST_FAULT=f"pause:{step}",
        TALLY_TEST_FAULT_MARK=str(mark),
    )
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
    import shutil

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
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen()
        r = run_cli(["inv", "session.resume"], sample.main)
    assert r.returncode == 0, r.stderr
    assert f"backend port {port} is held by pid {os.getpid()}" in r.stdout
    assert f"lsof -i :{port}" in r.stdout


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
    adding = start(
        ["inv", "session.add", "race", "-q"],
        sample.main,
        TALLY_TEST_FAULT="pause:links",
        TALLY_TEST_FAULT_MARK=str(mark),
    )
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
