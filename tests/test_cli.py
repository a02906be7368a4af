"""The old script's command line and `inv`, end to end, as a user types them.

`tally-session add|remove|resume|list` must make the same sessions as `inv session.*`;
both read the main checkout's settings from anywhere in it; `--dry-run`, hooks, `open`,
`attach`, the session's environment and ports that stay put.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    VENV_BIN,
    Sample,
    counting,
    free_base,
    git,
    make_sample,
    poll,
    run_cli,
    run_into_closed_pipe,
)

from tally_tasks import __version__
from tally_tasks.cli import translate

FAST = ["ports", "worktree"]  # add without links, copies, Claude or tmux


def ok(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    r = run_cli(args, cwd, env=env)
    assert r.returncode == 0, (args, r.stdout, r.stderr)
    return r


def no_tty(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Like run_cli, with stdin not a terminal whatever pytest was started from."""
    return subprocess.run(
        [str(VENV_BIN / args[0]), *args[1:]],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


def one_line_error(r: subprocess.CompletedProcess[str], says: str) -> None:
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert len(r.stderr.splitlines()) == 1, r.stderr
    assert says in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def tmux(*args: str) -> list[str]:
    proc = subprocess.run(["tmux", *args], capture_output=True, text=True)
    return proc.stdout.splitlines() if proc.returncode == 0 else []


def tmux_sessions() -> set[str]:
    return set(tmux("list-sessions", "-F", "#{session_name}"))


def windows(session: str) -> list[str]:
    return tmux("list-windows", "-t", f"={session}", "-F", "#{window_name}")


def kill(session: str) -> None:
    subprocess.run(["tmux", "kill-session", "-t", f"={session}"], check=True)
    assert session not in tmux_sessions()


def branches(main: Path) -> set[str]:
    return set(git(main, "branch", "--format=%(refname:short)").split())


def calls_of(sample: Sample, prog: str, session: str) -> list[dict[str, Any]]:
    return [c for c in sample.calls(prog) if c["env"].get("TALLY_SESSION") == session]


def wait_calls_of(sample: Sample, prog: str, session: str, n: int = 1) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = poll(
        lambda: len(calls_of(sample, prog, session)) >= n and calls_of(sample, prog, session),
        timeout=15,
    )
    return found


def steps_of(stdout: str) -> list[str]:
    return [line.split()[1] for line in stdout.splitlines() if line.startswith(("✓", "!"))]


# --- the same sessions through both command lines ----------------------------------------


def test_tally_session_add_and_inv_session_add_make_the_same_session(sample: Sample) -> None:
    old = ok(["tally-session", "add", "x"], sample.main)
    new = ok(["inv", "session.add", "y"], sample.main)
    assert steps_of(old.stdout) == steps_of(new.stdout)
    assert steps_of(old.stdout) == [
        *["ports", "worktree", "links", "env", "claude-perms", "tmux"],
        *["backend", "frontend", "claude"],  # each window up, or running
    ]
    reg = sample.registry()
    # the old script's keys in its order, then ours
    keys = ["backend_port", "frontend_port", "worktree", "branch", "created"]
    assert list(reg["x"]) == list(reg["y"]) == keys
    for name, r in (("x", old), ("y", new)):
        wt = sample.main.parent / f"tally-{name}"
        ports = {"backend": reg[name]["backend_port"], "frontend": reg[name]["frontend_port"]}
        assert (reg[name]["worktree"], reg[name]["branch"]) == (str(wt), name)
        assert git(wt, "branch", "--show-current").strip() == name
        assert f"tmux attach -t =tally-{name}" in r.stdout
        assert windows(f"tally-{name}") == ["backend", "frontend", "claude"]
        want = {
            "python": (["manage.py", "runserver", str(ports["backend"])], wt / "backend"),
            "npm": (
                ["run", "dev", "--", "--port", str(ports["frontend"]), "--strictPort"],
                wt / "frontend",
            ),
            "claude": (["-n", f"tally-{name}"], wt),
        }
        for prog, (argv, cwd) in want.items():
            [call] = wait_calls_of(sample, prog, name)
            assert (call["argv"], call["cwd"], call["activated"]) == (argv, str(cwd), "yes")
            assert call["env"] == {
                "TALLY_SESSION": name,
                "TALLY_BACKEND_PORT": str(ports["backend"]),
                "TALLY_FRONTEND_PORT": str(ports["frontend"]),
                "TALLY_ACTIVATED": "yes",
            }
    listed = json.loads(ok(["tally-session", "list", "--json", "--brief"], sample.main).stdout)
    assert [(row["name"], row["running"]) for row in listed] == [("x", True), ("y", True)]


RESUME = [
    pytest.param(["tally-session", "resume", "x"], id="tally-session-resume-x"),
    pytest.param(["inv", "session.resume", "--name=x"], id="inv-name=x"),
    pytest.param(["inv", "session.resume", "--name", "x"], id="inv-name-x"),
    pytest.param(["inv", "session.resume", "-n", "x"], id="inv-n-x"),
    pytest.param(["tally-session", "resume", "--name=x"], id="tally-session-name=x"),
]


@pytest.mark.parametrize("args", RESUME)
def test_resume_one_session_in_every_spelling(sample: Sample, args: list[str]) -> None:
    ok(["inv", "session.add", "x", "-q"], sample.main)
    ok(["inv", "session.add", "y", "-q"], sample.main)
    wait_calls_of(sample, "claude", "x")
    kill("tally-x")
    kill("tally-y")
    r = ok(args, sample.main)
    assert "x: started tally-x" in r.stdout
    assert tmux_sessions() == {"tally-x"}
    assert windows("tally-x") == ["backend", "frontend", "claude"]
    first, again = wait_calls_of(sample, "claude", "x", n=2)
    assert (first["argv"], again["argv"]) == (["-n", "tally-x"], ["--continue"])
    assert again["cwd"] == str(sample.main.parent / "tally-x")
    assert again["activated"] == "yes"
    assert again["env"]["TALLY_SESSION"] == "x"
    r = ok(args, sample.main)  # a running session is left alone
    assert "x: already running" in r.stdout


def test_tally_session_resume_without_a_name_resumes_all(sample: Sample) -> None:
    for name in ("a", "b"):
        ok(["inv", "session.add", name, "-q"], sample.main)
        wait_calls_of(sample, "claude", name)
        kill(f"tally-{name}")
    r = ok(["tally-session", "resume"], sample.main)
    assert {"a: started tally-a", "b: started tally-b"} <= {
        line.split(None, 2)[2] for line in r.stdout.splitlines()
    }
    assert tmux_sessions() == {"tally-a", "tally-b"}
    for name in ("a", "b"):
        calls = wait_calls_of(sample, "claude", name, n=2)
        assert calls[1]["argv"] == ["--continue"]


# --- the program itself ------------------------------------------------------------------

PROGRAM = [
    pytest.param(["--version"], [f"tally-session {__version__}"], id="version"),
    pytest.param(
        ["--help"],
        ["Usage: tally-session COMMAND [--options] [NAME]", "add ", "remove ", "resume ", "list "],
        id="help",
    ),
    pytest.param(["--list"], ["add ", "remove ", "resume ", "list ", "links (relink)"], id="list"),
    pytest.param(
        ["--help", "resume"],
        ["Usage: tally-session resume [--options]", "--name"],
        id="help-resume",
    ),
    pytest.param(
        ["help"], ["Usage: tally-session COMMAND", "tally-session help COMMAND"], id="help-word"
    ),
    pytest.param(
        ["help", "add"], ["Usage: tally-session add [--options] NAME", "--dry-run"], id="help-add"
    ),
    pytest.param(["add", "--help"], ["Usage: tally-session add [--options] NAME"], id="add-help"),
    pytest.param(
        ["send", "--help"], ["Usage: tally-session send [--options] NAME TEXT"], id="send-help"
    ),
    pytest.param(
        ["send", "x", "--help"],
        ["Usage: tally-session send [--options] NAME TEXT"],
        id="send-x-help",
    ),
    pytest.param([], ["Usage: tally-session"], id="bare"),
]


@pytest.mark.parametrize(("args", "says"), PROGRAM)
def test_tally_session_help_version_list_anywhere(
    tmp_path: Path, args: list[str], says: list[str]
) -> None:
    r = run_cli(["tally-session", *args], tmp_path)  # not a git repository
    assert (r.returncode, r.stderr) == (0, "")
    for text in says:
        assert text in r.stdout


def test_tally_session_help_is_about_this_tool(tmp_path: Path) -> None:
    """Invoke's core options (sudo passwords, run()'s hide kwarg) are not this tool's."""
    r = run_cli(["tally-session", "--help"], tmp_path)
    for invokes in ("--prompt-for-sudo-password", "run()'s", "--core-opts", "--write-pyc"):
        assert invokes not in r.stdout
    assert len(r.stdout.splitlines()) < 50


PARSE_ERRORS = [
    (["rx"], "'rx' is not a command of tally-session; see: tally-session --help"),
    (["resum", "x"], "'resum' is not a command of tally-session; did you mean resume?"),
    (["help", "nosuch"], "'nosuch' is not a command of tally-session; see: tally-session --help"),
    (["--bogus"], "tally-session has no option --bogus; see: tally-session --help"),
    (["add"], "add needs the session's name: tally-session add NAME"),
    (["remove"], "remove needs the session's name: tally-session remove NAME"),
    (
        ["add", "a", "b"],
        "add takes one session name; 'b' is one too many; see: tally-session help add",
    ),
    (["list", "--jsn"], "list has no option --jsn; did you mean --json?"),
    (
        ["add", "--bogus", "x"],
        "add has no option --bogus; options: --dry-run, --force, --host, --name, --no-wait, "
        "--quiet",
    ),
    (["list", "extra"], "list takes no session name ('extra'); see: tally-session help list"),
    (["resume", "--host"], "resume: --host needs a value; see: tally-session help resume"),
    (["send"], "send needs name and text: tally-session send NAME TEXT"),
    (["send", "x"], "send needs text: tally-session send NAME TEXT"),
]


@pytest.mark.parametrize(
    ("args", "says"),
    PARSE_ERRORS,
    ids=[
        "unknown-command",
        "near-command",
        "help-unknown-command",
        "unknown-program-option",
        "add-without-name",
        "remove-without-name",
        "extra-name",
        "near-option",
        "unknown-option-before-name",
        "name-to-a-task-without-one",
        "option-without-value",
        "send-without-name-and-text",
        "send-without-text",
    ],
)
def test_tally_session_parse_errors_are_one_line_of_its_own(
    tmp_path: Path, args: list[str], says: str
) -> None:
    r = run_cli(["tally-session", *args], tmp_path)
    assert (r.returncode, r.stdout) == (1, "")
    assert r.stderr == f"✗ {says}\n"


@pytest.mark.parametrize("args", [["--help"], ["--list"]], ids=["help", "list"])
def test_tally_session_into_a_closed_pipe_has_no_traceback(tmp_path: Path, args: list[str]) -> None:
    assert run_into_closed_pipe(["tally-session", *args], tmp_path).stderr == ""


# --- from inside a worktree: the main checkout's settings and places -----------------------


def test_a_branch_without_tasks_py_gets_the_way_to_run_inv_in_its_worktree(
    sample: Sample,
) -> None:
    sample.write_config(add_steps=FAST)
    git(sample.main, "commit", "-q", "-am", "fast adds")
    git(sample.main, "branch", "no-tasks")
    git(sample.main, "checkout", "-q", "no-tasks")
    git(sample.main, "rm", "-q", "tasks.py")
    git(sample.main, "commit", "-q", "-m", "no tasks")
    git(sample.main, "checkout", "-q", "main")
    had = ok(["inv", "session.add", "with-tasks"], sample.main)
    assert "  inv  " not in had.stdout
    r = ok(["inv", "session.add", "no-tasks"], sample.main)
    said = f"inv --search-root {sample.main}"
    assert "  inv       branch no-tasks has no tasks.py, so inv finds no tasks" in r.stdout
    assert said in r.stdout and "tally-session" in r.stdout
    inside = sample.main.parent / "tally-no-tasks" / "backend"
    assert run_cli(["inv", "session.list"], inside).returncode != 0  # invoke's own refusal
    for works in (shlex.split(said) + ["session.list"], ["tally-session", "list"]):
        listed = ok(works, inside)
        assert "no-tasks" in listed.stdout and "with-tasks" in listed.stdout


FROM_WORKTREE = [
    pytest.param(["tally-session", "add", "b", "-q"], id="tally-session"),
    pytest.param(["inv", "session.add", "b", "-q"], id="inv"),
]


def worktree_with_main_config_changed(sample: Sample) -> tuple[Path, dict[str, int]]:
    """Session a's worktree, then new port bases in main's invoke.yaml (not committed)."""
    sample.write_config(add_steps=FAST)
    git(sample.main, "commit", "-q", "-am", "fast adds")
    ok(["inv", "session.add", "a", "-q"], sample.main)
    taken = list(sample.config["ports"].values())
    bases: dict[str, int] = {}
    for port in ("backend", "frontend"):  # far from every other base: no range overlaps
        bases[port] = next(
            b for b in iter(free_base, None) if all(abs(b - t) >= 100 for t in taken)
        )
        taken.append(bases[port])
    sample.write_config(add_steps=FAST, ports=bases)
    return sample.main.parent / "tally-a", bases


@pytest.mark.parametrize("args", FROM_WORKTREE)
def test_from_a_worktree_subfolder_sessions_go_beside_main(sample: Sample, args: list[str]) -> None:
    wt, _ = worktree_with_main_config_changed(sample)
    ok(args, wt / "backend")
    reg = sample.registry()
    assert set(reg) == {"a", "b"}
    assert reg["b"]["worktree"] == str(sample.main.parent / "tally-b")
    assert git(sample.main.parent / "tally-b", "branch", "--show-current").strip() == "b"
    assert "b" in branches(sample.main)
    assert not (wt / ".tally-sessions").exists()
    assert not (wt / "backend" / ".tally-sessions").exists()
    assert sorted(os.listdir(sample.main.parent)) == ["tally", "tally-a", "tally-b"]


@pytest.mark.parametrize("args", FROM_WORKTREE)
def test_from_a_worktree_subfolder_the_main_checkouts_settings_apply(
    sample: Sample, args: list[str]
) -> None:
    wt, bases = worktree_with_main_config_changed(sample)
    ok(args, wt / "backend")
    entry = sample.registry()["b"]
    for port, base in bases.items():
        assert base <= entry[f"{port}_port"] < base + 50, (port, entry)


# --- --dry-run ----------------------------------------------------------------------------


def everything(sample: Sample) -> dict[str, Any]:
    """All the state add and remove touch."""
    claude = sample.home / ".claude.json"
    registry = sample.main / ".tally-sessions"
    return {
        "registry": registry.read_bytes() if registry.exists() else None,
        "branches": branches(sample.main),
        "worktrees": git(sample.main, "worktree", "list", "--porcelain"),
        "status": git(sample.main, "status", "--porcelain", "--ignored"),
        "folders": sorted(os.listdir(sample.main.parent)),
        "tmux": tmux_sessions(),
        "claude": claude.read_bytes(),
        "claude_mode": claude.stat().st_mode,
        "agent_calls": len(sample.calls("claude")),
    }


DRY_RUN = [
    pytest.param("add", ["inv", "session.add", "x", "--dry-run"], id="inv-add"),
    pytest.param("add", ["tally-session", "add", "x", "--dry-run"], id="tally-session-add"),
    pytest.param("remove", ["inv", "session.remove", "x", "--dry-run"], id="inv-remove"),
    pytest.param(
        "remove", ["tally-session", "remove", "x", "--dry-run", "--force"], id="ts-remove-force"
    ),
]


@pytest.mark.parametrize(("what", "args"), DRY_RUN)
def test_dry_run_prints_the_plan_and_changes_nothing(
    sample: Sample, what: str, args: list[str]
) -> None:
    claude = sample.home / ".claude.json"
    claude.write_text(
        json.dumps({"projects": {str(sample.main): {"hasTrustDialogAccepted": True}}})
    )
    claude.chmod(0o600)
    if what == "remove":
        ok(["inv", "session.add", "x", "-q"], sample.main)
        wait_calls_of(sample, "claude", "x")
    before = everything(sample)
    r = ok(args, sample.main)
    assert everything(sample) == before
    assert r.stderr == ""
    lines = r.stdout.splitlines()
    if what == "add":
        assert lines[0] == "Would create session x (dry run: nothing changed)"
        shown = [line.split()[1] for line in lines[1:]]
        assert (
            shown
            == ["ports", "worktree", "links", "links", "env", "env"]
            + ["claude-perms"] * 2
            + ["tmux"] * 3
        )
        assert "(new branch x from main)" in r.stdout
    else:
        assert lines[0] == "Would remove session x (dry run: nothing changed)"
        shown = [line.split()[1] for line in lines[1:]]
        # the two dev servers of the session, in case they outlive its tmux session
        assert shown == ["tmux", "processes", "processes", "worktree", "branch", "claude"] + [
            "registry"
        ]


# --- hooks --------------------------------------------------------------------------------


def spaced_sample(root: Path, **config: Any) -> Sample:
    """A main checkout under a folder with a space in its name, with `config`."""
    s = make_sample(root, parent="My Dev")
    s.write_config(**config)
    return s


def test_post_add_hook_runs_in_the_worktree_with_quoted_values_and_the_env(
    isolated_env: Path,
) -> None:
    out = isolated_env / "hook out"
    out.mkdir()
    q = {k: shlex.quote(str(out / k)) for k in ("env", "pwd", "args")}
    hook = (
        f"env > {q['env']} && pwd > {q['pwd']} && "
        f"printf '%s\\n' {{worktree}} {{main}} {{name}} {{session}} {{backend_port}} > {q['args']}"
    )
    s = spaced_sample(isolated_env, hooks={"post_add": [hook]})
    r = ok(["inv", "session.add", "x"], s.main)
    wt = s.main.parent / "tally-x"
    assert "✓ post-add" in r.stdout
    ports = s.registry()["x"]
    assert (out / "pwd").read_text() == f"{wt}\n"
    assert (out / "args").read_text().splitlines() == [
        str(wt),
        str(s.main),
        "x",
        "tally-x",
        str(ports["backend_port"]),
    ]
    env = dict(line.split("=", 1) for line in (out / "env").read_text().splitlines() if "=" in line)
    assert env["TALLY_SESSION"] == "x"
    assert env["TALLY_BACKEND_PORT"] == str(ports["backend_port"])
    assert env["TALLY_FRONTEND_PORT"] == str(ports["frontend_port"])
    [call] = s.wait_calls("python")  # the windows cope with the space too
    assert call["cwd"] == str(wt / "backend")


FAILING_HOOK = "echo first-line; echo boom >&2; exit 3"


def add_with_failing_hook(isolated_env: Path) -> tuple[Sample, subprocess.CompletedProcess[str]]:
    s = make_sample(isolated_env)
    s.write_config(hooks={"post_add": ["true", FAILING_HOOK]})
    claude = s.home / ".claude.json"
    claude.write_text(json.dumps({"projects": {str(s.main): {"hasTrustDialogAccepted": True}}}))
    return s, run_cli(["inv", "session.add", "x"], s.main)


def test_a_failing_post_add_hook_fails_add_in_one_line_and_undoes_it(isolated_env: Path) -> None:
    s, r = add_with_failing_hook(isolated_env)
    one_line_error(r, f"post-add step failed: hook post_add `{FAILING_HOOK}` failed with status 3")
    assert "first-line" in r.stderr and "boom" in r.stderr
    assert s.registry() == {}
    assert not (s.main.parent / "tally-x").exists()
    assert branches(s.main) == {"main"}
    assert "tally-x" not in tmux_sessions()
    projects = json.loads((s.home / ".claude.json").read_text())["projects"]
    assert list(projects) == [str(s.main)]


def test_a_failing_hooks_error_shows_the_hooks_output_only(isolated_env: Path) -> None:
    _, r = add_with_failing_hook(isolated_env)
    assert "can't access tty" not in r.stderr
    assert "first-line | boom (undone: " in r.stderr


def test_pre_remove_and_post_resume_hooks_run_in_the_worktree(isolated_env: Path) -> None:
    out = isolated_env / "hook out"
    out.mkdir()

    def hook(point: str) -> str:
        target = shlex.quote(str(out / point))
        return f'echo "$(pwd) $TALLY_SESSION $TALLY_FRONTEND_PORT {{name}}" >> {target}'

    s = spaced_sample(
        isolated_env,
        hooks={"pre_remove": [hook("pre_remove")], "post_resume": [hook("post_resume")]},
    )
    ok(["tally-session", "add", "x", "-q"], s.main)
    wt = s.main.parent / "tally-x"
    port = s.registry()["x"]["frontend_port"]
    assert not (out / "post_resume").exists()
    kill("tally-x")
    r = ok(["tally-session", "resume", "x"], s.main)
    assert "✓ post-resume" in r.stdout
    assert (out / "post_resume").read_text() == f"{wt} x {port} x\n"
    assert not (out / "pre_remove").exists()
    r = ok(["inv", "session.remove", "x"], s.main)
    assert "✓ pre-remove" in r.stdout
    assert (out / "pre_remove").read_text() == f"{wt} x {port} x\n"
    assert not wt.exists()


# --- open and attach ----------------------------------------------------------------------

OPEN = [
    pytest.param(["inv", "session.open", "x"], "frontend", id="inv-default"),
    pytest.param(["inv", "session.open", "--name", "x"], "frontend", id="inv-name"),
    pytest.param(["inv", "session.open", "x", "--port", "backend"], "backend", id="inv-backend"),
    pytest.param(["tally-session", "open", "x", "-p", "backend"], "backend", id="ts-backend"),
    pytest.param(["inv", "session.open", "x", "--port", "db"], "has no db port", id="bad-port"),
    pytest.param(["tally-session", "open", "nope"], "no session named 'nope'", id="unknown"),
]


@pytest.mark.parametrize(("args", "expect"), OPEN)
def test_open_prints_the_url(sample: Sample, args: list[str], expect: str) -> None:
    ok(["inv", "session.ports", "x", "-q"], sample.main)
    entry = sample.registry()["x"]
    r = run_cli(args, sample.main)
    if expect in ("frontend", "backend"):
        assert (r.returncode, r.stderr) == (0, "")
        assert r.stdout == f"http://localhost:{entry[f'{expect}_port']}/\n"
    else:
        one_line_error(r, expect)


def test_attach_without_a_terminal_says_what_to_run(sample: Sample) -> None:
    ok(["inv", "session.add", "x", "-q"], sample.main)
    cases = [
        (["inv", "session.attach", "x"], "not a terminal; run: tmux attach -t =tally-x"),
        (["tally-session", "attach", "x"], "not a terminal; run: tmux attach -t =tally-x"),
        (["inv", "session.attach", "nope"], "no session named 'nope'"),
    ]
    for args, says in cases:
        one_line_error(no_tty(args, sample.main), says)
    kill("tally-x")
    one_line_error(
        no_tty(["tally-session", "attach", "x"], sample.main),
        "tmux session tally-x is not running; start it with: tally-session resume x",
    )


# --- ports that stay put ------------------------------------------------------------------

# `npm run dev -- ARGS` as Vite takes them: with the port taken it silently moves up,
# unless --strictPort, when it exits non-zero. Records what it did and for whom.
VITE = """#!{py}
import json, os, signal, socket, sys
args = sys.argv[sys.argv.index("--") + 1:]
asked = port = int(args[args.index("--port") + 1])
strict = "--strictPort" in args
def record(bound):
    with open({log!r}, "a") as f:
        f.write(json.dumps({{"session": os.environ.get("TALLY_SESSION"), "asked": asked,
                            "bound": bound, "env": {{k: v for k, v in os.environ.items()
                                                    if k.startswith("TALLY_")}}}}) + "\\n")
s = socket.socket()
while True:
    try:
        s.bind(("127.0.0.1", port))
        break
    except OSError:
        if strict:
            record(None)
            sys.exit(f"error: port {{port}} is already in use")
        port += 1
s.listen()
record(port)
signal.pause()
"""


def vite_runs(log: Path, session: str) -> list[dict[str, Any]]:
    if not log.exists():
        return []
    runs = [json.loads(line) for line in log.read_text().splitlines() if line.endswith("}")]
    return [run for run in runs if run["session"] == session]


FRONTEND_CMD = [
    # the default frontend command, unchanged: (a's outcome, b's port)
    pytest.param(None, "held", 1, id="default-strictPort"),
    pytest.param("npm run dev -- --port {frontend_port}", 1, 2, id="without-strictPort-steals"),
]


@pytest.mark.parametrize(("cmd", "a_moves_to", "b_moves_to"), FRONTEND_CMD)
def test_a_taken_frontend_port_fails_instead_of_taking_the_next_sessions(
    sample: Sample, cmd: str | None, a_moves_to: int | str, b_moves_to: int
) -> None:
    log = sample.log / "vite.jsonl"
    npm = sample.root / "bin" / "npm"
    npm.write_text(VITE.format(py=sys.executable, log=str(log)))
    config: dict[str, Any] = {"add_steps": FAST}
    if cmd is not None:
        config["windows"] = [{"name": "frontend", "dir": "frontend", "cmd": cmd}]
    sample.write_config(**config)
    ok(["inv", "session.add", "a", "-q"], sample.main)
    ok(["inv", "session.add", "b", "-q"], sample.main)
    reg = sample.registry()
    port = reg["a"]["frontend_port"]
    assert reg["b"]["frontend_port"] == port + 1

    # another server (another checkout's, a stale one) holds a's frontend port
    with socket.socket() as held:
        held.bind(("127.0.0.1", port))
        held.listen()
        r = ok(["tally-session", "resume", "a", "--no-wait"], sample.main)
        assert f"frontend port {port} is held by pid {os.getpid()}" in r.stdout
        [a] = poll(lambda: vite_runs(log, "a"), timeout=15)
        assert a["asked"] == port
        assert a["env"]["TALLY_FRONTEND_PORT"] == str(port)
        assert a["env"]["TALLY_SESSION"] == "a"
        assert a["bound"] == (None if a_moves_to == "held" else port + a_moves_to)

        ok(["tally-session", "resume", "b", "--no-wait"], sample.main)
        [b] = poll(lambda: vite_runs(log, "b"), timeout=15)
        assert b["bound"] == port + b_moves_to


# --- shell completion ---------------------------------------------------------------------

NAMES = ["feature-auth", "fix-1"]
TASKS = ["add", "remove", "resume", "list", "relink"]
COMPLETE = [
    # (id, the command line so far, where, what must be offered)
    ("remove", "remove", "main", NAMES),
    ("remove-partial", "remove fe", "main", NAMES),
    ("remove-name", "remove --name", "main", NAMES),
    ("remove-n-partial", "remove -n fe", "main", NAMES),
    ("remove-after-a-flag", "remove --force", "main", NAMES),
    ("resume", "resume", "main", NAMES),
    ("resume-partial", "resume fe", "main", NAMES),
    ("alias", "relink", "main", NAMES),
    ("open-name", "open --name f", "main", NAMES),
    ("from-a-subfolder", "remove", "subfolder", NAMES),
    # everything else is invoke's own completion
    ("partial-flag", "remove --fo", "main", ["--force", "--keep-branch"]),
    ("new-name", "add", "main", TASKS),
    ("no-name-task", "list", "main", TASKS),
    ("after-the-name", "remove x --keep-branch", "main", TASKS),
    ("other-flag-value", "open x --port", "main", []),
    ("outside-a-repo", "remove", "outside", TASKS),
]


def test_tally_session_completes_session_names(sample: Sample, tmp_path: Path) -> None:
    for name in NAMES:
        ok(["inv", "session.ports", name, "-q"], sample.main)
    where = {"main": sample.main, "subfolder": sample.main / "backend", "outside": tmp_path}
    for case, line, cwd, offered in COMPLETE:
        r = run_cli(
            ["tally-session", "--complete", "--", "tally-session", *line.split()], where[cwd]
        )
        assert (r.returncode, r.stderr) == (0, ""), case
        words = r.stdout.split()
        if offered == NAMES:
            assert words == NAMES, case
        else:
            assert set(offered) <= set(words), (case, words)
            assert not set(NAMES) & set(words), (case, words)


def test_bash_completes_a_partial_session_name(sample: Sample) -> None:
    for name in NAMES:
        ok(["inv", "session.ports", name, "-q"], sample.main)
    script = (
        "source <(tally-session --print-completion-script bash)\n"
        "COMP_WORDS=(tally-session remove f); COMP_CWORD=2\n"
        '_complete_tally-session tally-session f remove && printf "%s\\n" "${COMPREPLY[@]}"\n'
        "COMP_WORDS=(tally-session remove fe); COMP_CWORD=2\n"
        '_complete_tally-session tally-session fe remove && printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    r = subprocess.run(
        ["bash", "-c", script], cwd=sample.main, capture_output=True, text=True, timeout=60
    )
    assert (r.returncode, r.stderr) == (0, "")
    assert r.stdout.splitlines() == ["feature-auth", "fix-1", "feature-auth"]


# --- dev servers that outlive their window ------------------------------------------------

# A dev server that leaves its window's process group (a watcher, a sidecar): it survives
# the tmux session and keeps the port.
SERVER = """
import os, signal, socket, sys
s = socket.socket()
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen()
with open(sys.argv[2], "w") as f:
    f.write(str(os.getpid()))
signal.pause()
"""


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_remove_stops_a_dev_server_left_in_the_worktree_and_nothing_else(
    sample: Sample, tmp_path: Path
) -> None:
    server = tmp_path / "server.py"
    server.write_text(SERVER)
    pidfile = tmp_path / "orphan.pid"
    py, script, pids = (shlex.quote(str(p)) for p in (sys.executable, server, pidfile))
    cmd = f"setsid {py} {script} {{frontend_port}} {pids} </dev/null >/dev/null 2>&1 &"
    sample.write_config(windows=[{"name": "frontend", "dir": "frontend", "cmd": cmd}])
    ok(["inv", "session.add", "x", "-q"], sample.main)
    entry = sample.registry()["x"]
    poll(lambda: pidfile.exists() and pidfile.read_text())
    orphan = int(pidfile.read_text())
    # someone else's server on the session's backend port, started outside the worktree
    foreign_pid = tmp_path / "foreign.pid"
    foreign = subprocess.Popen(
        [sys.executable, str(server), str(entry["backend_port"]), str(foreign_pid)], cwd=tmp_path
    )
    try:
        poll(lambda: foreign_pid.exists() and foreign_pid.read_text())
        kill("tally-x")
        assert alive(orphan)
        r = ok(["tally-session", "remove", "x"], sample.main)
        assert f"stopped pid {orphan} " in r.stdout
        assert f"pid {foreign.pid}" not in r.stdout
        assert not alive(orphan)
        assert foreign.poll() is None
        with socket.socket() as s:
            s.bind(("127.0.0.1", entry["frontend_port"]))  # the session's port is free again
    finally:
        foreign.kill()
        foreign.wait()


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["resume", "x"], ["resume", "--name", "x"]),
        (["resume", "-q", "x"], ["resume", "-q", "--name", "x"]),
        (["resume", "--host", "box1", "x"], ["resume", "--host", "box1", "--name", "x"]),
        (["resume", "--host=box1", "x"], ["resume", "--host=box1", "--name", "x"]),
        (["resume", "--name", "x"], ["resume", "--name", "x"]),
        (["resume", "-n", "x"], ["resume", "-n", "x"]),
        (["resume"], ["resume"]),
        (["doctor", "--fix", "x"], ["doctor", "--fix", "--name", "x"]),
        (["-d", "resume", "x"], ["-d", "resume", "--name", "x"]),
        (["add", "x"], ["add", "x"]),
        (["help"], ["--help"]),
        (["help", "add"], ["--help", "add"]),
        (["add", "help"], ["add", "help"]),
    ],
    ids=[
        "name",
        "after-a-flag",
        "after-a-value-flag",
        "after-flag-equals",
        "named-already",
        "short-named",
        "no-name",
        "doctor",
        "core-flag-first",
        "other-task",
        "help",
        "help-command",
        "a-session-named-help",
    ],
)
def test_the_old_optional_name_becomes_a_flag(argv: list[str], expected: list[str]) -> None:
    assert translate(argv) == expected


def test_add_and_remove_ask_git_and_tmux_few_questions(sample: Sample, tmp_path: Path) -> None:
    """add's checks: the windows' shell and whose the tmux name is (one tmux call), the
    branch (held for the undo), git's worktrees, the refs: one call each; remove's whole run: its
    checks (changes, ignored files, stashes, whose the tmux session is, whether the branch
    is merged) and the four commands a person would type."""
    path, log = counting(tmp_path / "counting", "git", "tmux")

    def calls(args: list[str]) -> list[str]:
        """Each call as its program and first two words that are not options."""
        log.write_text("")
        ok(args, sample.main, PATH=path)
        words = [line.split() for line in log.read_text().splitlines()]
        return [" ".join([w[0], *[x for x in w[1:] if not x.startswith("-")][:2]]) for w in words]

    add = calls(["inv", "session.add", "x", "-q", "--no-wait"])
    # the repository: found by a walk up, as git finds it (repo._discovered); the worktree
    # step's git calls begun at once (logged in any order), while tmux is asked
    assert sorted(add[: add.index("git worktree add")]) == [
        "git for-each-ref refs/heads/",  # the branch, its clashes, HEAD
        "git show-ref refs/heads/x",  # held for the undo: had the branch before
        "git worktree list",
        # the windows' shell (for the preflight and add), and whose the tmux name is
        "tmux show-options default-shell",
    ], add
    tmux_call = [line for line in log.read_text().splitlines() if "show-options" in line][0]
    assert " default-shell ; list-panes -s -t =tally-x: " in tmux_call, tmux_call
    remove = calls(["inv", "session.remove", "x", "-q"])
    # git's record of the worktree, then the changes, the ignored files and the stashes
    # asked at once (logged in any order); whose the tmux session is; the commands a
    # person types (kill-session, worktree remove, branch -D), git's record read again
    # under the lock and the refs for the branch's fate, read while git deletes
    assert remove[0] == "git worktree list", remove
    assert sorted(remove[1:4]) == ["git ls-files", "git stash list", "git status"], remove
    assert sorted(remove[4:]) == [
        "git branch x",
        "git for-each-ref refs/heads/",
        "git worktree list",
        "git worktree remove",
        "tmux kill-session =tally-x",
        "tmux list-panes =tally-x:",
    ], remove


def test_list_asks_tmux_then_git_each_while_it_works(sample: Sample, tmp_path: Path) -> None:
    """`list`: tmux's panes first (answered while the status module is imported and the
    registry and ports read), git's worktrees once tmux has answered (while the rows are
    made): each answers while list works, and the two never slow each other down."""
    path, log = counting(tmp_path / "counting", "git", "tmux")
    ok(["inv", "session.add", "x", "-q", "--no-wait"], sample.main)
    for args in (["inv", "session.list"], ["tally-session", "list"]):
        log.write_text("")
        ok(args, sample.main, PATH=path)
        words = [line.split()[:4] for line in log.read_text().splitlines()]
        assert [w[0] for w in words] == ["tmux", "git"], words
        assert "list-panes" in words[0] and words[1][1:3] == ["worktree", "list"], words


WAITING = """#!/bin/sh
wait_for() {{  # (10 s at most) until the calls named have started
  i=0
  for mark in "$@"; do
    until [ -e {marks}/$mark ]; do
      i=$((i + 1))
      if [ $i -gt 1000 ]; then echo "$* not started" >> {log}; break 2; fi
      sleep 0.01
    done
  done
}}
case " $* " in
{cases}
esac
exec {real} "$@"
"""

REMOVE_WAITS = """\
  *" status "*) wait_for ls-files stash ;;
  *" worktree remove "*) wait_for for-each-ref ;;
  *" ls-files "*) : > {marks}/ls-files ;;
  *" stash "*) : > {marks}/stash ;;
  *" for-each-ref "*) : > {marks}/for-each-ref ;;"""

ADD_WAITS = """\
  *" show-ref "*) : > {marks}/show-ref; wait_for worktree-list for-each-ref ;;
  *" worktree list "*) : > {marks}/worktree-list ;;
  *" for-each-ref "*) : > {marks}/for-each-ref ;;"""


def waiting(tmp_path: Path, cases: str) -> tuple[str, Path, Path]:
    """A git that waits as `cases` say (`wait_for` marks): (its PATH, the marks, the log
    of what did not start in time)."""
    wrappers, marks, log = tmp_path / "waiting", tmp_path / "marks", tmp_path / "calls.log"
    wrappers.mkdir()
    marks.mkdir()
    real = shutil.which("git")
    script = WAITING.format(cases=cases.format(marks=marks), marks=marks, log=log, real=real)
    (wrappers / "git").write_text(script)
    (wrappers / "git").chmod(0o755)
    return f"{wrappers}:{os.environ['PATH']}", marks, log


def test_removes_questions_that_do_not_wait_for_one_another_run_at_once(
    sample: Sample, tmp_path: Path
) -> None:
    """The changes (`git status`), the ignored files (`ls-files`) and the stashes do not
    depend on one another: the three run at the same time; the branch's refs are read
    while git deletes the worktree. (Here git's status waits for the other two to have
    started, and the deletion for the refs: asked one after another, each would wait
    alone and say so.)"""
    path, marks, log = waiting(tmp_path, REMOVE_WAITS)
    ok(["inv", "session.add", "x", "-q", "--no-wait"], sample.main)
    ok(["inv", "session.remove", "x", "-q"], sample.main, PATH=path)
    assert sorted(p.name for p in marks.iterdir()) == ["for-each-ref", "ls-files", "stash"]
    assert not log.exists() and not (sample.main.parent / "tally-x").exists()


def test_adds_git_questions_run_at_once(sample: Sample, tmp_path: Path) -> None:
    """The worktree step's questions (the branch, git's worktrees, the refs) are begun
    together, before add's checks: git's show-ref waits here for the other two to have
    started (asked one after another, it would wait alone and say so)."""
    path, marks, log = waiting(tmp_path, ADD_WAITS)
    ok(["inv", "session.add", "x", "-q", "--no-wait"], sample.main, PATH=path)
    assert sorted(p.name for p in marks.iterdir()) == ["for-each-ref", "show-ref", "worktree-list"]
    assert not log.exists() and (sample.main.parent / "tally-x" / ".git").exists()


@pytest.mark.parametrize("quiet", [False, True], ids=["add", "add-quiet"])
def test_add_starts_the_preflights_login_shell_only_when_its_warnings_would_show(
    sample: Sample, tmp_path: Path, quiet: bool
) -> None:
    """One login shell for the preflight; none with --quiet, which shows no warning."""
    shells, log = tmp_path / "shells", tmp_path / "shells.log"
    shells.mkdir()
    (shells / "sh").write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> {log}\nexec /bin/sh "$@"\n')
    (shells / "sh").chmod(0o755)
    sample.write_config(add_steps=FAST)
    args = ["inv", "session.add", "x", "--no-wait", *(["-q"] if quiet else [])]
    ok(args, sample.main, SHELL=str(shells / "sh"))
    said = log.read_text() if log.exists() else ""  # each call's "$*": its script's lines
    assert said.count("__tally_preflight__ done") == (0 if quiet else 1), said
