"""Settings: defaults, how a project's config merges with them, and every rejected shape."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from invoke import Config

from tally_tasks.config import (
    DEFAULTS,
    LINK_MODES,
    PLACEHOLDERS,
    Link,
    Settings,
    StepSpec,
    Window,
    explain_file,
    settings_from,
    window_folder,
)
from tally_tasks.errors import TallyError

# --- defaults -------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [None, {}], ids=["none", "empty"])
def test_defaults(raw: dict[str, Any] | None) -> None:
    s = settings_from(raw)
    assert s.ports == {"backend": 8000, "frontend": 5000}
    assert [w.name for w in s.windows] == ["backend", "frontend", "claude"]
    assert [w.dir for w in s.windows] == ["backend", "frontend", ""]
    assert s.windows[0].cmd == "python manage.py runserver {backend_port}"
    steps = ["ports", "worktree", "links", "env", "claude_perms", "tmux"]
    assert [spec.task for spec in s.add_steps] == steps == DEFAULTS["add_steps"]
    assert s.remove_steps == ()
    assert s.links == (Link("frontend/node_modules", "auto"), Link("backend/db.sqlite3"))
    assert s.links[1].mode == "symlink"
    assert s.copies == ("backend/.env", "frontend/.env")
    assert s.registry == ".tally-sessions"
    assert s.lock_timeout == 30.0
    assert s.activate == "workon {project}"
    assert s.claude_config == "~/.claude.json"
    assert s.claude_trust == "inherit"
    assert s.claude_lock_stale == 10.0
    assert s.hooks == {
        "post_add": (),
        "pre_remove": (),
        "post_resume": (),
        "on_waiting": (),
        "pre_land": (),
    }
    assert (s.land_method, s.land_into) == ("rebase", "")
    assert s.protect == ("*.sql", "*.dump", "*.bak", "*.sqlite3")
    assert (s.project, s.worktrees, s.tmux_socket) == ("", "", "")
    assert (s.ready_timeout, s.attention_message, s.attention_bell) == (30.0, True, True)


def test_defaults_are_not_changed_by_settings_from() -> None:
    settings_from(
        {"ports": {"frontend": None, "x": 7000}, "windows": [], "hooks": {"post_add": []}}
    )
    assert DEFAULTS["ports"] == {"backend": 8000, "frontend": 5000}
    assert len(DEFAULTS["windows"]) == 3
    assert DEFAULTS["hooks"] == {
        "post_add": [],
        "pre_remove": [],
        "post_resume": [],
        "on_waiting": [],
        "pre_land": [],
    }


# --- merging: mappings key by key, lists replaced -------------------------------------------

OVERRIDES: list[tuple[dict[str, Any], Callable[[Settings], object], object]] = [
    (
        {"ports": {"storybook": 6006}},
        lambda s: s.ports,
        {"backend": 8000, "frontend": 5000, "storybook": 6006},
    ),
    ({"ports": {"frontend": None}, "windows": []}, lambda s: s.ports, {"backend": 8000}),
    ({"ports": {"backend": 9000}}, lambda s: s.ports, {"backend": 9000, "frontend": 5000}),
    (
        {"windows": [{"name": "agent", "cmd": "codex"}]},
        lambda s: s.windows,
        (Window(name="agent", dir="", cmd="codex", resume_cmd=""),),
    ),
    ({"windows": []}, lambda s: s.windows, ()),
    ({"links": ["shared/data"]}, lambda s: s.links, (Link("shared/data"),)),
    (
        {"links": ["a", {"path": "b/c", "mode": "hardlink"}, {"path": "d"}]},
        lambda s: s.links,
        (Link("a"), Link("b/c", "hardlink"), Link("d", "symlink")),
    ),
    (
        {"links": [{"path": "n", "mode": m} for m in LINK_MODES]},
        lambda s: [link.mode for link in s.links],
        ["symlink", "hardlink", "reflink", "copy", "auto"],
    ),
    ({"copies": ["api/.env"]}, lambda s: s.copies, ("api/.env",)),
    ({"copies": []}, lambda s: s.copies, ()),
    (
        {"add_steps": ["ports", "worktree"]},
        lambda s: s.add_steps,
        (StepSpec("ports"), StepSpec("worktree")),
    ),
    (
        {"add_steps": ["ports", "worktree", "migrate", {"task": "db.seed", "undo": "db.drop"}]},
        lambda s: s.add_steps[2:],
        (StepSpec("migrate"), StepSpec("db.seed", "db.drop")),
    ),
    ({"remove_steps": ["db.drop"]}, lambda s: s.remove_steps, (StepSpec("db.drop"),)),
    (
        {"claude": {"trust": "never"}},
        lambda s: (s.claude_trust, s.claude_config, s.claude_lock_stale),
        ("never", "~/.claude.json", 10.0),
    ),
    (
        {"hooks": {"post_add": ["make setup"]}},
        lambda s: s.hooks,
        {
            "post_add": ("make setup",),
            "pre_remove": (),
            "post_resume": (),
            "on_waiting": (),
            "pre_land": (),
        },
    ),
    ({"land": {"method": "squash"}}, lambda s: (s.land_method, s.land_into), ("squash", "")),
    ({"land": {"into": "develop"}}, lambda s: (s.land_method, s.land_into), ("rebase", "develop")),
    ({"activate": ""}, lambda s: s.activate, ""),
    ({"lock_timeout": 0}, lambda s: s.lock_timeout, 0.0),
    ({"project": "web"}, lambda s: s.project, "web"),
]


@pytest.mark.parametrize(
    "raw, get, expected",
    OVERRIDES,
    ids=[
        "ports-adds-one",
        "ports-null-drops-one",
        "ports-changes-a-base",
        "windows-replaced",
        "windows-emptied",
        "links-replaced",
        "links-str-or-mapping",
        "links-every-mode",
        "copies-replaced",
        "copies-emptied",
        "add-steps-replaced",
        "add-steps-project-tasks",
        "remove-steps",
        "claude-merged",
        "hooks-merged",
        "land-method",
        "land-into",
        "activate-emptied",
        "lock-timeout-zero",
        "project",
    ],
)
def test_overrides(
    raw: dict[str, Any], get: Callable[[Settings], object], expected: object
) -> None:
    assert get(settings_from(raw)) == expected


def test_overrides_keep_the_other_defaults() -> None:
    s = settings_from({"ports": {"storybook": 6006}, "links": ["x"]})
    assert [w.name for w in s.windows] == ["backend", "frontend", "claude"]
    assert s.copies == ("backend/.env", "frontend/.env")


def test_invoke_config_layers_are_accepted() -> None:
    """What the tasks pass in: invoke's DataProxy, not a plain dict."""
    config = Config(
        defaults={"tally": DEFAULTS},
        overrides={
            "tally": {"ports": {"frontend": None, "storybook": 6006}, "links": ["x"], "windows": []}
        },
    )
    s = settings_from(config.tally)
    assert s.ports == {"backend": 8000, "storybook": 6006}
    assert s.links == (Link("x"),)


# --- wrong types name the key ---------------------------------------------------------------

BAD: list[Any] = [
    ({"ports": {"backend": "8000"}}, "ports.backend"),
    ({"ports": {"backend": 70000}}, "ports.backend"),
    ({"ports": {"backend": 0}}, "ports.backend"),
    ({"ports": {"frontend": True}}, "ports.frontend"),
    ({"ports": {"backend": 80.5}}, "ports.backend"),
    ({"ports": {"frontend": 8000}}, "ports"),
    ({"ports": [8000]}, "ports"),
    ({"ports": None}, "ports"),
    ({"ports": {"Storybook": 6006}}, "ports.Storybook"),
    ({"windows": "backend"}, "windows"),
    ({"windows": ["backend"]}, "windows[0]"),
    ({"windows": [{"name": "1"}]}, "windows[0].name"),
    ({"windows": [{"name": 1}]}, "windows[0].name"),
    ({"windows": [{"cmd": "x"}]}, "windows[0].name"),
    ({"windows": [{"name": "a b"}]}, "windows[0].name"),
    ({"windows": [{"name": "a"}, {"name": "a"}]}, "windows[1].name"),
    ({"windows": [{"name": "a", "dir": "/srv"}]}, "windows[0].dir"),
    ({"windows": [{"name": "a", "dir": "../up"}]}, "windows[0].dir"),
    ({"windows": [{"name": "a", "cmd": ["ls"]}]}, "windows[0].cmd"),
    ({"links": "node_modules"}, "links"),
    ({"links": [{"path": "a", "mode": "bogus"}]}, "links[0].mode"),
    ({"links": ["/etc"]}, "links[0]"),
    ({"links": ["ok", "../up"]}, "links[1]"),
    ({"links": ["a/../../up"]}, "links[0]"),
    ({"links": [{"path": "/etc"}]}, "links[0].path"),
    ({"links": [{"mode": "copy"}]}, "links[0].path"),
    ({"links": [""]}, "links[0]"),
    ({"links": [7]}, "links[0]"),
    ({"copies": ["/etc/passwd"]}, "copies[0]"),
    ({"copies": ["ok", ".."]}, "copies[1]"),
    ({"copies": ["a/../../b"]}, "copies[0]"),
    ({"copies": "backend/.env"}, "copies"),
    ({"add_steps": ["ports", "de ploy"]}, "add_steps[1]"),
    ({"add_steps": ["ports", 3]}, "add_steps[1]"),
    ({"add_steps": [{"undo": "db.drop"}]}, "add_steps[0].task"),
    ({"add_steps": [{"task": "db.seed", "undo": 3}]}, "add_steps[0].undo"),
    ({"add_steps": "ports"}, "add_steps"),
    ({"remove_steps": "db.drop"}, "remove_steps"),
    ({"remove_steps": [""]}, "remove_steps[0]"),
    ({"claude": {"trust": "always"}}, "claude.trust"),
    ({"claude": {"trust": True}}, "claude.trust"),
    ({"claude": "yes"}, "claude"),
    ({"claude": {"lock_stale": -1}}, "claude.lock_stale"),
    ({"claude": {"config": 1}}, "claude.config"),
    ({"hooks": {"post_add": "make"}}, "hooks.post_add"),
    ({"hooks": {"post_add": [["make"]]}}, "hooks.post_add"),
    ({"hooks": ["make"]}, "hooks"),
    ({"land": {"method": "rebase-merge"}}, "land.method"),
    ({"land": {"into": 1}}, "land.into"),
    ({"land": "squash"}, "land"),
    ({"lock_timeout": -1}, "lock_timeout"),
    ({"lock_timeout": "5"}, "lock_timeout"),
    ({"lock_timeout": True}, "lock_timeout"),
    ({"lock_timeout": None}, "lock_timeout"),
    ({"lock_timeout": float("nan")}, "lock_timeout"),
    ({"lock_timeout": float("inf")}, "lock_timeout"),
    ({"links": ["."]}, "links[0]"),
    ({"project": "a/b"}, "project"),
    ({"project": ".."}, "project"),
    ({"registry": 5}, "registry"),
    ({"activate": ["workon x"]}, "activate"),
    ({"ready_timeout": -1}, "ready_timeout"),
    ({"ready_timeout": "30"}, "ready_timeout"),
    ({"attention": {"bell": "no"}}, "attention.bell"),
    ({"attention": {"message": None}}, "attention.message"),
    ({"attention": True}, "attention"),
    ({"hooks": {"on_waiting": "notify-send x"}}, "hooks.on_waiting"),
    ({"protect": "*.sql"}, "protect"),
    ({"protect": ["*.sql", 3]}, "protect[1]"),
    ({"protect": [" "]}, "protect[0]"),
    ({"protect": ["a\nb"]}, "protect[0]"),
]


@pytest.mark.parametrize(
    "raw, key",
    BAD,
    ids=[
        "port-as-string",
        "port-above-65535",
        "port-zero",
        "port-bool",
        "port-float",
        "ports-duplicate-bases",
        "ports-not-mapping",
        "ports-null",
        "port-name-uppercase",
        "windows-not-list",
        "window-not-mapping",
        "window-name-numeric",
        "window-name-int",
        "window-name-missing",
        "window-name-space",
        "window-name-duplicate",
        "window-dir-absolute",
        "window-dir-dotdot",
        "window-cmd-list",
        "links-not-list",
        "link-mode-unknown",
        "link-absolute",
        "link-dotdot",
        "link-dotdot-inside",
        "link-mapping-absolute",
        "link-mapping-no-path",
        "link-empty",
        "link-int",
        "copy-absolute",
        "copy-dotdot",
        "copy-dotdot-inside",
        "copies-not-list",
        "add-steps-bad-name",
        "add-steps-not-a-name",
        "add-steps-mapping-without-task",
        "add-steps-bad-undo",
        "add-steps-not-list",
        "remove-steps-not-list",
        "remove-steps-empty-name",
        "claude-trust-unknown",
        "claude-trust-bool",
        "claude-not-mapping",
        "claude-lock-stale-negative",
        "claude-config-int",
        "hooks-not-list",
        "hooks-command-not-str",
        "hooks-not-mapping",
        "land-method-unknown",
        "land-into-int",
        "land-not-mapping",
        "lock-timeout-negative",
        "lock-timeout-string",
        "lock-timeout-bool",
        "lock-timeout-null",
        "lock-timeout-nan",
        "lock-timeout-inf",
        "link-dot",
        "project-with-slash",
        "project-dotdot",
        "registry-int",
        "activate-list",
        "ready-timeout-negative",
        "ready-timeout-string",
        "attention-bell-string",
        "attention-message-null",
        "attention-not-mapping",
        "on-waiting-not-list",
        "protect-not-list",
        "protect-not-str",
        "protect-blank",
        "protect-newline",
    ],
)
def test_wrong_values_name_the_key(raw: dict[str, Any], key: str) -> None:
    with pytest.raises(TallyError, match=rf"config key {re.escape('tally.' + key)} must be") as e:
        settings_from(raw)
    message = str(e.value)
    assert "\n" not in message
    # where to fix it (the file, or an INVOKE_TALLY_ variable) is added by the task layer


# --- typos: unknown keys, unknown placeholders, a window folder the worktree lacks ----------

UNKNOWN: list[tuple[dict[str, Any], str, str]] = [
    ({"activte": "workon x"}, "activte", "did you mean activate?"),
    ({"port": {"backend": 1}}, "port", "did you mean ports?"),
    ({"claude": {"trus": "never"}}, "claude.trus", "did you mean trust?"),
    ({"hooks": {"post_ad": ["x"]}}, "hooks.post_ad", "did you mean post_add?"),
    ({"windows": [{"name": "a", "comand": "x"}]}, "windows[0].comand", "did you mean cmd?"),
    ({"windows": [{"name": "a", "resume": "x"}]}, "windows[0].resume", "did you mean resume_cmd?"),
    ({"links": ["a", {"path": "b", "mod": "copy"}]}, "links[1].mod", "did you mean mode?"),
    (
        {"add_steps": ["ports", {"task": "db.seed", "udno": "x"}]},
        "add_steps[1].udno",
        "did you mean undo?",
    ),
    ({"zzz": 1}, "zzz", "valid: project, worktrees"),
]


@pytest.mark.parametrize(
    "raw, key, hint",
    UNKNOWN,
    ids=[
        "top",
        "top-mapping",
        "claude",
        "hooks",
        "window",
        "window-2",
        "link",
        "step",
        "no-near-name",
    ],
)
def test_an_unknown_key_is_one_error_with_the_nearest_name(
    raw: dict[str, Any], key: str, hint: str
) -> None:
    with pytest.raises(TallyError) as e:
        settings_from(raw)
    assert str(e.value).startswith(f"config key tally.{key} is unknown; {hint}")
    assert "\n" not in str(e.value)


def test_open_mappings_take_any_name() -> None:
    """ports and hosts are named by the user: their keys are not checked against DEFAULTS."""
    assert settings_from({"ports": {"storybook": 6006}}).ports["storybook"] == 6006
    settings_from({"hosts": {"box1": {"host": "b", "main": "~/x"}}})


def test_keys_added_to_the_defaults_are_known_with_no_other_list(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(DEFAULTS, "ready_timeout", 60.0)
    monkeypatch.setitem(DEFAULTS, "land", {"strategy": "rebase"})
    settings_from({"ready_timeout": 5, "land": {"strategy": "merge"}})
    with pytest.raises(TallyError, match=r"tally\.land\.stratgy is unknown; did you mean strategy"):
        settings_from({"land": {"stratgy": "merge"}})


@pytest.mark.parametrize(
    "text, said",
    [
        ("tally:\n  activte: workon x\n", "tally.activte is unknown; did you mean activate?"),
        (
            "tally:\n  hosts:\n    b: {host: h, main: /m, comand: x}\n",
            "tally.hosts.b.comand is unknown; did you mean command?",
        ),
    ],
    ids=["top", "host-entry"],
)
def test_a_file_with_an_unknown_key_is_named(tmp_path: Path, text: str, said: str) -> None:
    (tmp_path / "invoke.yaml").write_text(text)
    assert explain_file(tmp_path) == f"{tmp_path / 'invoke.yaml'}: config key {said}"


PLACEHOLDER_TYPOS: list[tuple[dict[str, Any], str, str]] = [
    (
        {"windows": [{"name": "b", "cmd": "runserver {backnd_port}"}]},
        "windows[0].cmd",
        "{backnd_port}; did you mean {backend_port}?",
    ),
    (
        {"windows": [{"name": "b", "cmd": "x", "resume_cmd": "claude -r {sesion}"}]},
        "windows[0].resume_cmd",
        "{sesion}; did you mean {session}?",
    ),
    ({"hooks": {"pre_remove": ["ok", "rm {worktre}/x"]}}, "hooks.pre_remove[1]", "{worktre}"),
    ({"activate": "workon {projct}"}, "activate", "{projct}; did you mean {project}?"),
    (
        {"windows": [{"name": "s", "cmd": "storybook -p {x_port}"}]},
        "windows[0].cmd",
        "{x_port}; ports: backend, frontend",
    ),
    (
        {"ports": {"frontend": None}},
        "windows[1].cmd",
        "{frontend_port}; tally.ports drops frontend",
    ),
]


@pytest.mark.parametrize(
    "raw, key, said",
    PLACEHOLDER_TYPOS,
    ids=["window-cmd", "window-resume", "hook", "activate", "unknown-port", "dropped-port"],
)
def test_an_unknown_placeholder_is_one_error(raw: dict[str, Any], key: str, said: str) -> None:
    with pytest.raises(TallyError) as e:
        settings_from(raw)
    assert str(e.value).startswith(f"config key tally.{key}: unknown placeholder {said}")


@pytest.mark.parametrize(
    "cmd",
    [
        "ps | awk '{print $1}'",
        "awk '{print}'",
        "echo ${name} ${HOME}",
        "find . -exec ls {} +",
        "echo {user}",
        "sb -p {storybook_port} {name} {slug} {project} {session} {worktree} {branch} {main}",
    ],
    ids=["awk", "awk-bare", "shell-vars", "find", "far-from-any", "every-placeholder"],
)
def test_shell_braces_and_known_placeholders_pass(cmd: str) -> None:
    s = settings_from({"ports": {"storybook": 6006}, "windows": [{"name": "w", "cmd": cmd}]})
    assert s.windows[0].cmd == cmd


def test_placeholders_are_what_a_session_has(tmp_path: Path) -> None:
    from tally_tasks.session import Project

    project = Project(tmp_path, tmp_path / ".git", settings_from({}))
    values = project.new_session("x").values(project)
    assert set(PLACEHOLDERS) == set(values)  # a session without ports: no {<port>_port}


@pytest.mark.parametrize(
    "folder", [".", "./", "", "./backend"], ids=["dot", "dot-slash", "empty", "dot-backend"]
)
def test_a_window_dir_of_dot_is_the_root(folder: str) -> None:
    s = settings_from({"windows": [{"name": "w", "dir": folder}]})
    assert s.windows[0].dir == ("backend" if "backend" in folder else "")


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for d in ("backend", "frontend/src", "frontend/node_modules/pkg", ".git/objects"):
        (tmp_path / "wt" / d).mkdir(parents=True)
    return tmp_path / "wt"


@pytest.mark.parametrize(
    "folder, found",
    [("", ""), ("backend", "backend"), ("frontend/src", "frontend/src")],
    ids=["root", "top", "nested"],
)
def test_window_folder_of_a_folder_that_exists(tree: Path, folder: str, found: str) -> None:
    assert window_folder(tree, 0, Window("w", folder, "", "")) == tree / found


@pytest.mark.parametrize(
    "folder, hint",
    [
        ("backnd", "did you mean backend?"),
        ("frontend/scr", "did you mean frontend/src?"),
        ("zzzzzz", "folders: backend, frontend"),
    ],
    ids=["top", "nested", "no-near-name"],
)
def test_window_folder_the_worktree_lacks_is_an_error(tree: Path, folder: str, hint: str) -> None:
    with pytest.raises(TallyError) as e:
        window_folder(tree, 2, Window("w", folder, "", ""))
    message = str(e.value)
    assert message.startswith(f"config key tally.windows[2].dir: {folder}/ does not exist")
    assert message.endswith(hint)
    assert ".git" not in message and "node_modules" not in message


def test_window_folder_names_the_file_the_windows_come_from(tree: Path, tmp_path: Path) -> None:
    main = tmp_path / "main"
    main.mkdir()
    win = Window("backend", "backnd", "", "")
    with pytest.raises(TallyError, match=r"^config key tally\.windows\[0\]\.dir: backnd/"):
        window_folder(tree, 0, win, main)
    (main / "invoke.yaml").write_text(json.dumps({"tally": {"windows": [{"name": "backend"}]}}))
    with pytest.raises(TallyError) as e:
        window_folder(tree, 0, win, main)
    assert str(e.value).startswith(f"{main / 'invoke.yaml'}: config key tally.windows[0].dir: ")
