"""agent.py: the hook handler Claude Code runs, its state file, and the hooks in
.claude/settings.local.json, driven by the stand-in claude (tests/standin_claude.py)."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import poll

from tally_tasks import agent, claude

BASE = {"session_id": "s1", "cwd": "/w", "transcript_path": "/t.jsonl"}


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"hook_event_name": "SessionStart", "source": "startup"}, ("idle", "startup")),
        ({"hook_event_name": "UserPromptSubmit", "prompt": "hi"}, ("working", "")),
        ({"hook_event_name": "PreToolUse", "tool_name": "Bash"}, ("working", "")),
        ({"hook_event_name": "PostToolUse", "tool_name": "Bash"}, ("working", "")),
        (
            {"hook_event_name": "PreToolUse", "tool_name": "AskUserQuestion"},
            ("waiting", "question"),
        ),
        ({"hook_event_name": "PermissionRequest", "tool_name": "Bash"}, ("waiting", "permission")),
        (
            {"hook_event_name": "Notification", "notification_type": "permission_prompt"},
            ("waiting", "permission"),
        ),
        (
            {"hook_event_name": "Notification", "notification_type": "idle_prompt"},
            ("waiting", "input"),
        ),
        (
            {"hook_event_name": "Notification", "notification_type": "elicitation_dialog"},
            ("waiting", "question"),
        ),
        ({"hook_event_name": "Notification", "notification_type": "auth_success"}, None),
        (
            {
                "hook_event_name": "Notification",
                "message": "Claude needs your permission to use Bash",
            },
            ("waiting", "permission"),
        ),
        (
            {"hook_event_name": "Notification", "message": "Claude is waiting for your input"},
            ("waiting", "input"),
        ),
        ({"hook_event_name": "Stop", "stop_hook_active": False}, ("waiting", "done")),
        ({"hook_event_name": "StopFailure", "error": "x"}, ("waiting", "error")),
        (
            {"hook_event_name": "SessionEnd", "reason": "prompt_input_exit"},
            ("exited", "prompt_input_exit"),
        ),
        ({"hook_event_name": "PreToolUse", "tool_name": "Bash", "agent_id": "a1"}, ("working", "")),
        ({"hook_event_name": "Stop", "agent_id": "a1"}, None),
        ({"hook_event_name": "SubagentStop"}, None),
        ({"hook_event_name": "PreCompact"}, None),
    ],
    ids=lambda v: json.dumps(v) if isinstance(v, dict) else str(v),
)
def test_decide(payload: dict[str, Any], expected: tuple[str, str] | None) -> None:
    assert agent.decide({**BASE, **payload}) == expected


def test_advance_keeps_since_and_notifies_once() -> None:
    ask = {**BASE, "hook_event_name": "Notification", "notification_type": "permission_prompt"}
    first = agent.advance(None, {**BASE, "hook_event_name": "UserPromptSubmit"}, 10.0)
    assert first and first["state"] == "working" and first["since"] == 10.0
    again = agent.advance(first, {**BASE, "hook_event_name": "PreToolUse"}, 12.0)
    assert again and again["since"] == 10.0 and again["at"] == 12.0
    waiting = agent.advance(again, ask, 20.0)
    assert waiting and waiting["notify"] is True and waiting["since"] == 20.0
    still = agent.advance(waiting, ask, 25.0)
    assert still and still["notify"] is False and still["since"] == 20.0


def test_late_events_of_an_ended_session_are_ignored() -> None:
    ended = agent.advance(None, {**BASE, "hook_event_name": "SessionEnd"}, 1.0)
    assert agent.advance(ended, {**BASE, "hook_event_name": "Stop"}, 2.0) is None
    resumed = agent.advance(ended, {**BASE, "hook_event_name": "SessionStart"}, 3.0)
    assert resumed and resumed["state"] == "idle"


@pytest.mark.parametrize(
    "text",
    ['{"a": [1, 2.5, {"b": null}], "c": true, "d": "\\u00e9x"}', " {} ", '"s"', "[]"],
    ids=["nested", "spaces", "string", "list"],
)
def test_loads_is_json(text: str) -> None:
    assert agent.loads(text) == json.loads(text)


@pytest.mark.parametrize("text", ["", "{", "{} x", "nope"], ids=["empty", "cut", "extra", "word"])
def test_loads_refuses_what_json_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        agent.loads(text)


def test_dumps_round_trip() -> None:
    state = {"state": "waiting", "since": 1.5, "pid": 3, "notify": True, "x": None, "m": 'é"\n'}
    assert json.loads(agent.dumps(state)) == state


# --- the hook command, as Claude Code runs it ----------------------------------------------


def _run_hook(
    tmp_path: Path, payload: Any, raw: str | None = None
) -> subprocess.CompletedProcess[str]:
    state = tmp_path / "git" / "tally-agents" / "x.json"
    cmd = agent.hook_command(state, tmp_path, tmp_path, "x")
    return subprocess.run(
        ["/bin/sh", "-c", cmd],
        input=raw if raw is not None else json.dumps(payload),
        text=True,
        capture_output=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": "/nonexistent", "PYTHONSTARTUP": "/nonexistent"},
    )


def test_hook_command_records_and_prints_nothing(tmp_path: Path) -> None:
    proc = _run_hook(
        tmp_path, {**BASE, "cwd": str(tmp_path), "hook_event_name": "UserPromptSubmit"}
    )
    assert (proc.returncode, proc.stdout) == (0, "")
    state = agent.read(tmp_path / "git" / "tally-agents" / "x.json")
    assert state and state["state"] == "working" and state["session_id"] == "s1"


@pytest.mark.parametrize(
    "raw",
    ["not json", "[1]", "", '{"hook_event_name": 5}'],
    ids=["garbage", "list", "empty", "odd"],
)
def test_hook_command_never_fails(tmp_path: Path, raw: str) -> None:
    proc = _run_hook(tmp_path, None, raw)
    assert (proc.returncode, proc.stdout) == (0, "")


def test_hook_command_survives_an_unwritable_state(tmp_path: Path) -> None:
    (tmp_path / "git").write_text("a file where the folder goes")
    proc = _run_hook(tmp_path, {**BASE, "cwd": str(tmp_path), "hook_event_name": "Stop"})
    assert (proc.returncode, proc.stdout) == (0, "")


def test_event_from_outside_the_worktree_is_ignored(tmp_path: Path) -> None:
    _run_hook(tmp_path, {**BASE, "cwd": "/", "hook_event_name": "Stop"})
    assert agent.read(tmp_path / "git" / "tally-agents" / "x.json") is None


FLAG = agent.HOOK_FLAG


# --- with the stand-in claude ------------------------------------------------------------


class Agent:
    """The stand-in claude run in `folder`, told what to do through its stdin."""

    def __init__(self, folder: Path, *args: str) -> None:
        self.proc = subprocess.Popen(
            ["claude", *args], cwd=folder, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        self.out = self.proc.stdout
        assert "ready" in self.out.readline()

    def say(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        assert self.out.readline().strip() == f"done {line}"

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


@pytest.fixture
def hooked(tmp_path: Path, standin_claude: Path) -> tuple[Path, Path]:
    """A worktree-like folder with our hooks installed; (folder, state file)."""
    wt = tmp_path / "wt"
    (wt / "sub").mkdir(parents=True)
    state = tmp_path / "git" / "tally-agents" / "x.json"
    assert claude.install_hooks(
        wt, agent.EVENTS, agent.hook_command(state, wt, tmp_path, "x"), FLAG
    ).ok
    return wt, state


def test_states_through_a_conversation(hooked: tuple[Path, Path]) -> None:
    wt, state = hooked
    a = Agent(wt)
    try:
        assert (agent.read(state) or {})["state"] == "idle"
        sid = (agent.read(state) or {})["session_id"]
        steps = [
            ("prompt", "working", ""),
            ("ask permission", "waiting", "permission"),
            ("prompt", "working", ""),
            ("question", "waiting", "question"),
            ("finish", "waiting", "done"),
            ("idle", "waiting", "done"),  # Claude's idle prompt, 60 s later: the same wait
            ("exit", "exited", "prompt_input_exit"),
        ]
        for line, want, reason in steps:
            a.say(line)
            got = agent.read(state) or {}
            assert (line, got.get("state"), got.get("reason")) == (line, want, reason)
            assert got["session_id"] == sid
        assert got["pid"] == a.proc.pid
    finally:
        a.close()


def test_a_nested_claude_does_not_mark_its_parent(hooked: tuple[Path, Path]) -> None:
    wt, state = hooked
    a = Agent(wt)
    try:
        a.say("prompt")
        a.say("nested")  # `claude -p` through a shell: start, prompt, stop, end
        got = agent.read(state) or {}
        assert (got["state"], got["pid"]) == ("working", a.proc.pid)
    finally:
        a.close()


def test_a_claude_in_another_folder_does_not_mark_the_session(
    hooked: tuple[Path, Path], tmp_path: Path
) -> None:
    wt, state = hooked
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / ".claude").mkdir(parents=True)
    # the same hooks, as a copied settings file would carry them
    (elsewhere / ".claude" / "settings.local.json").write_text(
        (wt / ".claude" / "settings.local.json").read_text()
    )
    a = Agent(elsewhere)
    try:
        a.say("exit")
    finally:
        a.close()
    assert agent.read(state) is None


def test_a_claude_in_a_subfolder_counts(hooked: tuple[Path, Path]) -> None:
    wt, state = hooked
    a = Agent(wt)
    try:
        a.say("prompt")
    finally:
        a.close()
    assert (agent.read(state) or {})["state"] == "working"


def test_waiting_starts_the_attention_command_once(
    hooked: tuple[Path, Path], tmp_path: Path
) -> None:
    """The first record of a `waiting` runs `python -m tally_tasks.attention` in --main;
    a stand-in module on the path records each run."""
    wt, state = hooked
    fake = tmp_path / "fake"
    (fake / "tally_tasks").mkdir(parents=True)
    (fake / "tally_tasks" / "__init__.py").write_text("")
    log = tmp_path / "attention.log"
    (fake / "tally_tasks" / "attention.py").write_text(
        f"import sys\nopen({str(log)!r}, 'a').write(' '.join(sys.argv[1:]) + '\\n')\n"
    )
    os.environ["PYTHONPATH"] = str(fake)  # the detached command runs with site and env
    try:
        a = Agent(wt)
        try:
            a.say("ask permission")
            poll(lambda: log.exists(), timeout=30)
            a.say("ask permission")
            a.say("prompt")
            a.say("question")
            poll(lambda: len(log.read_text().splitlines()) == 2, timeout=30)
        finally:
            a.close()
    finally:
        del os.environ["PYTHONPATH"]
    assert log.read_text().splitlines() == ["--session x", "--session x"]


def test_the_hook_imports_neither_invoke_nor_the_package(tmp_path: Path) -> None:
    """Claude Code runs it on every tool use: the standard library's few modules only."""
    line = agent.hook_command(tmp_path / "state.json", tmp_path, tmp_path, "x")
    argv = shlex.split(line.removesuffix(" || true"))
    argv[1:1] = ["-X", "importtime"]
    payload = json.dumps({**BASE, "cwd": str(tmp_path), "hook_event_name": "PreToolUse"})
    r = subprocess.run(argv, input=payload, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    modules = {ln.rsplit("|", 1)[1].strip() for ln in r.stderr.splitlines() if "|" in ln}
    assert "agent" in modules
    assert not {m for m in modules if m.startswith(("invoke", "tally_tasks", "site"))}, modules
