"""Claude Code settings for a new worktree (tally_tasks/claude.py, the claude-perms step).

Everything runs against real files in the test's temp HOME: ``~/.claude.json`` as Claude
Code writes it, its ``~/.claude.json.lock`` directory held by "another writer" (a thread
here), and ``.claude/settings.local.json`` in the main checkout and the worktree.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import libtmux
import pytest
from conftest import Sample, run_cli

from tally_tasks import claude, sessions
from tally_tasks.agent import EVENTS, HOOK_FLAG
from tally_tasks.errors import TallyError
from tally_tasks.operations import add as add_op
from tally_tasks.operations import remove as remove_op
from tally_tasks.session import Project, Session
from tally_tasks.steps import claude_perms as claude_step

BASE_STEPS = ["ports", "worktree"]
LOCAL = ".claude/settings.local.json"
HOLD = 0.5  # how long "another writer" keeps Claude Code's lock


def write_claude_json(path: Path, projects: dict[str, Any], mode: int = 0o600, **top: Any) -> Path:
    """A ~/.claude.json shaped like Claude Code's: top-level keys plus `projects`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"numStartups": 7, "userID": "abc", "tipsHistory": {"x": 1}, **top}
    data["projects"] = projects
    path.write_text(json.dumps(data, indent=2))
    path.chmod(mode)
    return path


def read(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def main_entry(trusted: bool = True, tools: list[str] | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "allowedTools": ["Bash(npm test:*)"] if tools is None else tools,
        "history": [{"display": "hi"}],
        "mcpServers": {},
    }
    if trusted:
        entry["hasTrustDialogAccepted"] = True
    return entry


def home_config(sample: Sample) -> Path:
    return sample.home / ".claude.json"


def lock_of(config: Path) -> Path:
    return config.with_name(config.name + ".lock")


def bak_of(config: Path) -> Path:
    return config.with_name(config.name + ".bak")


def made_session(
    sample: Sample, srv: libtmux.Server, name: str = "x", **overrides: Any
) -> tuple[Project, Session]:
    """A session with only its ports and worktree: the claude step runs by hand."""
    project = sample.project(add_steps=BASE_STEPS, **overrides)
    add_op.run(project, name, srv)
    return project, sessions.get(project, name)


@pytest.fixture
def made(sample: Sample, srv: libtmux.Server) -> tuple[Project, Session]:
    return made_session(sample, srv)


# --- allowedTools -----------------------------------------------------------------------------


def test_tools_are_a_union_keeping_order_other_keys_mode_and_a_one_time_backup(
    sample: Sample, made: tuple[Project, Session]
) -> None:
    project, session = made
    wt, main = str(session.worktree), str(sample.main)
    other = {"allowedTools": ["Edit"], "hasTrustDialogAccepted": False, "lastCost": 0.5}
    config = write_claude_json(
        home_config(sample),
        {
            main: main_entry(tools=["Bash(npm test:*)", "Read(*)", "Read(*)", "Bash(git diff:*)"]),
            wt: {"allowedTools": ["Bash(ls:*)", "Bash(npm test:*)"], "lastSessionId": "s1"},
            "/somewhere/else": other,
        },
    )
    original = config.read_bytes()
    before = read(config)

    claude_step.apply(project, session)

    after = read(config)
    assert after["projects"][wt] == {
        "allowedTools": ["Bash(ls:*)", "Bash(npm test:*)", "Read(*)", "Bash(git diff:*)"],
        "lastSessionId": "s1",
        "hasTrustDialogAccepted": True,
    }
    assert after["projects"][main] == before["projects"][main]
    assert after["projects"]["/somewhere/else"] == other
    assert {k: v for k, v in after.items() if k != "projects"} == {
        k: v for k, v in before.items() if k != "projects"
    }
    assert config.stat().st_mode & 0o777 == 0o600
    assert bak_of(config).read_bytes() == original
    assert bak_of(config).stat().st_mode & 0o777 == 0o600  # it holds the same secrets
    assert not lock_of(config).exists()

    # again: nothing to add, the file is not rewritten
    written = config.read_bytes()
    claude_step.apply(project, session)
    assert config.read_bytes() == written

    # a second change keeps the first backup
    data = read(config)
    data["projects"][main]["allowedTools"].append("WebFetch")
    config.write_text(json.dumps(data))
    claude_step.apply(project, session)
    assert read(config)["projects"][wt]["allowedTools"][-1] == "WebFetch"
    assert bak_of(config).read_bytes() == original


def test_a_worktree_without_an_entry_gets_one(
    sample: Sample, made: tuple[Project, Session]
) -> None:
    project, session = made
    config = write_claude_json(home_config(sample), {str(sample.main): main_entry()})
    claude_step.apply(project, session)
    assert read(config)["projects"][str(session.worktree)] == {
        "allowedTools": ["Bash(npm test:*)"],
        "hasTrustDialogAccepted": True,
    }


def test_a_claude_json_with_lone_surrogates_round_trips_byte_for_byte(tmp_path: Path) -> None:
    """Node's JSON.stringify writes half an emoji as "\\ud83d" (a history line cut short);
    the file is changed and changed back, and every byte not changed stays."""
    main, wt = tmp_path / "main", tmp_path / "wt"
    main.mkdir()
    wt.mkdir()
    head = (
        '{\n  "numStartups": 7,\n  "lastCost": 0.000012,\n  "projects": {\n'
        f'    "{main}": {{\n      "allowedTools": [\n        "Bash(ls)"\n      ],\n'
        '      "history": [\n        {\n          "display": "fix \\ud83d"\n        }\n'
        '      ],\n      "hasTrustDialogAccepted": true\n    }'
    )
    tail = '\n  },\n  "emoji": "😀 \\udc00"\n}'
    added = (
        f',\n    "{wt}": {{\n      "allowedTools": [\n        "Bash(ls)"\n      ],\n'
        '      "hasTrustDialogAccepted": true\n    }'
    )
    config = tmp_path / ".claude.json"
    config.write_bytes((head + tail).encode())
    outcome, changed = claude.inherit(config, main, wt)
    assert outcome.ok and changed
    assert config.read_bytes() == (head + added + tail).encode()
    assert claude.forget(config, [wt]) == "changed"
    assert config.read_bytes() == (head + tail).encode()


# --- trust ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("main_trusted", "trust", "wt_before", "expected"),
    [
        (True, "inherit", None, True),
        (True, "inherit", False, True),  # Claude Code writes false for every folder it saw
        (True, "never", None, None),
        (True, "never", False, False),
        (False, "inherit", None, None),
        (False, "inherit", False, False),
    ],
    ids=[
        "inherit",
        "inherit-over-false",
        "never",
        "never-keeps-false",
        "main-untrusted",
        "main-untrusted-keeps-false",
    ],
)
def test_trust_follows_the_main_checkout(
    sample: Sample,
    made: tuple[Project, Session],
    main_trusted: bool,
    trust: str,
    wt_before: bool | None,
    expected: bool | None,
) -> None:
    _, session = made
    wt = str(session.worktree)
    projects: dict[str, Any] = {str(sample.main): main_entry(trusted=main_trusted)}
    if wt_before is not None:
        projects[wt] = {"hasTrustDialogAccepted": wt_before}
    config = write_claude_json(home_config(sample), projects)
    claude_step.apply(sample.project(claude={"trust": trust}), session)
    entry = read(config)["projects"][wt]
    assert entry.get("hasTrustDialogAccepted") == expected
    assert entry["allowedTools"] == ["Bash(npm test:*)"]  # tools are copied either way


# --- files that are missing or not Claude Code's JSON -----------------------------------------


def test_a_missing_claude_json_is_not_created(
    sample: Sample, made: tuple[Project, Session], capsys: pytest.CaptureFixture[str]
) -> None:
    project, session = made
    claude_step.apply(project, session)
    # what takes effect: an untrusted folder (Claude Code asks), and our hooks
    out = capsys.readouterr().out
    assert "not trusted (Claude Code will ask first) · state hooks" in out
    assert sorted(p.name for p in sample.home.iterdir()) == [".gitconfig", ".profile"]


CORRUPT = [
    b'{"projects": {oops',
    b"",
    b"[1, 2]",
    b'{"projects": {}}\x00garbage',
    b"\xff\xfe{}",
]
CORRUPT_IDS = ["truncated", "empty", "a-list", "trailing-garbage", "not-utf8"]


@pytest.mark.parametrize("raw", CORRUPT, ids=CORRUPT_IDS)
def test_invalid_json_is_left_byte_for_byte(
    sample: Sample,
    made: tuple[Project, Session],
    capsys: pytest.CaptureFixture[str],
    raw: bytes,
) -> None:
    project, session = made
    config = home_config(sample)
    config.write_bytes(raw)
    claude_step.apply(project, session)
    assert f"{config} is not valid JSON, left untouched" in capsys.readouterr().out
    assert config.read_bytes() == raw
    assert not bak_of(config).exists() and not lock_of(config).exists()


@pytest.mark.parametrize("raw", CORRUPT, ids=CORRUPT_IDS)
def test_remove_leaves_invalid_json_byte_for_byte(
    sample: Sample,
    srv: libtmux.Server,
    made: tuple[Project, Session],
    capsys: pytest.CaptureFixture[str],
    raw: bytes,
) -> None:
    project, session = made
    config = home_config(sample)
    config.write_bytes(raw)
    remove_op.run(project, "x", srv)
    assert f"{config} is not valid JSON, left untouched" in capsys.readouterr().out
    assert config.read_bytes() == raw
    assert sample.registry() == {} and not session.worktree.exists()


def test_claude_prune_on_invalid_json_exits_1_with_one_line(sample: Sample) -> None:
    config = home_config(sample)
    config.write_bytes(b'{"projects": {oops')
    r = run_cli(["inv", "session.claude-prune"], sample.main)
    assert r.returncode == 1
    [line] = r.stderr.strip().splitlines()
    assert "is not valid JSON" in line and "Traceback" not in r.stderr
    assert config.read_bytes() == b'{"projects": {oops'


# --- where the config lives -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env_dir", "configured", "expected"),
    [
        ("cfg", None, "cfg/.claude.json"),
        ("cfg", "explicit/claude.json", "explicit/claude.json"),
        (None, "explicit/claude.json", "explicit/claude.json"),
        (None, None, "home/.claude.json"),
    ],
    ids=["claude-config-dir", "explicit-beats-env", "explicit", "default"],
)
def test_the_config_file_is_found_where_claude_code_keeps_it(
    sample: Sample,
    made: tuple[Project, Session],
    monkeypatch: pytest.MonkeyPatch,
    env_dir: str | None,
    configured: str | None,
    expected: str,
) -> None:
    _, session = made
    candidates = ["home/.claude.json", "cfg/.claude.json", "explicit/claude.json"]
    for rel in candidates:
        write_claude_json(sample.root / rel, {str(sample.main): main_entry()})
    originals = {rel: (sample.root / rel).read_bytes() for rel in candidates}
    if env_dir:
        monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(sample.root / env_dir))
    overrides = {"claude": {"config": str(sample.root / configured)}} if configured else {}
    claude_step.apply(sample.project(**overrides), session)
    for rel in candidates:
        changed = (sample.root / rel).read_bytes() != originals[rel]
        assert changed == (rel == expected), rel
    assert str(session.worktree) in read(sample.root / expected)["projects"]


def test_claude_config_dir_reaches_the_command_line(sample: Sample) -> None:
    cfg = sample.root / "cfg"
    config = write_claude_json(cfg / ".claude.json", {str(sample.main): main_entry()})
    sample.write_config(add_steps=["ports", "worktree", "claude_perms"])
    r = run_cli(["inv", "session.add", "x", "-q"], sample.main, env={"CLAUDE_CONFIG_DIR": str(cfg)})
    assert r.returncode == 0, r.stderr
    wt = str(sample.main.parent / "tally-x")
    assert read(config)["projects"][wt]["hasTrustDialogAccepted"] is True
    assert not home_config(sample).exists()


def test_a_symlinked_claude_json_stays_a_symlink(
    sample: Sample, made: tuple[Project, Session]
) -> None:
    project, session = made
    real = write_claude_json(
        sample.home / "dotfiles" / "claude.json", {str(sample.main): main_entry()}
    )
    link = home_config(sample)
    link.symlink_to(real)
    claude_step.apply(project, session)
    assert link.is_symlink() and link.resolve() == real
    assert read(real)["projects"][str(session.worktree)]["hasTrustDialogAccepted"] is True
    assert real.stat().st_mode & 0o777 == 0o600
    assert not lock_of(link).exists() and not lock_of(real).exists()


# --- Claude Code's lock -----------------------------------------------------------------------


def test_the_step_waits_for_claude_codes_lock_then_proceeds(
    sample: Sample, made: tuple[Project, Session]
) -> None:
    project, session = made
    config = write_claude_json(home_config(sample), {str(sample.main): main_entry()})
    original = config.read_bytes()
    lock = lock_of(config)
    lock.mkdir()
    seen_while_held: list[bytes] = []

    def other_writer() -> None:
        time.sleep(HOLD)  # simulates Claude Code holding its lock, not a wait for a condition
        seen_while_held.append(config.read_bytes())
        lock.rmdir()

    writer = threading.Thread(target=other_writer)
    started = time.monotonic()
    writer.start()
    try:
        claude_step.apply(project, session)
    finally:
        writer.join()
    took = time.monotonic() - started
    assert seen_while_held == [original]  # nothing was written while the lock was held
    assert took >= HOLD
    assert read(config)["projects"][str(session.worktree)]["hasTrustDialogAccepted"] is True
    assert not lock.exists()


@pytest.mark.parametrize(
    ("stale", "age"), [(None, 60.0), (2.0, 5.0)], ids=["default-stale", "configured-stale"]
)
def test_a_stale_lock_is_taken_over(
    sample: Sample, made: tuple[Project, Session], stale: float | None, age: float
) -> None:
    _, session = made
    config = write_claude_json(home_config(sample), {str(sample.main): main_entry()})
    lock = lock_of(config)
    lock.mkdir()
    then = time.time() - age
    os.utime(lock, (then, then))
    project = sample.project(claude={"lock_stale": stale}) if stale else sample.project()
    started = time.monotonic()
    claude_step.apply(project, session)
    assert time.monotonic() - started < project.settings.claude_lock_stale
    assert read(config)["projects"][str(session.worktree)]["hasTrustDialogAccepted"] is True
    assert not lock.exists()


def test_ctrl_c_just_as_the_lock_is_taken_leaves_no_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import signal

    config = tmp_path / ".claude.json"
    config.write_text("{}\n")
    real_mkdir = os.mkdir

    def mkdir_then_ctrl_c(path: Any, *args: Any) -> None:
        real_mkdir(path, *args)
        os.kill(os.getpid(), signal.SIGINT)  # arrives as mkdir returns

    monkeypatch.setattr(os, "mkdir", mkdir_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        with claude.claude_lock(config, stale=10.0):
            pass
    assert not lock_of(config).exists()


def test_a_lock_held_past_the_wait_is_one_line_and_leaves_the_file(
    sample: Sample, made: tuple[Project, Session]
) -> None:
    config = write_claude_json(home_config(sample), {str(sample.main): main_entry()})
    original = config.read_bytes()
    sample.write_config(claude={"lock_stale": 1.0})
    lock = lock_of(config)
    lock.mkdir()
    stop = threading.Event()

    def live_holder() -> None:
        # a live proper-lockfile holder keeps touching its lock so it never looks stale
        while not stop.wait(0.05):
            os.utime(lock)

    holder = threading.Thread(target=live_holder)
    holder.start()
    try:
        r = run_cli(["inv", "session.claude-perms", "x"], sample.main)
    finally:
        stop.set()
        holder.join()
    assert r.returncode == 1
    [line] = r.stderr.strip().splitlines()
    assert ".claude.json.lock is held by another program" in line
    assert config.read_bytes() == original
    assert lock.is_dir() and not bak_of(config).exists()


# --- .claude/settings.local.json --------------------------------------------------------------


def write_local(root: Path, data: Any, mode: int = 0o644) -> Path:
    path = root / LOCAL
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else json.dumps(data, indent=2))
    path.chmod(mode)
    return path


def test_local_settings_are_copied_with_their_mode(
    sample: Sample, made: tuple[Project, Session], capsys: pytest.CaptureFixture[str]
) -> None:
    project, session = made
    src = write_local(sample.main, {"permissions": {"allow": ["Bash(make:*)"]}}, mode=0o640)
    claude_step.apply(project, session)
    dest = session.worktree / LOCAL
    copied = json.loads(dest.read_text())
    assert copied["permissions"] == json.loads(src.read_text())["permissions"]
    assert set(copied) == {"permissions", "hooks"}  # and our state hooks, merged in
    assert dest.stat().st_mode & 0o777 == 0o640
    out = capsys.readouterr().out
    assert f"{LOCAL} copied" in out and "1 allow rules in .claude/settings.local.json" in out


def test_local_settings_are_merged_keeping_the_worktrees_own_rules(
    sample: Sample, made: tuple[Project, Session]
) -> None:
    project, session = made
    write_local(
        sample.main,
        {
            "permissions": {
                "allow": ["Bash(make:*)", "Read(*)", "Bash(make:*)"],
                "deny": ["Bash(rm:*)"],
                "ask": ["WebFetch"],
            },
            "env": {"FROM_MAIN": "1"},
        },
    )
    dest = write_local(
        session.worktree,
        {
            "permissions": {"allow": ["Read(*)", "Bash(pytest:*)"], "defaultMode": "acceptEdits"},
            "model": "opus",
        },
        mode=0o600,
    )
    claude_step.apply(project, session)
    merged = read(dest)
    assert merged["permissions"] == {
        "allow": ["Read(*)", "Bash(pytest:*)", "Bash(make:*)"],
        "defaultMode": "acceptEdits",
        "deny": ["Bash(rm:*)"],
        "ask": ["WebFetch"],
    }
    assert merged["model"] == "opus"
    assert dest.stat().st_mode & 0o777 == 0o600
    written = dest.read_bytes()
    claude_step.apply(project, session)  # again: nothing new, not rewritten
    assert dest.read_bytes() == written


@pytest.mark.parametrize(
    ("main_text", "wt_text", "message"),
    [
        ('{"permissions": {"allow": [', '{"permissions": {"allow": ["A"]}}', "main's"),
        ('{"permissions": {"allow": ["A"]}}', '{"permissions": ', "worktree's"),
        ('{"permissions": {"allow": ["A"]}}', '["A"]', "not a JSON object"),
    ],
    ids=["main-invalid", "worktree-invalid", "worktree-not-an-object"],
)
def test_invalid_local_settings_are_left_alone_with_a_warning(
    sample: Sample,
    made: tuple[Project, Session],
    capsys: pytest.CaptureFixture[str],
    main_text: str,
    wt_text: str,
    message: str,
) -> None:
    project, session = made
    src = write_local(sample.main, main_text)
    dest = write_local(session.worktree, wt_text)
    claude_step.apply(project, session)
    out = capsys.readouterr().out
    assert any(ln.startswith("!") and message in ln for ln in out.splitlines()), out
    assert src.read_text() == main_text
    if message == "main's":  # the worktree's own file is fine: only our hooks join it
        assert json.loads(dest.read_text())["permissions"] == {"allow": ["A"]}
    else:
        assert dest.read_text() == wt_text


def test_invalid_local_settings_in_main_are_not_copied(
    sample: Sample, made: tuple[Project, Session], capsys: pytest.CaptureFixture[str]
) -> None:
    project, session = made
    write_local(sample.main, "{oops")
    claude_step.apply(project, session)
    assert "not valid JSON, not copied" in capsys.readouterr().out
    assert set(json.loads((session.worktree / LOCAL).read_text())) == {"hooks"}  # ours only


LINKED_LOCAL = ["file-link", "dangling-link", "folder-link"]


@pytest.mark.parametrize("kind", LINKED_LOCAL)
def test_local_settings_are_never_written_through_a_link_out_of_the_worktree(
    sample: Sample, made: tuple[Project, Session], kind: str
) -> None:
    """A branch that commits .claude/settings.local.json (or .claude) as a link to the
    user's global settings must not get main's rules merged there, nor the file made."""
    _, session = made
    write_local(sample.main, {"permissions": {"allow": ["Bash(make:*)"]}})
    home_claude = sample.home / ".claude"
    home_claude.mkdir()
    global_settings = home_claude / "settings.json"
    if kind != "dangling-link":
        global_settings.write_text('{"permissions": {"allow": ["Read(*)"]}}')
    before = {p.name: p.read_bytes() for p in home_claude.iterdir()}
    if kind == "folder-link":
        (session.worktree / ".claude").symlink_to(home_claude)
    else:
        (session.worktree / ".claude").mkdir()
        (session.worktree / LOCAL).symlink_to(global_settings)
    outcome = claude.copy_local_settings(sample.main, session.worktree)
    assert outcome is not None and not outcome.ok
    assert "lies behind a link out of the worktree, skipped" in outcome.detail
    assert {p.name: p.read_bytes() for p in home_claude.iterdir()} == before


def test_local_settings_behind_a_link_inside_the_worktree_are_merged(
    sample: Sample, made: tuple[Project, Session]
) -> None:
    _, session = made
    write_local(sample.main, {"permissions": {"allow": ["Bash(make:*)"]}})
    shared = write_local(session.worktree / "config", {"permissions": {"allow": ["Read(*)"]}})
    (session.worktree / ".claude").mkdir()
    (session.worktree / LOCAL).symlink_to("../config/.claude/settings.local.json")
    outcome = claude.copy_local_settings(sample.main, session.worktree)
    assert outcome is not None and outcome.ok, outcome
    assert (session.worktree / LOCAL).is_symlink()
    assert read(shared)["permissions"]["allow"] == ["Read(*)", "Bash(make:*)"]


# --- undo: snapshot and restore ---------------------------------------------------------------


@pytest.mark.parametrize("had_entry", [True, False], ids=["entry-before", "no-entry-before"])
def test_restore_puts_back_what_was_there_and_drops_only_what_came_since(
    tmp_path: Path, had_entry: bool
) -> None:
    """A failed add's undo: a worktree entry that existed before (its history, its MCP
    servers) is given back as it was; entries made since (Claude Code in a subfolder)
    go; nothing else is touched."""
    main, wt = tmp_path / "main", tmp_path / "tally-x"
    main.mkdir()
    wt.mkdir()
    old = {"allowedTools": ["Edit"], "history": [{"display": "mine"}], "mcpServers": {"db": {}}}
    projects = {str(main): main_entry(), "/elsewhere": {"history": []}}
    if had_entry:
        projects[str(wt)] = old
    config = write_claude_json(tmp_path / ".claude.json", projects)
    before = claude.snapshot(config, [wt])
    expected = read(config)

    outcome, changed = claude.inherit(config, main, wt)
    assert outcome.ok and changed
    claude.update(config, lambda d: bool(d["projects"].setdefault(f"{wt}/backend", {"n": 1})))
    assert read(config)["projects"][str(wt)]["hasTrustDialogAccepted"] is True

    assert claude.restore(config, before) == "changed"
    assert read(config) == expected
    assert claude.restore(config, before) == "unchanged"


def test_restore_after_a_missing_file_drops_what_came_since(tmp_path: Path) -> None:
    wt = tmp_path / "tally-x"
    wt.mkdir()
    config = tmp_path / ".claude.json"
    before = claude.snapshot(config, [wt])  # no file yet: Claude Code makes it later
    write_claude_json(config, {str(wt): {"history": []}, "/other": {"history": []}})
    assert claude.restore(config, before) == "changed"
    assert list(read(config)["projects"]) == ["/other"]


def test_restore_after_an_unreadable_file_touches_nothing(tmp_path: Path) -> None:
    wt = tmp_path / "tally-x"
    config = tmp_path / ".claude.json"
    config.write_text("{oops")
    before = claude.snapshot(config, [wt])
    write_claude_json(config, {str(wt): {"history": [{"display": "whose?"}]}})
    written = config.read_bytes()
    assert claude.restore(config, before) == "unchanged"
    assert config.read_bytes() == written


# --- remove and prune -------------------------------------------------------------------------


def test_remove_drops_the_worktrees_entries_and_only_them(
    sample: Sample, srv: libtmux.Server, made: tuple[Project, Session]
) -> None:
    project, session = made
    wt = session.worktree
    keep = {
        str(sample.main): main_entry(),
        str(wt.parent / f"{wt.name}2"): {"allowedTools": ["A"]},  # tally-x2 is not tally-x
        str(sample.root / "elsewhere"): {"allowedTools": ["B"]},
    }
    config = write_claude_json(
        home_config(sample),
        {**keep, str(wt): {"allowedTools": ["C"]}, str(wt / "frontend"): {"allowedTools": []}},
    )
    before = read(config)
    remove_op.run(project, "x", srv)
    after = read(config)
    assert after["projects"] == keep
    assert {k: v for k, v in after.items() if k != "projects"} == {
        k: v for k, v in before.items() if k != "projects"
    }
    assert config.stat().st_mode & 0o777 == 0o600


def test_claude_prune_drops_only_gone_worktrees_of_this_project(
    sample: Sample, made: tuple[Project, Session]
) -> None:
    _, session = made
    trees = sample.main.parent
    (trees / "tally-plain-folder").mkdir()
    keep = {
        str(sample.main): main_entry(),
        str(session.worktree): {"allowedTools": ["existing worktree"]},
        str(trees / "tally-plain-folder"): {"allowedTools": ["exists"]},
        str(trees / "other-gone"): {"allowedTools": ["no prefix"]},
        str(trees / "tallyho-gone"): {"allowedTools": ["not tally-"]},
        str(sample.root / "elsewhere" / "tally-gone"): {"allowedTools": ["elsewhere"]},
        str(sample.main / "gone-subfolder"): {"allowedTools": ["inside main"]},
    }
    gone = [str(trees / "tally-gone"), str(trees / "tally-gone" / "frontend")]
    config = write_claude_json(
        home_config(sample), {**keep, **{g: {"allowedTools": ["gone"]} for g in gone}}
    )
    r = run_cli(["inv", "session.claude-prune"], sample.main)
    assert r.returncode == 0, r.stderr
    assert read(config)["projects"] == keep
    assert [ln.split("dropped ", 1)[1] for ln in r.stdout.splitlines()] == gone
    assert read(config)["numStartups"] == 7
    assert config.stat().st_mode & 0o777 == 0o600

    again = run_cli(["inv", "session.claude-prune"], sample.main)
    assert again.returncode == 0 and "nothing to prune" in again.stdout


def test_claude_prune_without_a_claude_json_creates_nothing(sample: Sample) -> None:
    r = run_cli(["inv", "session.claude-prune"], sample.main)
    assert r.returncode == 0 and "nothing to prune" in r.stdout
    assert not home_config(sample).exists()


def test_entries_use_the_real_path_of_a_worktrees_folder_given_with_dots(
    sample: Sample, srv: libtmux.Server
) -> None:
    config = write_claude_json(home_config(sample), {str(sample.main): main_entry()})
    project, session = made_session(sample, srv, worktrees="../trees")
    claude_step.apply(project, session)
    real = str(sample.main.parent / "trees" / "tally-x")  # the cwd Claude Code sees
    assert read(config)["projects"][real]["hasTrustDialogAccepted"] is True
    remove_op.run(project, "x", srv)
    assert set(read(config)["projects"]) == {str(sample.main)}


# --- does any window run Claude Code? ---------------------------------------------------------

SERVERS = [
    {"name": "backend", "dir": "backend", "cmd": "python manage.py runserver {backend_port}"},
    {"name": "frontend", "dir": "frontend", "cmd": "npm run dev -- --port {frontend_port}"},
]


def agent(cmd: str, resume_cmd: str = "") -> list[dict[str, str]]:
    return [*SERVERS, {"name": "agent", "dir": "", "cmd": cmd, "resume_cmd": resume_cmd}]


@pytest.mark.parametrize(
    ("windows", "runs"),
    [
        (None, True),
        (agent("workon x && claude -n {session}"), True),
        (agent("claude --resume {session} || claude -n {session}"), True),
        (agent("bash", "workon x; claude --resume {session}"), True),
        (agent("(cd sub && claude)"), True),
        (SERVERS, False),
        (agent("claude-monitor --plan pro"), False),
        (agent("cat CLAUDE.md && echo claude"), False),
        (agent("~/.claude/local/claude -n {session}"), True),
        (agent("exec claude -n {session}"), True),
    ],
    ids=[
        "default-windows",
        "after-activation",
        "resume-or-new",
        "in-resume-cmd",
        "in-a-subshell",
        "servers-only",
        "another-program",
        "only-mentioned",
        "local-install-path",
        "exec",
    ],
)
def test_claude_perms_runs_only_when_a_window_runs_claude(
    sample: Sample,
    made: tuple[Project, Session],
    capsys: pytest.CaptureFixture[str],
    windows: list[dict[str, str]] | None,
    runs: bool,
) -> None:
    _, session = made
    config = write_claude_json(home_config(sample), {str(sample.main): main_entry()})
    original = config.read_bytes()
    write_local(sample.main, {"permissions": {"allow": ["A"]}})
    project = sample.project(windows=windows) if windows is not None else sample.project()
    claude_step.apply(project, session)
    out = capsys.readouterr().out
    assert ("no window runs Claude Code" in out) == (not runs)
    assert (config.read_bytes() != original) == runs
    assert (session.worktree / LOCAL).exists() == runs


# --- end to end -------------------------------------------------------------------------------


def test_inv_session_add_opens_claude_trusted_with_mains_tools(sample: Sample) -> None:
    config = write_claude_json(
        home_config(sample), {str(sample.main): main_entry(tools=["Bash(npm test:*)", "Read(*)"])}
    )
    original = config.read_bytes()
    r = run_cli(["inv", "session.add", "x"], sample.main)
    assert r.returncode == 0, r.stderr
    wt = sample.main.parent / "tally-x"
    assert read(config)["projects"][str(wt)] == {
        "allowedTools": ["Bash(npm test:*)", "Read(*)"],
        "hasTrustDialogAccepted": True,
    }
    assert config.stat().st_mode & 0o777 == 0o600
    assert bak_of(config).read_bytes() == original
    [call] = sample.wait_calls("claude")
    assert call["argv"] == ["-n", "tally-x"] and call["cwd"] == str(wt)
    assert call["activated"] == "yes"


def test_a_writer_that_ignores_the_lock_is_not_overwritten(tmp_path: Path) -> None:
    """Claude Code also saves without its lock: a change that lands between our read and
    our write is read again and kept, ours redone on top of it."""
    config = write_claude_json(tmp_path / ".claude.json", {"/a": {"allowedTools": []}})
    sneaked = []

    def change(data: dict[str, Any]) -> bool:
        if not sneaked:  # the first time: another writer saves meanwhile, lock or no lock
            theirs = read(config)
            theirs["tipsHistory"]["new"] = 2
            config.write_text(json.dumps(theirs))
            sneaked.append(True)
        data["projects"]["/b"] = {"allowedTools": ["Bash(ls)"]}
        return True

    assert claude.update(config, change) == "changed"
    final = read(config)
    assert final["tipsHistory"] == {"x": 1, "new": 2}  # theirs kept
    assert final["projects"]["/b"] == {"allowedTools": ["Bash(ls)"]}  # ours on top


def test_a_writer_that_never_stops_is_one_clear_error(tmp_path: Path) -> None:
    config = write_claude_json(tmp_path / ".claude.json", {})
    before = config.read_bytes()
    n = [0]

    def change(data: dict[str, Any]) -> bool:
        n[0] += 1
        config.write_text(json.dumps({**read(config), "numStartups": 100 + n[0]}))
        return True

    with pytest.raises(TallyError, match="keeps changing under us"):
        claude.update(config, change)
    assert read(config)["numStartups"] == 100 + n[0] and config.read_bytes() != before
    assert not lock_of(config).exists()


@pytest.mark.parametrize("kind", ["file", "full-folder"])
def test_an_old_lock_that_is_not_a_lock_is_one_line_not_a_hang(
    sample: Sample, made: tuple[Project, Session], kind: str
) -> None:
    config = write_claude_json(home_config(sample), {str(sample.main): main_entry()})
    lock = lock_of(config)
    if kind == "file":
        lock.write_text("")
    else:
        lock.mkdir()
        (lock / "x").write_text("")
    old = time.time() - 3600
    os.utime(lock, (old, old))
    before = config.read_bytes()
    r = run_cli(["inv", "session.claude-perms", "x"], sample.main, timeout=30)
    assert r.returncode == 1 and "is in the way of Claude Code's lock" in r.stderr, r.stderr
    assert len(r.stderr.splitlines()) == 1 and config.read_bytes() == before


def test_a_folder_in_the_configs_place_is_one_line(
    sample: Sample, made: tuple[Project, Session]
) -> None:
    home_config(sample).mkdir()
    r = run_cli(["inv", "session.claude-perms", "x"], sample.main)
    assert r.returncode == 1 and "cannot update" in r.stderr and "Traceback" not in r.stderr
    r = run_cli(["inv", "session.remove", "x"], sample.main)  # the session still goes
    assert r.returncode == 0, r.stderr
    assert sample.registry() == {}


@pytest.mark.parametrize(
    ("main_has", "first"),
    [(main_entry(), True), ({"allowedTools": []}, False)],
    ids=["approvals", "nothing-to-copy"],
)
def test_inherit_says_whether_it_changed_the_file(
    tmp_path: Path, main_has: dict[str, Any], first: bool
) -> None:
    """What add's undo list goes by: a run that changed nothing has nothing to put back."""
    main, wt = tmp_path / "main", tmp_path / "tally-x"
    config = write_claude_json(tmp_path / ".claude.json", {str(main): main_has})
    assert claude.inherit(config, main, wt)[1] is first
    assert claude.inherit(config, main, wt)[1] is False  # again: nothing new


# --- the state hooks in .claude/settings.local.json, and what takes effect -----------

FLAG = HOOK_FLAG
USER_HOOK = {"matcher": "Bash", "hooks": [{"type": "command", "command": "echo mine"}]}


def test_merge_keeps_the_users_hooks_and_is_idempotent() -> None:
    settings: dict[str, Any] = {
        "permissions": {"allow": ["Bash(ls)"]},
        "hooks": {"PreToolUse": [USER_HOOK]},
    }
    assert claude.merge_hooks(settings, EVENTS, f"run {FLAG}", FLAG)
    assert settings["hooks"]["PreToolUse"][0] == USER_HOOK
    assert set(settings["hooks"]) == set(EVENTS)
    assert not claude.merge_hooks(settings, EVENTS, f"run {FLAG}", FLAG)
    assert claude.merge_hooks(settings, EVENTS, f"new {FLAG}", FLAG)  # replaced, not added
    assert [g["hooks"][0]["command"] for g in settings["hooks"]["Stop"]] == [f"new {FLAG}"]
    assert claude.merge_hooks(settings, (), "", FLAG)
    assert settings == {
        "permissions": {"allow": ["Bash(ls)"]},
        "hooks": {"PreToolUse": [USER_HOOK]},
    }


def test_merge_keeps_a_users_handler_sharing_our_group() -> None:
    mixed = {
        "hooks": [{"type": "command", "command": f"x {FLAG}"}, {"type": "command", "command": "y"}]
    }
    settings: dict[str, Any] = {"hooks": {"Stop": [mixed]}}
    claude.merge_hooks(settings, (), "", FLAG)
    assert settings == {"hooks": {"Stop": [{"hooks": [{"type": "command", "command": "y"}]}]}}


def test_install_and_remove(tmp_path: Path) -> None:
    local = tmp_path / ".claude" / "settings.local.json"
    local.parent.mkdir()
    local.write_text(json.dumps({"hooks": {"PreToolUse": [USER_HOOK]}}))
    local.chmod(0o600)
    assert claude.install_hooks(tmp_path, EVENTS, f"c {FLAG}", FLAG).ok
    assert local.stat().st_mode & 0o777 == 0o600
    data = json.loads(local.read_text())
    assert data["hooks"]["PreToolUse"][0] == USER_HOOK and "SessionEnd" in data["hooks"]
    assert claude.remove_hooks(tmp_path, FLAG)
    assert json.loads(local.read_text()) == {"hooks": {"PreToolUse": [USER_HOOK]}}
    assert not claude.remove_hooks(tmp_path, FLAG)


def test_remove_drops_a_file_left_empty(tmp_path: Path) -> None:
    assert claude.install_hooks(tmp_path, EVENTS, f"c {FLAG}", FLAG).ok
    assert claude.remove_hooks(tmp_path, FLAG)
    assert not (tmp_path / ".claude" / "settings.local.json").exists()


@pytest.mark.parametrize(
    "what", ["folder", "file"], ids=["dot-claude-linked-out", "file-linked-out"]
)
def test_install_never_writes_through_a_link_out_of_the_worktree(tmp_path: Path, what: str) -> None:
    wt, outside = tmp_path / "wt", tmp_path / "outside"
    wt.mkdir()
    outside.mkdir()
    if what == "folder":
        (wt / ".claude").symlink_to(outside)
    else:
        (wt / ".claude").mkdir()
        (outside / "s.json").write_text("{}")
        (wt / ".claude" / "settings.local.json").symlink_to(outside / "s.json")
    outcome = claude.install_hooks(wt, EVENTS, f"c {FLAG}", FLAG)
    assert not outcome.ok and "leads out of the worktree" in outcome.detail
    assert sorted(p.name for p in outside.iterdir()) == ([] if what == "folder" else ["s.json"])
    assert (outside / "s.json").read_text() == "{}" if what == "file" else True


@pytest.mark.parametrize("text", ["{nope", "[]"], ids=["not-json", "not-object"])
def test_install_leaves_a_broken_file_alone(tmp_path: Path, text: str) -> None:
    local = tmp_path / ".claude" / "settings.local.json"
    local.parent.mkdir()
    local.write_text(text)
    assert not claude.install_hooks(tmp_path, EVENTS, f"c {FLAG}", FLAG).ok
    assert local.read_text() == text


@pytest.mark.parametrize(
    ("config", "files", "expected"),
    [
        (None, {}, "not trusted (Claude Code will ask first)"),
        (
            {"projects": {"WT": {"hasTrustDialogAccepted": True, "allowedTools": ["Bash"]}}},
            {},
            "trusted",
        ),
        (
            {"projects": {"WT": {"hasTrustDialogAccepted": True}}},
            {
                "settings.json": {"permissions": {"allow": ["Read"], "deny": ["Bash(rm:*)"]}},
                "settings.local.json": {"permissions": {"allow": ["Bash(ls)", "Edit"]}},
            },
            "trusted · 1 allow, 1 deny rules in .claude/settings.json"
            " · 2 allow rules in .claude/settings.local.json",
        ),
        ("not json", {"settings.local.json": "{"}, "not trusted (Claude Code will ask first)"),
    ],
    ids=["nothing", "trusted-allowedtools-not-counted", "rules", "broken-files"],
)
def test_claude_perms_says_what_takes_effect(
    tmp_path: Path, config: Any, files: dict[str, Any], expected: str
) -> None:
    wt = tmp_path / "wt"
    (wt / ".claude").mkdir(parents=True)
    conf = tmp_path / ".claude.json"
    if config is not None:
        text = config if isinstance(config, str) else json.dumps(config).replace("WT", str(wt))
        conf.write_text(text)
    for name, data in files.items():
        (wt / ".claude" / name).write_text(data if isinstance(data, str) else json.dumps(data))
    assert claude.effect(conf, wt).detail == expected
