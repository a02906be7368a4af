"""Benchmark tally-tasks against the bare commands doing the same work.

    python bench/run.py [--files 3000] [--runs 5] [--list-sessions 50] [--resume-sessions 20]
                        [--node-modules 30000] [--node-modules-only]

Builds a sample repository (default 3,000 files) in a temp folder with its own HOME and
tmux socket, then measures each operation against a plain shell script of the git, ln,
cp and tmux commands it stands for. Runs are interleaved (ours, bare, ours, bare, ...)
so machine drift hits both sides alike; the median of each side is reported with the
ratio, printed as a table and written to bench/results/<time>.json. The cost of the
default `frontend/node_modules` (mode `auto`: a tree of hard links) is measured apart, on
a node_modules of --node-modules files, against `cp -al` (and `ln -s`, the old default).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
BACKEND, FRONTEND = 41000, 42000  # far from 8000/5000

CONFIG = {
    "tally": {
        "ports": {"backend": BACKEND, "frontend": FRONTEND},
        "activate": "",
        "windows": [
            {"name": "backend", "dir": "backend", "cmd": "echo backend {backend_port}"},
            {"name": "frontend", "dir": "frontend", "cmd": "echo frontend {frontend_port}"},
            # names claude (so list reads its agent state) but only echoes, as the bare side
            {"name": "claude", "dir": "", "cmd": "echo claude {session} || claude"},
        ],
    }
}


def sh(cmd: str, cwd: Path, env: dict[str, str]) -> None:
    subprocess.run(["bash", "-c", cmd], cwd=cwd, env=env, check=True, capture_output=True)


def timed(fn: Callable[[], None]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def build(root: Path, files: int, env: dict[str, str]) -> Path:
    main = root / "Dev" / "tally"
    for d in ("backend", "frontend/node_modules/pkg", "src"):
        (main / d).mkdir(parents=True)
    per_dir = 100
    for i in range(files):
        folder = main / "src" / f"m{i // per_dir:03d}"
        folder.mkdir(exist_ok=True)
        (folder / f"f{i:05d}.py").write_text(f"X = {i}\n")
    (main / "backend" / "manage.py").write_text("# django\n")
    (main / "frontend" / "package.json").write_text("{}\n")
    (main / "backend" / ".env").write_text("SECRET_KEY=x\n")
    (main / "backend" / ".env").chmod(0o600)
    (main / "backend" / "db.sqlite3").write_bytes(b"")
    (main / "frontend" / ".env").write_text("A=1\n")
    (main / "frontend" / "node_modules" / "pkg" / "index.js").write_text("1\n")
    (main / ".gitignore").write_text(".env\ndb.sqlite3\nnode_modules/\n.tally-sessions\n")
    (main / "tasks.py").write_text("from tally_tasks import ns  # noqa: F401\n")
    (main / "invoke.yaml").write_text(json.dumps(CONFIG))
    sh("git init -q -b main && git add -A && git commit -q -m init", main, env)
    return main


def bare_add(main: Path, name: str, port: int) -> str:
    wt = main.parent / f"tally-{name}"
    s = f"tally-{name}"
    q = shlex.quote
    return "\n".join(
        [
            "set -e",
            f"git worktree add -q -b {q(name)} {q(str(wt))} HEAD",
            # the default mode `auto`: a tree of hard links
            f"cp -al {q(str(main / 'frontend/node_modules'))} "
            f"{q(str(wt / 'frontend/node_modules'))}",
            f"ln -s {q(str(main / 'backend/db.sqlite3'))} {q(str(wt / 'backend/db.sqlite3'))}",
            f"cp -p {q(str(main / 'backend/.env'))} {q(str(wt / 'backend/.env'))}",
            f"cp -p {q(str(main / 'frontend/.env'))} {q(str(wt / 'frontend/.env'))}",
            *bare_tmux(s, wt, port),
        ]
    )


def bare_tmux(s: str, wt: Path, port: int) -> list[str]:
    q = shlex.quote
    return [
        f"tmux new-session -d -s {q(s)} -n backend -c {q(str(wt / 'backend'))}",
        f"tmux new-window -d -t {q('=' + s + ':')} -n frontend -c {q(str(wt / 'frontend'))}",
        f"tmux new-window -d -t {q('=' + s + ':')} -n claude -c {q(str(wt))}",
        f"tmux send-keys -t {q('=' + s + ':=backend')} {q(f'echo backend {port}')} Enter",
        f"tmux send-keys -t {q('=' + s + ':=frontend')} {q(f'echo frontend {port}')} Enter",
        f"tmux send-keys -t {q('=' + s + ':=claude')} {q(f'echo claude {s}')} Enter",
    ]


def bare_remove(main: Path, name: str) -> str:
    wt = main.parent / f"tally-{name}"
    q = shlex.quote
    return "\n".join(
        [
            f"tmux kill-session -t {q('=tally-' + name)}",
            f"rm {q(str(wt / 'backend/db.sqlite3'))}",
            f"git worktree remove --force {q(str(wt))}",
            f"git branch -q -D {q(name)}",
        ]
    )


def build_node_modules(folder: Path, files: int) -> None:
    """An npm-shaped tree: packages with nested folders, a few files each, and .bin links."""
    n = 0
    pkg = 0
    while n < files:
        for sub in ("", "dist", "lib/esm"):
            where = folder / f"pkg{pkg:04d}" / sub
            where.mkdir(parents=True, exist_ok=True)
            for i in range(min(8, files - n)):
                (where / f"f{i}.js").write_text(f"module.exports = {n}\n")
                n += 1
        pkg += 1
    (folder / ".bin").mkdir()
    for i in range(min(pkg, 50)):
        (folder / ".bin" / f"tool{i}").symlink_to(f"../pkg{i:04d}/f0.js")


def bench_node_modules(root: Path, files: int, runs: int) -> dict[str, dict[str, Any]]:
    """What the default link of a big node_modules costs `add`: auto (hard links) against
    `cp -al`, and a symlink (the old default), each into a fresh folder."""
    from tally_tasks import links
    from tally_tasks.config import Link

    main = root / "nm-main"
    build_node_modules(main / "node_modules", files)
    taken: list[str] = []

    def fresh(i: int, side: str) -> Path:
        wt = root / f"nm-{side}-{i}"
        wt.mkdir()
        return wt

    def auto(i: int) -> float:
        wt = fresh(i, "auto")
        t = timed(
            lambda: taken.append(links.apply(main, wt, [Link("node_modules", "auto")])[0].detail)
        )
        shutil.rmtree(wt)
        return t

    def cp_al(i: int) -> float:
        wt = fresh(i, "cp")
        t = timed(
            lambda: subprocess.run(["cp", "-al", str(main / "node_modules"), str(wt)], check=True)
        )
        shutil.rmtree(wt)
        return t

    def symlink(i: int) -> float:
        wt = fresh(i, "ln")
        t = timed(lambda: links.apply(main, wt, [Link("node_modules", "symlink")]) and None)
        shutil.rmtree(wt)
        return t

    results: dict[str, dict[str, Any]] = {
        f"node_modules {files} auto": median_pair(runs, auto, cp_al),
        f"node_modules {files} symlink": median_pair(runs, symlink, cp_al),
    }
    results[f"node_modules {files} auto"]["made"] = taken[0]
    return results


def kill_server(env: dict[str, str]) -> None:
    subprocess.run(["tmux", "kill-server"], env=env, capture_output=True)
    sock = Path(env["TMUX_TMPDIR"]) / f"tmux-{os.getuid()}" / "default"
    deadline = time.monotonic() + 10
    while sock.exists() and time.monotonic() < deadline:
        ok = subprocess.run(["tmux", "ls"], env=env, capture_output=True).returncode == 0
        if not ok:
            break
        time.sleep(0.01)


def median_pair(
    runs: int, ours: Callable[[int], float], bare: Callable[[int], float]
) -> dict[str, float]:
    a, b = [], []
    for i in range(runs):
        if i % 2 == 0:
            a.append(ours(i))
            b.append(bare(i))
        else:
            b.append(bare(i))
            a.append(ours(i))
    return {"ours": statistics.median(a), "bare": statistics.median(b)}


def hook_time(root: Path, main_: Path, env: dict[str, str], runs: int) -> dict[str, float]:
    """The state hook as Claude Code runs it (``/bin/sh -c``, a PreToolUse payload on
    stdin), against ``/bin/sh -c`` running a bare ``python -I -S -c pass``."""
    sys.path.insert(0, str(HERE.parent))
    from tally_tasks import agent

    state = root / "hook-git" / "tally-agents" / "x.json"
    cmd = agent.hook_command(state, main_, main_, "x")
    payload = json.dumps(
        {
            "session_id": "0b5c",
            "transcript_path": str(root / "t.jsonl"),
            "cwd": str(main_),
            "permission_mode": "default",
            "hook_event_name": "PreToolUse",
            "tool_name": "Bash",
            "tool_input": {"command": "ls"},
        }
    )
    bare = f"{shlex.quote(sys.executable)} -I -S -c pass"

    def once(line: str) -> float:
        return timed(
            lambda: subprocess.run(
                ["/bin/sh", "-c", line], input=payload, text=True, env=env, check=True
            )
        )

    once(cmd)  # the first run writes the compiled copy, as the first hook of a session does
    return median_pair(runs, lambda i: once(cmd), lambda i: once(bare))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=3000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--list-sessions", type=int, default=50)
    ap.add_argument("--resume-sessions", type=int, default=20)
    ap.add_argument("--node-modules", type=int, default=30000)
    ap.add_argument(
        "--node-modules-only", action="store_true", help="measure only the node_modules tree"
    )
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args()
    if shutil.which("tmux") is None:
        sys.exit("bench: tmux is not installed")

    root = Path(tempfile.mkdtemp(prefix="tally-bench-"))
    tmux_dir = Path(tempfile.mkdtemp(prefix="tb", dir="/tmp"))
    (root / "home").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INVOKE_", "GIT_", "TMUX"))}
    env.update(
        HOME=str(root / "home"),
        TMUX_TMPDIR=str(tmux_dir),
        SHELL="/bin/sh",
        NO_COLOR="1",
        GIT_CONFIG_NOSYSTEM="1",
        GIT_AUTHOR_NAME="b",
        GIT_AUTHOR_EMAIL="b@example.invalid",
        GIT_COMMITTER_NAME="b",
        GIT_COMMITTER_EMAIL="b@example.invalid",
        PATH=f"{BIN}:{os.environ.get('PATH', '')}",
    )
    results: dict[str, dict[str, float]] = {}
    try:
        fabric_loaded = False
        if not args.node_modules_only:
            main_ = build(root, args.files, env)
            inv = str(BIN / "inv")
            tally = str(BIN / "tally-session")

            def run(argv: list[str]) -> None:
                subprocess.run(argv, cwd=main_, env=env, check=True, capture_output=True)

            # start the tmux server once so neither side pays for it
            sh("tmux new-session -d -s keepalive", main_, env)

            # add / remove
            def ours_add(i: int) -> float:
                return timed(lambda: run([inv, "session.add", f"a{i}", "-q", "--no-wait"]))

            def bare_add_(i: int) -> float:
                return timed(lambda: sh(bare_add(main_, f"b{i}", BACKEND + 500 + i), main_, env))

            results["add"] = median_pair(args.runs, ours_add, bare_add_)

            def ours_rm(i: int) -> float:
                return timed(lambda: run([inv, "session.remove", f"a{i}", "-q"]))

            def bare_rm(i: int) -> float:
                return timed(lambda: sh(bare_remove(main_, f"b{i}"), main_, env))

            results["remove"] = median_pair(args.runs, ours_rm, bare_rm)

            # resume of N sessions (tmux server killed before each run)
            names = [f"r{i}" for i in range(args.resume_sessions)]
            for n in names:
                run([inv, "session.add", n, "-q", "--no-wait"])
            reg = json.loads((main_ / ".tally-sessions").read_text())
            script = "\n".join(
                line
                for n in names
                for line in bare_tmux(
                    f"tally-{n}", Path(reg[n]["worktree"]), reg[n]["backend_port"]
                )
            )

            def ours_resume(i: int) -> float:
                kill_server(env)
                return timed(lambda: run([inv, "session.resume", "-q", "--no-wait"]))

            def bare_resume(i: int) -> float:
                kill_server(env)
                return timed(lambda: sh(script, main_, env))

            results[f"resume {len(names)}"] = median_pair(args.runs, ours_resume, bare_resume)
            kill_server(env)
            run([inv, "session.resume", "-q", "--no-wait"])

            # list with M sessions
            for i in range(len(names), args.list_sessions):
                run([inv, "session.add", f"l{i}", "-q", "--no-wait"])
            # every agent has reported a state (list reads them all)
            agents = main_ / ".git" / "tally-agents"
            agents.mkdir(exist_ok=True)
            for n in json.loads((main_ / ".tally-sessions").read_text()):
                state = {"state": "working", "since": time.time(), "at": time.time(), "pid": 1}
                (agents / f"{n}.json").write_text(json.dumps(state))
            bare_list = (
                "cat .tally-sessions >/dev/null; tmux ls >/dev/null; git worktree list >/dev/null"
            )
            m = args.list_sessions

            def bare_ls(i: int) -> float:
                return timed(lambda: sh(bare_list, main_, env))

            for label, argv in ((f"list {m}", []), (f"list {m} --git", ["--git"])):
                results[label] = median_pair(
                    args.runs,
                    lambda i, a=argv: timed(lambda: run([inv, "session.list", *a])),
                    bare_ls,
                )

            # start-up
            py = [sys.executable, "-c", "pass"]
            for label, argv in (
                ("inv --list", [inv, "--list"]),
                ("tally-session --version", [tally, "--version"]),
            ):
                results[label] = median_pair(
                    args.runs,
                    lambda i, a=argv: timed(lambda: run(a)),
                    lambda i: timed(lambda: run(py)),
                )
            results["agent hook"] = hook_time(root, main_, env, max(args.runs, 21))
            imports = subprocess.run(
                [sys.executable, "-X", "importtime", "-c", "import tally_tasks.cli"],
                capture_output=True,
                text=True,
                env=env,
            ).stderr
            fabric_loaded = any(w in imports for w in ("paramiko", "fabric"))
        if args.node_modules:
            results.update(bench_node_modules(root, args.node_modules, args.runs))
    finally:
        subprocess.run(["tmux", "kill-server"], env=env, capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(tmux_dir, ignore_errors=True)

    print(f"{'operation':<28} {'tally-tasks':>12} {'bare':>10} {'ratio':>7}")
    for op, r in results.items():
        r["ratio"] = r["ours"] / r["bare"] if r["bare"] else float("inf")
        print(
            f"{op:<28} {r['ours'] * 1000:>10.0f}ms {r['bare'] * 1000:>8.0f}ms {r['ratio']:>6.2f}x"
            + (f"  ({r['made']})" if "made" in r else "")
        )
    print(f"fabric/paramiko imported by local commands: {'yes' if fabric_loaded else 'no'}")
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    out = {
        "when": stamp,
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "system": platform.platform(),
        },
        "params": {"files": args.files, "runs": args.runs, "node_modules": args.node_modules},
        "results": results,
        "fabric_imported": fabric_loaded,
    }
    path = args.out / f"{stamp}.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"written {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
