"""tally-session's quick path (tally_tasks.quick): `list` without invoke, with the same
output, exit status and settings as invoke's path; anything else left to invoke."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import Sample, run_cli
from invoke import Config
from test_startup import imported

from tally_tasks import quick, yamlcache
from tally_tasks.config import DEFAULTS, plain

# Any INVOKE_* variable sends tally-session through invoke (this one is no setting).
INVOKE_PATH = {"INVOKE_TALLY_TEST_UNUSED": "1"}
TIMING = {"PYTHONPROFILEIMPORTTIME": "1"}


def both(args: list[str], cwd: Path, **env: str) -> tuple[Any, Any]:
    """(quick path, invoke's path) of `tally-session ARGS`: returncode, stdout, stderr."""
    quick_run = run_cli(["tally-session", *args], cwd, env=dict(env))
    invoke_run = run_cli(["tally-session", *args], cwd, env={**env, **INVOKE_PATH})
    return (
        (quick_run.returncode, quick_run.stdout, quick_run.stderr),
        (invoke_run.returncode, invoke_run.stdout, invoke_run.stderr),
    )


def invoke_modules(args: list[str], cwd: Path, **env: str) -> bool:
    """Whether `tally-session ARGS` imports invoke (it must succeed)."""
    r = run_cli(["tally-session", *args], cwd, env={**env, **TIMING})
    assert r.returncode == 0, r.stderr[-2000:]
    return "invoke" in imported(r.stderr)


def settled(sample: Sample) -> None:
    """Session x, its servers up (their state no longer changing) and an age that stays
    the same a while: both paths' runs see the same state."""
    assert run_cli(["inv", "session.add", "x", "-q"], sample.main).returncode == 0
    registry = sample.registry()
    registry["x"]["created"] = "2020-01-01T00:00:00+0000"
    (sample.main / ".tally-sessions").write_text(json.dumps(registry))


FLAGS = [[], ["--json"], ["--json", "--brief"], ["-j", "-b"], ["--git"], ["-g"]]


@pytest.mark.parametrize("flags", FLAGS, ids=lambda f: " ".join(f) or "plain")
def test_list_says_what_invokes_path_says(sample: Sample, flags: list[str]) -> None:
    settled(sample)
    registry = sample.registry()
    # a stale entry: its note goes to stdout, or stderr with --json
    registry["gone"] = {**registry["x"], "worktree": str(sample.root / "nowhere")}
    (sample.main / ".tally-sessions").write_text(json.dumps(registry))
    ours, invokes = both(["list", *flags], sample.main)
    assert ours == invokes
    assert ours[0] == 0 and "x" in ours[1]
    assert not invoke_modules(["list", *flags], sample.main)


@pytest.mark.parametrize(
    "case",
    ["no sessions", "a bad setting", "outside a checkout", "cwd in a worktree"],
)
def test_list_in_every_situation_as_invoke_says_it(sample: Sample, case: str) -> None:
    cwd = sample.main
    if case == "a bad setting":
        sample.write_config(lock_timeout="soon")
    elif case == "outside a checkout":
        cwd = sample.root
    elif case == "cwd in a worktree":
        settled(sample)
        cwd = Path(sample.registry()["x"]["worktree"])
    ours, invokes = both(["list"], cwd)
    assert ours == invokes
    assert (ours[0] == 0) == (case in ("no sessions", "cwd in a worktree")), ours


@pytest.mark.parametrize(
    "args, env",
    [
        (["list", "--host", ""], {}),
        (["list", "--all-hosts"], {}),
        (["list", "--json", "--json"], {}),
        (["list", "--help"], {}),
        (["--echo", "list"], {}),
        (["list"], {"INVOKE_TALLY_REGISTRY": ".other-sessions"}),
    ],
    ids=["host", "all-hosts", "twice", "help", "core-option", "env-setting"],
)
def test_anything_else_goes_through_invoke(
    sample: Sample, args: list[str], env: dict[str, str]
) -> None:
    assert invoke_modules(args, sample.main, **env)


# --- the settings: what invoke's Config gives, for the same files -------------------------


def invokes_tally(main: Path) -> Any:
    """`tally` as tally-session's Program (tally_tasks.cli) and its Executor load it."""
    config = Config()  # the system and user files
    config.set_project_location(str(main))
    config.load_project()
    config.load_collection({"tally": DEFAULTS})
    config.load_shell_env()
    return plain(config.get("tally"))


USER_YAML = "tally:\n  ports:\n    backend: 9100\n  hooks:\n    post_add: [make x]\n"
SETTINGS = [
    ("none", {}, None),
    ("project yaml", {"project": "invoke.yaml"}, None),
    ("project yml", {"project": "invoke.yml"}, None),
    ("project json", {"project": "invoke.json"}, None),
    ("yaml wins over json", {"project": "invoke.yaml", "also": "invoke.json"}, None),
    ("user and project", {"project": "invoke.yaml", "user": USER_YAML}, None),
    ("empty project file", {"project": "invoke.yaml", "text": ""}, None),
    (
        "other keys",
        {"project": "invoke.yaml", "text": "db:\n  name: x\ntally:\n  project: p\n"},
        None,
    ),
    (
        "yaml 1.1 words",
        {"project": "invoke.yaml", "text": "tally:\n  attention: {bell: no}\n"},
        None,
    ),
    ("a python file", {"project": "invoke.py", "text": "tally = {}\n"}, "unsure"),
    ("invoke's own keys", {"project": "invoke.yaml", "text": "run:\n  echo: true\n"}, "unsure"),
    ("mapping against value", {"project": "invoke.yaml", "text": "tally:\n  ports: 5\n"}, "unsure"),
    ("not YAML", {"project": "invoke.yaml", "text": "tally: [\n"}, "unsure"),
    ("not a mapping", {"project": "invoke.yaml", "text": "- 1\n"}, "unsure"),
    ("a folder", {"folder": "invoke.yaml"}, "unsure"),
]


@pytest.mark.parametrize(
    "how, expected", [(s[1], s[2]) for s in SETTINGS], ids=[s[0] for s in SETTINGS]
)
def test_settings_are_invokes(sample: Sample, how: dict[str, str], expected: str | None) -> None:
    main = sample.main
    (main / "invoke.yaml").unlink()
    text = how.get("text", json.dumps({"tally": {**sample.config, "activate": "x"}}))
    if "project" in how:
        (main / how["project"]).write_text(text)
    if "also" in how:
        (main / how["also"]).write_text(json.dumps({"tally": {"activate": "json"}}))
    if "user" in how:
        (sample.home / ".invoke.yaml").write_text(how["user"])
    if "folder" in how:
        (main / how["folder"]).mkdir()
    if expected == "unsure":
        with pytest.raises(quick._Unsure):
            quick.tally_config(main, main / ".git")
        return
    for _ in range(2):  # parsed, then kept
        assert quick.tally_config(main, main / ".git") == invokes_tally(main)


def test_invokes_own_keys_are_known() -> None:
    assert set(quick.INVOKE_KEYS) == set(Config.global_defaults())


def test_kept_parse_follows_the_file(sample: Sample) -> None:
    main = sample.main
    kept = main / ".git" / yamlcache.CACHE_FILE
    assert quick.tally_config(main, main / ".git")["activate"] == sample.config["activate"]
    assert kept.is_file() and kept.stat().st_mode & 0o777 == 0o600
    # the same file: the kept parse, without PyYAML
    r = run_cli(["tally-session", "list"], main, env=TIMING)
    pyyaml = ("invoke.vendor.yaml", "tally_tasks._invoke_yaml", "yaml")
    assert not any(m.startswith(pyyaml) for m in imported(r.stderr)), r.stderr[-2000:]
    # another text (same size, same second): parsed again
    old = (main / "invoke.yaml").read_text()
    new = old.replace("export TALLY_ACTIVATED=yes", "export TALLY_ACTIVATED=no!")
    assert len(new) == len(old)
    (main / "invoke.yaml").write_text(new)
    assert quick.tally_config(main, main / ".git")["activate"] == "export TALLY_ACTIVATED=no!"
    # a damaged cache is no cache
    kept.write_bytes(b"\x00garbage")
    assert quick.tally_config(main, main / ".git") == invokes_tally(main)


def test_an_unwritable_cache_is_only_slower(sample: Sample) -> None:
    main = sample.main
    (main / ".git" / yamlcache.CACHE_FILE).mkdir()  # cannot be replaced by a file
    assert quick.tally_config(main, main / ".git") == invokes_tally(main)
    ours, invokes = both(["list"], main)
    assert ours == invokes


def test_only_the_projects_file_is_kept(sample: Sample) -> None:
    (sample.home / ".invoke.yaml").write_text("tally:\n  tmux_socket: secret-of-the-user\n")
    main = sample.main
    assert quick.tally_config(main, main / ".git")["tmux_socket"] == "secret-of-the-user"
    assert b"secret-of-the-user" not in (main / ".git" / yamlcache.CACHE_FILE).read_bytes()
