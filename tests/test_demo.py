"""`inv demo` end to end: the sample project, both dev servers answering, again, and clean-up.

Run from this repository's root (its tasks.py exposes `demo`), on high port bases given
through INVOKE_TALLY_PORTS_* so the demo never touches 8000/5000.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import free_base, poll, run_cli

from tally_tasks.demo import build_sample

REPO = Path(__file__).resolve().parent.parent
SESSION = "tally-sample-demo"


def demo_env(without_claude: bool) -> dict[str, str]:
    backend, frontend = free_base(), free_base()
    while abs(frontend - backend) < 100:
        frontend = free_base()
    env = {
        "INVOKE_TALLY_PORTS_BACKEND": str(backend),
        "INVOKE_TALLY_PORTS_FRONTEND": str(frontend),
    }
    if without_claude:
        # the conftest puts a `claude` stand-in first on PATH: leave its folder out
        stubs = str(Path(os.environ["HOME"]).parent / "bin")
        env["PATH"] = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if p != stubs)
    return env


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as r:
        body: bytes = r.read()
    return body.decode()


def urls(stdout: str) -> dict[str, str]:
    """`  backend   http://localhost:N/` lines of the summary."""
    return dict(re.findall(r"^  (backend|frontend)\s+(http://localhost:\d+/)$", stdout, re.M))


def tmux_sessions() -> set[str]:
    proc = subprocess.run(
        ["tmux", "list-sessions", "-F", "#{session_name}"], capture_output=True, text=True
    )
    return set(proc.stdout.split())


def pane(window: str) -> str:
    proc = subprocess.run(
        ["tmux", "capture-pane", "-p", "-t", f"={SESSION}:={window}"],
        capture_output=True,
        text=True,
    )
    return proc.stdout


def test_demo_serves_both_apps_runs_again_unchanged_and_cleans_up(tmp_path: Path) -> None:
    base = tmp_path / "demo"
    env = demo_env(without_claude=True)
    r = run_cli(["inv", "demo", "--path", str(base)], REPO, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    found = urls(r.stdout)
    assert found == {
        "backend": f"http://localhost:{env['INVOKE_TALLY_PORTS_BACKEND']}/",
        "frontend": f"http://localhost:{env['INVOKE_TALLY_PORTS_FRONTEND']}/",
    }
    assert f"tmux attach -t ={SESSION}" in r.stdout
    assert f"demo --clean --path {base}" in r.stdout

    backend: dict[str, Any] = json.loads(fetch(found["backend"]))
    worktree = base / SESSION
    assert backend["secret_key_set"] is True
    assert backend["todos"] == ["try tally-tasks", "ship it"]  # the main checkout's db
    assert backend["cwd"] == str(worktree / "backend")
    assert (worktree / "backend" / "db.sqlite3").is_symlink()
    assert f"Frontend on port {env['INVOKE_TALLY_PORTS_FRONTEND']}" in fetch(found["frontend"])
    poll(lambda: "Claude Code is not installed" in pane("claude"))

    again = run_cli(["inv", "demo", "--path", str(base)], REPO, env=env, timeout=120)
    assert again.returncode == 0, again.stderr
    assert urls(again.stdout) == found
    assert json.loads((base / "tally-sample" / ".tally-sessions").read_text()).keys() == {"demo"}

    gone = run_cli(["inv", "demo", "--clean", "--path", str(base)], REPO, env=env, timeout=120)
    assert gone.returncode == 0, gone.stderr
    assert not base.exists()
    assert SESSION not in tmux_sessions()


def test_demo_agent_window_runs_claude_when_installed(tmp_path: Path) -> None:
    base = tmp_path / "with claude"  # a space: every path the demo types is quoted
    env = demo_env(without_claude=False)
    r = run_cli(["inv", "demo", "--path", str(base), "--quiet"], REPO, env=env, timeout=120)
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    log = tmp_path / "log" / "claude.jsonl"  # what the conftest's stand-in recorded
    poll(lambda: log.exists() and log.read_text().endswith("\n"), timeout=20)
    [call] = [json.loads(line) for line in log.read_text().splitlines()]
    assert call["argv"] == ["-n", SESSION]
    assert call["cwd"] == str(base / SESSION)
    assert call["env"]["TALLY_SESSION"] == "demo"
    assert call["env"]["TALLY_BACKEND_PORT"] == env["INVOKE_TALLY_PORTS_BACKEND"]
    assert call["env"]["TALLY_FRONTEND_PORT"] == env["INVOKE_TALLY_PORTS_FRONTEND"]
    gone = run_cli(["inv", "demo", "--clean", "--path", str(base), "-q"], REPO, env=env)
    assert (gone.returncode, gone.stderr) == (0, "")
    assert not base.exists()
    assert SESSION not in tmux_sessions()


# --- --path: only ever the demo's own things --------------------------------------------


def tree(root: Path) -> dict[str, str]:
    """Every path under `root` (itself included) -> its content or link target."""
    found: dict[str, str] = {}
    if root.is_symlink() or root.is_file():
        return {".": os.readlink(root) if root.is_symlink() else root.read_text()}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            p = Path(folder, name)
            rel = str(p.relative_to(root))
            if p.is_symlink():
                found[rel] = "-> " + os.readlink(p)
            elif p.is_file():
                found[rel] = p.read_text(errors="replace")
            else:
                found[rel] = "/"
    return found


def one_line_error(r: subprocess.CompletedProcess[str], says: str) -> None:
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert len(r.stderr.splitlines()) == 1, r.stderr
    assert says in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def users_folder(tmp_path: Path) -> Path:
    """A folder of the user's, like HOME: files of theirs, no demo in it."""
    base = tmp_path / "mine"
    (base / "projects").mkdir(parents=True)
    (base / "notes.txt").write_text("keep me\n")
    (base / "projects" / "app.py").write_text("print('mine')\n")
    return base


def foreign_sample(tmp_path: Path) -> Path:
    """A checkout of the user's that happens to be called tally-sample."""
    base = users_folder(tmp_path)
    main = base / "tally-sample"
    main.mkdir()
    (main / "work.txt").write_text("not the demo's\n")
    subprocess.run(["git", "init", "-q"], cwd=main, check=True)
    (main / ".tally-sessions").write_text("{}\n")
    return base


def linked_sample(tmp_path: Path) -> Path:
    """tally-sample is a link to somewhere else: never followed, never removed."""
    base = users_folder(tmp_path)
    (base / "tally-sample").symlink_to(base / "projects")
    return base


def a_file(tmp_path: Path) -> Path:
    f = tmp_path / "a-file"
    f.write_text("not a folder\n")
    return f


REFUSED = [
    pytest.param(users_folder, "holds files the demo did not make; nothing removed", id="home"),
    pytest.param(foreign_sample, "was not made by `inv demo`", id="foreign-sample"),
    pytest.param(linked_sample, "was not made by `inv demo`", id="linked-sample"),
    pytest.param(a_file, "is a file, not a folder", id="file"),
]


@pytest.mark.parametrize(("make", "says"), REFUSED)
def test_clean_refuses_a_folder_that_is_not_the_demos_and_removes_nothing(
    tmp_path: Path, make: Callable[[Path], Path], says: str
) -> None:
    base = make(tmp_path)
    before = tree(base)
    r = run_cli(["inv", "demo", "--clean", "--path", str(base)], REPO, env=demo_env(True))
    one_line_error(r, says)
    assert tree(base) == before


BUILD_REFUSED = [
    pytest.param(foreign_sample, "was not made by `inv demo`", id="foreign-sample"),
    pytest.param(linked_sample, "was not made by `inv demo`", id="linked-sample"),
    pytest.param(a_file, "is a file, not a folder", id="file"),
    pytest.param(lambda t: a_file(t) / "sub", "cannot make the sample in", id="under-a-file"),
]


@pytest.mark.parametrize(("make", "says"), BUILD_REFUSED)
def test_build_refuses_a_path_it_cannot_use_in_one_line_and_writes_nothing(
    tmp_path: Path, make: Callable[[Path], Path], says: str
) -> None:
    base = make(tmp_path)
    before = tree(tmp_path)
    r = run_cli(["inv", "demo", "--path", str(base)], REPO, env=demo_env(True))
    one_line_error(r, says)
    assert tree(tmp_path) == before
    assert SESSION not in tmux_sessions()


def test_clean_of_a_folder_that_does_not_exist_says_so_and_succeeds(tmp_path: Path) -> None:
    base = tmp_path / "never-made"
    r = run_cli(["inv", "demo", "--clean", "--path", str(base)], REPO, env=demo_env(True))
    assert (r.returncode, r.stderr) == (0, "")
    assert f"nothing to clean: {base} does not exist" in r.stdout
    assert not base.exists()


@pytest.mark.parametrize("others", [False, True], ids=["sample-only", "with-users-files"])
def test_clean_removes_the_sample_and_the_folder_only_when_nothing_else_is_in_it(
    tmp_path: Path, others: bool
) -> None:
    base = users_folder(tmp_path) if others else tmp_path / "demo"
    before = tree(base) if others else {}
    build_sample(base / "tally-sample")
    r = run_cli(["inv", "demo", "--clean", "--path", str(base)], REPO, env=demo_env(True))
    assert (r.returncode, r.stderr) == (0, ""), r.stdout
    assert f"removed {base / 'tally-sample'}" in r.stdout
    if others:
        assert tree(base) == before
        assert f"kept {base}: it holds files the demo did not make" in r.stdout
    else:
        assert not base.exists()


def test_demo_in_a_users_folder_builds_beside_their_files_and_cleans_only_its_own(
    tmp_path: Path,
) -> None:
    base = users_folder(tmp_path)
    before = tree(base)
    env = demo_env(without_claude=True)
    r = run_cli(["inv", "demo", "--path", str(base), "-q"], REPO, env=env, timeout=120)
    assert (r.returncode, r.stderr) == (0, "")
    assert (base / "tally-sample" / ".git" / "tally-demo").is_file()
    assert (base / SESSION).is_dir()
    gone = run_cli(["inv", "demo", "--clean", "--path", str(base)], REPO, env=env, timeout=120)
    assert (gone.returncode, gone.stderr) == (0, "")
    assert tree(base) == before
    assert SESSION not in tmux_sessions()


def test_a_second_demo_elsewhere_runs_beside_the_first(tmp_path: Path) -> None:
    first, second = tmp_path / "one", tmp_path / "two"
    env = demo_env(without_claude=True)
    r = run_cli(["inv", "demo", "--path", str(first)], REPO, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "claude-perms" not in r.stdout  # no "no window runs Claude Code" beside `claude`
    r = run_cli(["inv", "demo", "--path", str(second), "-q"], REPO, env=env, timeout=120)
    assert (r.returncode, r.stderr) == (0, "")
    [own] = [p.name for p in second.iterdir() if p.name.endswith("-demo")]
    assert own.startswith("tally-sample-") and own != SESSION
    assert {SESSION, own} <= tmux_sessions()
    again = run_cli(["inv", "demo", "--path", str(second), "-q"], REPO, env=env, timeout=120)
    assert (again.returncode, again.stderr) == (0, "")  # the same name again
    for base in (second, first):
        gone = run_cli(["inv", "demo", "--clean", "--path", str(base)], REPO, env=env, timeout=120)
        assert (gone.returncode, gone.stderr) == (0, "")
        assert not base.exists()
    assert not {SESSION, own} & tmux_sessions()


# --- a sample another user planted, or one changed to write through a link -------------------

VICTIM = "the victim's own file\n"


def plant_link(main: Path, rel: str, victim: Path) -> None:
    path = main / rel
    if path.is_dir():
        os.rename(path, main / (rel + ".moved"))
    path.symlink_to(victim)


PLANTED = [
    pytest.param("invoke.yaml", id="invoke-yaml-link"),
    pytest.param(".tally-sessions", id="registry-link"),
    pytest.param(".git/tally-sessions.lock", id="lock-link"),
    pytest.param("backend", id="folder-link"),
]


@pytest.mark.parametrize("clean", [False, True], ids=["run", "clean"])
@pytest.mark.parametrize("rel", PLANTED)
def test_a_sample_with_a_link_in_it_is_refused_and_nothing_is_written_through_it(
    tmp_path: Path, rel: str, clean: bool
) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "file").write_text(VICTIM)
    target = victim if rel == "backend" else victim / "file"
    base = tmp_path / "shared"
    build_sample(base / "tally-sample")
    plant_link(base / "tally-sample", rel, target)
    before = tree(victim), (victim / "file").stat().st_mtime_ns
    args = ["inv", "demo", "--path", str(base), *(["--clean"] if clean else [])]
    r = run_cli(args, REPO, env=demo_env(True))
    one_line_error(r, f"{base / 'tally-sample' / rel} is a link")
    assert (tree(victim), (victim / "file").stat().st_mtime_ns) == before
    assert (base / "tally-sample").is_dir() and SESSION not in tmux_sessions()


def give_away(root: Path, uid: int = 65534) -> None:
    for top, dirs, files in os.walk(root):
        for name in [top, *(os.path.join(top, n) for n in dirs + files)]:
            os.lchown(name, uid, uid)


root_only = pytest.mark.skipif(os.geteuid() != 0, reason="only root gives files to another user")


@root_only
@pytest.mark.parametrize("clean", [False, True], ids=["run", "clean"])
def test_a_sample_of_another_user_is_refused(tmp_path: Path, clean: bool) -> None:
    base = tmp_path / "shared"
    build_sample(base / "tally-sample")
    give_away(base / "tally-sample")
    before = tree(base)
    args = ["inv", "demo", "--path", str(base), *(["--clean"] if clean else [])]
    r = run_cli(args, REPO, env=demo_env(True))
    one_line_error(r, "belongs to another user (uid 65534)")
    assert tree(base) == before and SESSION not in tmux_sessions()


def test_the_default_folder_is_the_users_own(monkeypatch: pytest.MonkeyPatch) -> None:
    from tally_tasks.demo import default_base

    home = Path(os.environ["HOME"])
    assert default_base() == home / ".cache" / "tally-demo"
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / "xdg"))
    assert default_base() == home / "xdg" / "tally-demo"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")  # not absolute: ignored, as XDG says
    assert default_base() == home / ".cache" / "tally-demo"


def linked_default(tmp_path: Path) -> Path:
    """~/.cache/tally-demo a link to a folder holding a planted sample."""
    planted = tmp_path / "planted"
    build_sample(planted / "tally-sample")
    (tmp_path / "victim").write_text(VICTIM)
    (planted / "tally-sample" / "invoke.yaml").symlink_to(tmp_path / "victim")
    cache = Path(os.environ["HOME"]) / ".cache"
    cache.mkdir()
    (cache / "tally-demo").symlink_to(planted)
    return planted


def foreign_default(tmp_path: Path) -> Path:
    folder = Path(os.environ["HOME"]) / ".cache" / "tally-demo"
    folder.mkdir(parents=True)
    os.chown(folder, 65534, 65534)
    return folder


DEFAULT_REFUSED = [
    pytest.param(linked_default, "is a link or a file", id="linked"),
    pytest.param(foreign_default, "belongs to another user", id="foreign", marks=root_only),
]


@pytest.mark.parametrize("clean", [False, True], ids=["run", "clean"])
@pytest.mark.parametrize(("make", "says"), DEFAULT_REFUSED)
def test_a_default_folder_that_is_not_the_users_own_is_refused(
    tmp_path: Path, make: Callable[[Path], Path], says: str, clean: bool
) -> None:
    make(tmp_path)
    before = tree(tmp_path)
    r = run_cli(["inv", "demo", *(["--clean"] if clean else [])], REPO, env=demo_env(True))
    one_line_error(r, says)
    assert tree(tmp_path) == before
    assert SESSION not in tmux_sessions()
