"""Benchmark `tally-session dashboard`: time to the first full screen, and CPU while idle.

    python bench/dashboard.py [--sessions 20] [--runs 3] [--idle 30]

Builds a sample repository in a temp folder with its own HOME and tmux socket, adds the
sessions with `tally-session add`, then starts the dashboard in an 80×24 window of that
tmux server, as a user would, and reads the screen with `capture-pane`:

- first full screen: from starting the window until the table shows its rows with their
  git state, the preview and the footer (median of `--runs`);
- idle CPU: the dashboard's process (with the git and tmux commands it ran) and the tmux
  server, over `--idle` seconds of doing nothing, as a share of one core.

Prints the numbers and writes them to bench/results/dashboard-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
TICK = os.sysconf("SC_CLK_TCK")
SERVE = f"{sys.executable} -m http.server --bind 127.0.0.1"
CONFIG = {
    "tally": {
        "ports": {"backend": 43000, "frontend": 44000},  # far from 8000/5000
        "activate": "",
        # two dev servers that really serve (40 in all: list's port checks see them up)
        # and an agent that stays, as a session has them
        "windows": [
            {"name": "backend", "dir": "backend", "cmd": f"{SERVE} {{backend_port}}"},
            {"name": "frontend", "dir": "frontend", "cmd": f"{SERVE} {{frontend_port}}"},
            {"name": "agent", "dir": "", "cmd": "cat"},
        ],
    }
}


def build(root: Path, env: dict[str, str]) -> Path:
    main = root / "Dev" / "tally"
    for d in ("backend", "frontend", "src"):
        (main / d).mkdir(parents=True)
    for i in range(300):
        (main / "src" / f"f{i:03d}.py").write_text(f"X = {i}\n")
    (main / ".gitignore").write_text(".tally-sessions\n")
    (main / "tasks.py").write_text("from tally_tasks import ns  # noqa: F401\n")
    (main / "invoke.yaml").write_text(json.dumps(CONFIG))
    for cmd in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "init"]):
        subprocess.run(["git", *cmd], cwd=main, env=env, check=True, capture_output=True)
    return main


def tmux(env: dict[str, str], *args: str) -> str:
    return subprocess.run(
        ["tmux", *args], env=env, check=True, capture_output=True, text=True
    ).stdout


def screen(env: dict[str, str]) -> str:
    return tmux(env, "capture-pane", "-p", "-t", "=dash:")


def full(text: str, sessions: int) -> bool:
    """The table (its rows with git state), the preview's title and the footer drawn."""
    lines = text.splitlines()
    rows = [ln for ln in lines if ln.startswith(" s") and "↑" in ln]
    return (
        bool(lines)
        and lines[0].split()[:2] == ["NAME", "BRANCH"]
        and len(rows) >= min(sessions, 9)
        and "· agent" in text
        and "q quit" in lines[-1]
    )


def dashboard_pid(env: dict[str, str]) -> int:
    """The dashboard's Python process: the pane's process, or its child under `sh -c`."""
    pid = int(tmux(env, "display-message", "-p", "-t", "=dash:", "#{pane_pid}").strip())
    for _ in range(3):
        if "python" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
            return pid
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        if not children:
            break
        pid = int(children[0])
    return pid


def cpu_seconds(pid: int, children: bool = True) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    used = int(fields[11]) + int(fields[12])  # utime, stime
    if children:
        used += int(fields[13]) + int(fields[14])  # cutime, cstime: git, tmux it ran
    return used / TICK


def start(env: dict[str, str], main: Path) -> float:
    """Start the dashboard in an 80×24 window; seconds until its first full screen."""
    t = time.perf_counter()
    tmux(
        env, "new-session", "-d", "-x", "80", "-y", "24", "-s", "dash", "-c", str(main),
        f"{BIN / 'tally-session'} dashboard",
    )  # fmt: skip
    deadline = t + 30
    while not full(screen(env), SESSIONS):
        if time.perf_counter() > deadline:
            raise SystemExit("the dashboard did not draw a full screen in 30 s:\n" + screen(env))
        time.sleep(0.01)
    return time.perf_counter() - t


SESSIONS = 20


def main() -> int:
    global SESSIONS
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--idle", type=float, default=30.0)
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args()
    SESSIONS = args.sessions
    root = Path(tempfile.mkdtemp(prefix="tally-dash-bench-"))
    home, tmpdir = root / "home", Path(tempfile.mkdtemp(prefix="tdb", dir="/tmp"))
    home.mkdir()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "INVOKE_", "TMUX"))},
        "HOME": str(home),
        "TMUX_TMPDIR": str(tmpdir),
        "SHELL": "/bin/sh",
        "TERM": "xterm-256color",
        "GIT_AUTHOR_NAME": "B",
        "GIT_AUTHOR_EMAIL": "b@example.invalid",
        "GIT_COMMITTER_NAME": "B",
        "GIT_COMMITTER_EMAIL": "b@example.invalid",
    }
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    try:
        main_ = build(root, env)
        for i in range(args.sessions):
            subprocess.run(
                [str(BIN / "tally-session"), "add", f"s{i:02d}", "-q"],
                cwd=main_, env=env, check=True, capture_output=True,
            )  # fmt: skip
        # sessions made an hour ago (as after a while: their AGE no longer changes each second)
        registry = main_ / ".tally-sessions"
        entries = json.loads(registry.read_text())
        an_hour_ago = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(time.time() - 3600))
        for entry in entries.values():
            entry["created"] = an_hour_ago
        registry.write_text(json.dumps(entries))
        firsts = []
        for _ in range(args.runs):
            firsts.append(start(env, main_))
            tmux(env, "send-keys", "-t", "=dash:", "q")
            while "dash" in tmux(env, "list-sessions", "-F", "#{session_name}").split():
                time.sleep(0.05)
        start(env, main_)
        pid = dashboard_pid(env)
        server = int(tmux(env, "display-message", "-p", "#{pid}").strip())
        time.sleep(3.0)  # past the first git pass
        ours, theirs, t = cpu_seconds(pid), cpu_seconds(server, False), time.perf_counter()
        time.sleep(args.idle)
        elapsed = time.perf_counter() - t
        own = (cpu_seconds(pid) - ours) / elapsed
        tmux_share = (cpu_seconds(server, False) - theirs) / elapsed
        text = screen(env)
        tmux(env, "send-keys", "-t", "=dash:", "q")
    finally:
        subprocess.run(["tmux", "kill-server"], env=env, capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(tmpdir, ignore_errors=True)
    result = {
        "sessions": args.sessions,
        "first_full_screen_s": statistics.median(firsts),
        "first_full_screen_runs_s": firsts,
        "idle_cpu_dashboard": own,
        "idle_cpu_tmux_server": tmux_share,
        "idle_seconds": args.idle,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "screen": text,
    }
    print(text)
    print(f"first full screen, {args.sessions} sessions: {result['first_full_screen_s']:.2f} s")
    print(f"idle CPU: dashboard {own:.1%} of one core, tmux server {tmux_share:.1%}")
    args.out.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    (args.out / f"dashboard-{stamp}.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
