"""Settings: defaults, how a project's config merges with them, and every rejected shape."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from invoke import Config

from tally_tasks.config import DEFAULTS, Link, Settings, StepSpec, Window, settings_from
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
    assert s.links == (Link("frontend/node_modules"), Link("backend/db.sqlite3"))
    assert all(link.mode == "symlink" for link in s.links)
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
    ({"ports": {"frontend": None}}, lambda s: s.ports, {"backend": 8000}),
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
        {"links": [{"path": "n", "mode": m} for m in ("symlink", "hardlink", "reflink", "copy")]},
        lambda s: [link.mode for link in s.links],
        ["symlink", "hardlink", "reflink", "copy"],
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
        overrides={"tally": {"ports": {"frontend": None, "storybook": 6006}, "links": ["x"]}},
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
    ({"add_steps": [{"task": "db.seed", "when": "always"}]}, "add_steps[0]"),
    ({"add_steps": "ports"}, "add_steps"),
    ({"remove_steps": "db.drop"}, "remove_steps"),
    ({"remove_steps": [""]}, "remove_steps[0]"),
    ({"claude": {"trust": "always"}}, "claude.trust"),
    ({"claude": {"trust": True}}, "claude.trust"),
    ({"claude": "yes"}, "claude"),
    ({"claude": {"lock_stale": -1}}, "claude.lock_stale"),
    ({"claude": {"config": 1}}, "claude.config"),
    ({"hooks": {"post_ad": ["x"]}}, "hooks.post_ad"),
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
        "add-steps-mapping-unknown-key",
        "add-steps-not-list",
        "remove-steps-not-list",
        "remove-steps-empty-name",
        "claude-trust-unknown",
        "claude-trust-bool",
        "claude-not-mapping",
        "claude-lock-stale-negative",
        "claude-config-int",
        "hooks-unknown-point",
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
