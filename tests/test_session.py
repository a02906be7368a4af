"""Session names, slugs, placeholders, and the names and paths derived from them."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tally_tasks.config import settings_from
from tally_tasks.errors import TallyError
from tally_tasks.registry import MAX_NAME
from tally_tasks.session import (
    Project,
    Session,
    check_name,
    programs,
    render,
    slugify,
)

# --- check_name -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["feature-auth", "feature/auth", "v1.2", "a_b", "x", "Fix-42", "a" * MAX_NAME],
    ids=["dash", "slash", "dot", "underscore", "one-char", "mixed-case", "at-max-length"],
)
def test_check_name_accepts(name: str) -> None:
    check_name(name)


@pytest.mark.parametrize(
    "name, says",
    [
        ("", "is empty"),
        ("feature auth", "may only contain"),
        ("$(touch pwned)", "may only contain"),
        ("`id`", "may only contain"),
        ("a;b", "may only contain"),
        ("a\nb", "may only contain"),
        ("café", "may only contain"),
        ("a@{b", "may only contain"),
        ("@{", "may only contain"),
        ("-x", "not a valid branch name"),
        (".x", "not a valid branch name"),
        ("/x", "not a valid branch name"),
        ("a..b", "not a valid branch name"),
        ("a//b", "not a valid branch name"),
        ("a/", "not a valid branch name"),
        ("a.lock", "not a valid branch name"),
        ("a.", "not a valid branch name"),
        ("feature.lock/x", "not a valid git branch name"),
        ("HEAD", "not a valid git branch name"),
        ("a" * (MAX_NAME + 1), "too long"),
        ("a" * 201, "too long"),
    ],
    ids=[
        "empty",
        "space",
        "command-substitution",
        "backtick",
        "semicolon",
        "newline",
        "unicode",
        "at-brace-inside",
        "at-brace",
        "leading-dash",
        "leading-dot",
        "leading-slash",
        "dotdot",
        "double-slash",
        "trailing-slash",
        "trailing-lock",
        "trailing-dot",
        "component-lock",
        "head",
        "one-over-max",
        "far-over-max",
    ],
)
def test_check_name_refuses_with_one_line(name: str, says: str) -> None:
    with pytest.raises(TallyError, match=says) as e:
        check_name(name)
    message = str(e.value)
    assert "\n" not in message
    assert len(message) < 200  # a 201-character name is shown shortened


# --- slugify --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, slug",
    [
        ("feature/auth", "feature-auth"),
        ("v1.2", "v1-2"),
        ("a_b", "a_b"),
        ("feature-auth", "feature-auth"),
        ("team/v2.0/x", "team-v2-0-x"),
    ],
    ids=["slash", "dot", "underscore-kept", "unchanged", "several"],
)
def test_slugify(name: str, slug: str) -> None:
    assert slugify(name) == slug


# --- render ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "template, values, expected",
    [
        ("runserver {backend_port}", {"backend_port": 8001}, "runserver 8001"),
        ("claude -n {session}", {"session": "tally-x"}, "claude -n tally-x"),
        ("cd {worktree}", {"worktree": "/a b/c"}, "cd '/a b/c'"),
        ("{name} {name}", {"name": "feature/auth"}, "feature/auth feature/auth"),
        ("echo {empty}", {"empty": ""}, "echo ''"),
        ("echo {foo}", {"name": "x"}, "echo {foo}"),
        ("ps | awk '{print $1}'", {"print": "x"}, "ps | awk '{print $1}'"),
        ("cd ${HOME}/{slug}", {"HOME": "/x", "slug": "a-b"}, "cd ${HOME}/a-b"),
        ("echo ${name}/{name}", {"name": "x"}, "echo ${name}/x"),
        ("echo {Name} {name-x}", {"Name": "x", "name": "y"}, "echo {Name} {name-x}"),
        ("{a}{b}", {"a": "x", "b": 5}, "x5"),
    ],
    ids=[
        "int-unquoted",
        "plain-string",
        "space-quoted",
        "repeated",
        "empty-string",
        "unknown-left",
        "awk-left",
        "shell-var-left",
        "shell-var-named-like-a-placeholder",
        "not-a-placeholder",
        "adjacent",
    ],
)
def test_render(template: str, values: dict[str, str | int], expected: str) -> None:
    assert render(template, values) == expected


HOSTILE = [
    "/home/me/Dev/it's a dir",
    "/tmp/$(touch pwned)",
    "/tmp/`id`",
    '/tmp/"quoted" & ; | > x',
    "/tmp/new\nline",
    "/tmp/{worktree}",
]


@pytest.mark.parametrize(
    "value",
    HOSTILE,
    ids=["quote-and-space", "substitution", "backtick", "metachars", "newline", "braces"],
)
def test_render_gives_one_shell_word(value: str, tmp_path: Path) -> None:
    line = render("cd {worktree} && ls", {"worktree": value})
    assert shlex.split(line) == ["cd", value, "&&", "ls"]
    # and a real shell reads it back unchanged, running nothing
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    out = subprocess.run(
        ["sh", "-c", render("printf %s {worktree}", {"worktree": value})],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout == value
    assert list(cwd.iterdir()) == []


@pytest.mark.parametrize(
    "line, expected",
    [
        ("claude -n tally-x", {"claude"}),
        ("workon x && claude -n s", {"workon", "claude"}),
        ("claude --resume s||claude -n s", {"claude"}),
        ("(cd sub && claude)", {"cd", "claude"}),
        ("~/.claude/local/claude -n s", {"claude"}),
        ("exec env A=1 nohup claude", {"claude"}),
        ("FOO=bar BAZ='a b' claude", {"claude"}),
        ("echo claude; cat CLAUDE.md", {"echo", "cat"}),
        ("claude-monitor --plan pro", {"claude-monitor"}),
        ("npm run dev 2>&1 | tee log > out.txt", {"npm", "tee"}),
        ("printf '%s; claude' x", {"printf"}),
        ("echo 'unclosed", {"echo"}),
        ("", set()),
    ],
    ids=[
        "plain",
        "after-activation",
        "or-fallback",
        "subshell",
        "by-path",
        "wrappers",
        "assignments",
        "only-mentioned",
        "another-program",
        "redirections",
        "quoted-operator",
        "unclosed-quote",
        "empty",
    ],
)
def test_programs_reads_the_commands_a_line_runs(line: str, expected: set[str]) -> None:
    assert programs(line) == expected


# --- Project and Session --------------------------------------------------------------------


def project(main: Path, **raw: Any) -> Project:
    return Project(main, main / ".git", settings_from(raw))


@pytest.mark.parametrize(
    "folder, raw, name, worktree, tmux_name",
    [
        ("tally", {}, "feature-auth", "tally-feature-auth", "tally-feature-auth"),
        ("tally", {}, "feature/auth", "tally-feature-auth", "tally-feature-auth"),
        ("tally", {}, "v1.2", "tally-v1-2", "tally-v1-2"),
        ("my.app", {}, "x", "my.app-x", "my-app-x"),
        ("tally", {"project": "web"}, "x", "web-x", "web-x"),
    ],
    ids=["plain", "slash", "dot-in-name", "dot-in-project", "project-setting"],
)
def test_new_session_derives_names(
    tmp_path: Path, folder: str, raw: dict[str, Any], name: str, worktree: str, tmux_name: str
) -> None:
    main = tmp_path / "Dev" / folder
    s = project(main, **raw).new_session(name)
    assert s.name == name
    assert s.branch == name
    assert s.worktree == tmp_path / "Dev" / worktree
    assert s.tmux_name == tmux_name
    assert "." not in s.tmux_name and ":" not in s.tmux_name
    assert s.ports == {}


def test_new_session_under_configured_worktrees(tmp_path: Path) -> None:
    main = tmp_path / "Dev" / "tally"
    p = project(main, worktrees="../trees")
    assert p.new_session("x").worktree == tmp_path / "Dev" / "trees" / "tally-x"  # no ".."
    assert project(main, worktrees=str(tmp_path / "abs")).worktrees_dir == tmp_path / "abs"


def test_project_paths(tmp_path: Path) -> None:
    main = tmp_path / "Dev" / "tally"
    p = project(main)
    assert p.name == "tally"
    assert p.registry_path == main / ".tally-sessions"
    assert p.lock_path == main / ".git" / "tally-sessions.lock"
    assert p.worktrees_dir == tmp_path / "Dev"
    assert project(main, registry="state/sessions.json").registry_path == (
        main / "state" / "sessions.json"
    )


@pytest.mark.parametrize(
    "entry, branch, worktree, ports",
    [
        (
            {
                "backend_port": 8003,
                "frontend_port": 5003,
                "worktree": "/elsewhere/wt",
                "branch": "feature/other",
            },
            "feature/other",
            Path("/elsewhere/wt"),
            {"backend": 8003, "frontend": 5003},
        ),
        ({}, "feature/auth", None, {}),
        ({"worktree": "", "branch": "", "created": 1}, "feature/auth", None, {}),
        ({"storybook_port": 6006}, "feature/auth", None, {"storybook": 6006}),
    ],
    ids=["recorded-values-win", "empty-entry", "empty-strings", "extra-port"],
)
def test_session_prefers_the_registry(
    tmp_path: Path,
    entry: dict[str, Any],
    branch: str,
    worktree: Path | None,
    ports: dict[str, int],
) -> None:
    main = tmp_path / "Dev" / "tally"
    s = project(main).session("feature/auth", entry)
    assert s.name == "feature/auth"
    assert s.branch == branch
    assert s.worktree == (worktree or tmp_path / "Dev" / "tally-feature-auth")
    assert s.tmux_name == "tally-feature-auth"  # derived, never recorded
    assert s.ports == ports


def test_session_env() -> None:
    s = Session(
        name="feature/auth",
        branch="feature/auth",
        worktree=Path("/w"),
        tmux_name="tally-feature-auth",
        ports={"backend": 8001, "frontend": 5001, "storybook": 6007},
    )
    assert s.env() == {
        "TALLY_SESSION": "feature/auth",
        "TALLY_BACKEND_PORT": "8001",
        "TALLY_FRONTEND_PORT": "5001",
        "TALLY_STORYBOOK_PORT": "6007",
    }


def test_session_values_fill_the_default_windows(tmp_path: Path) -> None:
    main = tmp_path / "Dev" / "tally"
    p = project(main)
    s = p.session("feature/auth", {"backend_port": 8001, "frontend_port": 5001})
    values = s.values(p)
    assert values == {
        "name": "feature/auth",
        "slug": "feature-auth",
        "project": "tally",
        "session": "tally-feature-auth",
        "worktree": str(tmp_path / "Dev" / "tally-feature-auth"),
        "branch": "feature/auth",
        "main": str(main),
        "claude_resume": "--continue",
        "backend_port": 8001,
        "frontend_port": 5001,
    }
    cmds = [render(w.cmd, values) for w in p.settings.windows]
    assert cmds == [
        "python manage.py runserver 8001",
        "npm run dev -- --port 5001 --strictPort",
        "claude -n tally-feature-auth",
    ]
    assert render(p.settings.windows[2].resume_cmd, values) == (
        "claude --continue || claude -n tally-feature-auth"
    )
    assert render(p.settings.activate, values) == "workon tally"


@pytest.mark.parametrize(
    ("recorded", "expected"),
    [
        (None, "claude --continue || claude -n tally-x"),
        (
            {"state": "idle", "session_id": "d379358d-fd7e-4af4"},
            "claude --resume d379358d-fd7e-4af4 || claude -n tally-x",
        ),
        ({"state": "idle", "session_id": "x; rm -rf ~"}, "claude --continue || claude -n tally-x"),
        ({"state": "idle", "session_id": ""}, "claude --continue || claude -n tally-x"),
    ],
    ids=["none-recorded", "recorded", "not-an-id", "empty"],
)
def test_claude_resume_is_exact(
    tmp_path: Path, recorded: dict[str, str] | None, expected: str
) -> None:
    import json

    from tally_tasks import agent

    main = tmp_path / "Dev" / "tally"
    p = project(main)
    s = p.session("x", {})
    if recorded is not None:
        path = agent.state_path(p.common_dir, s.slug)
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(recorded))
    assert render(p.settings.windows[2].resume_cmd, s.values(p)) == expected
