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
from pathlib import Path
from typing import Any

from conftest import free_base, poll, run_cli

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
