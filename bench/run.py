"""Benchmark tally-tasks against the bare commands doing the same work, and against its floor.

    python bench/run.py [--files 3000] [--runs 11] [--list-sessions 50] [--resume-sessions 20]
                        [--node-modules 30000] [--node-modules-only] [--shell /bin/sh]
                        [--before OTHER_VENV/bin]

Builds a sample repository (default 3,000 files) in a temp folder with its own HOME and
tmux socket, then measures each operation against a plain shell script of the git, ln,
cp and tmux commands it stands for, and against `inv --version` (the floor of any `inv`
command), in one run. Runs are interleaved (ours, bare, floor, then the next round in
another order) so machine drift hits every side alike; min and median of each side are
reported, with the overhead over the bare commands and the ratio to the floor, then the
start-up breakdown (interpreter, invoke's import, ours, the checks' subprocesses, exit)
and the subprocesses each command makes, as a table and in
bench/results/<time>.json. Bytecode is cached, as in a user's shell
(PYTHONDONTWRITEBYTECODE is unset, and every command runs once before it is timed).
The cost of the default `frontend/node_modules` (mode `auto`: a tree of hard links) is
measured apart, on a node_modules of --node-modules files, against `cp -al` (and `ln -s`,
the old default).
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


def _package(bin_: Path) -> Path:
    """The folder of the tally_tasks that the Python in `bin_` imports."""
    out = subprocess.run(
        [str(bin_ / "python"), "-c", "import tally_tasks; print(tally_tasks.__file__)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return Path(out.strip()).parent


def sh(cmd: str, cwd: Path, env: dict[str, str]) -> None:
    subprocess.run(["bash", "-c", cmd], cwd=cwd, env=env, check=True, capture_output=True)


def timed(fn: Callable[[], object]) -> float:
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


def rounds(runs: int, sides: dict[str, Callable[[int], float]]) -> dict[str, list[float]]:
    """Each side once per round, the order turning round by round, so machine drift (and
    the load of other processes) hits every side alike."""
    names = list(sides)
    times: dict[str, list[float]] = {k: [] for k in names}
    for i in range(runs):
        k = i % len(names)
        for name in names[k:] + names[:k]:
            times[name].append(sides[name](i))
    return times


def median_pair(
    runs: int, ours: Callable[[int], float], bare: Callable[[int], float]
) -> dict[str, float]:
    t = rounds(runs, {"ours": ours, "bare": bare})
    return {
        "ours": statistics.median(t["ours"]),
        "bare": statistics.median(t["bare"]),
        "ours_min": min(t["ours"]),
        "bare_min": min(t["bare"]),
    }


def row(t: dict[str, list[float]]) -> dict[str, float]:
    """min and median of each side; ours over the bare commands, and over the floor; and
    the median of each round's own difference over the bare commands (`paired`: the two
    ran one after the other, so a slow stretch of the disk is in both)."""
    out: dict[str, float] = {}
    for side, xs in t.items():
        out[side], out[side + "_min"] = statistics.median(xs), min(xs)
    if "bare" in t:
        out["over_bare_paired"] = statistics.median(
            o - b for o, b in zip(t["ours"], t["bare"], strict=True)
        )
    for stat in ("", "_min"):
        if "bare" in t:
            out["over_bare" + stat] = out["ours" + stat] - out["bare" + stat]
        if "floor" in t:
            out["x_floor" + stat] = out["ours" + stat] / out["floor" + stat]
    return out


# Started through PYTHONPATH by the probe runs only (never in a timed run): every
# subprocess (git, tmux, the preflight's login shell), from its start until it was waited
# for, written at exit.
PROBE = """
import os
if os.environ.get("TALLY_BENCH_PROBE"):
    import atexit, json, subprocess, time
    _calls = []
    class _Timed(subprocess.Popen):
        def __init__(self, args, *rest, **kwargs):
            self._t0, self._argv = time.perf_counter(), args
            super().__init__(args, *rest, **kwargs)
        def wait(self, timeout=None):
            done = self.returncode is not None
            code = super().wait(timeout)
            if not done:
                argv = [self._argv] if isinstance(self._argv, str) else list(map(str, self._argv))
                _calls.append([argv[:6], time.perf_counter() - self._t0])
            return code
    subprocess.Popen = _Timed
    def _write():
        with open(os.environ["TALLY_BENCH_PROBE"], "w") as f:
            json.dump(_calls, f)
    atexit.register(_write)
"""


def probe(argv: list[str], cwd: Path, env: dict[str, str], root: Path) -> list[Any]:
    """[[argv head, seconds], ...] of the subprocesses one run of `argv` makes."""
    folder = root / "probe"
    folder.mkdir(exist_ok=True)
    (folder / "sitecustomize.py").write_text(PROBE)
    log = folder / "calls.json"
    log.unlink(missing_ok=True)
    extra = {"PYTHONPATH": str(folder), "TALLY_BENCH_PROBE": str(log)}
    subprocess.run(argv, cwd=cwd, env={**env, **extra}, check=True, capture_output=True)
    return list(json.loads(log.read_text()))


def import_times(argv: list[str], cwd: Path, env: dict[str, str], runs: int) -> dict[str, float]:
    """Seconds (min of `runs`, ``-X importtime``) importing invoke, and importing ours
    (tally_tasks and what only it imports), in a run of `argv`."""
    best: dict[str, float] = {}
    for _ in range(runs):
        err = subprocess.run(
            argv,
            cwd=cwd,
            env={**env, "PYTHONPROFILEIMPORTTIME": "1"},
            capture_output=True,
            text=True,
        ).stderr
        for key, value in _split_imports(err).items():
            best[key] = min(best.get(key, value), value)
    return best


def _split_imports(report: str) -> dict[str, float]:
    # importtime prints a module after what it imported, nested by indentation
    nodes: list[tuple[int, str, float, list[Any]]] = []
    for line in report.splitlines():
        if not line.startswith("import time:") or "|" not in line or "[us]" in line:
            continue
        _, cum, name_col = line.split("|", 2)
        depth = (len(name_col) - len(name_col.lstrip())) // 2
        children: list[Any] = []
        while nodes and nodes[-1][0] > depth:
            children.insert(0, nodes.pop())
        nodes.append((depth, name_col.strip(), int(cum) / 1e6, children))

    def total(ns: list[Any], pick: Callable[[str], bool], stop: Callable[[str], bool]) -> float:
        found = 0.0
        for _, name, cum, children in ns:
            if pick(name):
                found += cum - total(children, stop, lambda n: False)
            elif not stop(name):
                found += total(children, pick, stop)
        return found

    def is_invoke(n: str) -> bool:
        return n == "invoke" or n.startswith("invoke.")

    def is_ours(n: str) -> bool:
        return n.startswith("tally_tasks")

    return {
        "invoke": total(nodes, lambda n: n == "invoke", lambda n: False),
        "ours": total(nodes, is_ours, is_invoke),
        "site": total(nodes, lambda n: n == "site", lambda n: False),
    }


def _said(argv: list[str]) -> str:
    """`git worktree remove`, `tmux kill-session`: the program and what it was asked."""
    prog = os.path.basename(argv[0])
    if prog not in ("git", "tmux"):  # the preflight's login shell, say
        return f"{prog} {' '.join(argv[1:2])} (its script)"
    words = [w for w in argv[1:] if not w.startswith("-")]
    return " ".join([prog, *words[: 1 if prog == "tmux" else 2]])


def where(
    timing: list[list[str]], probing: list[list[str]], cwd: Path, env: dict[str, str], root: Path
) -> tuple[dict[str, float], list[Any]]:
    """The least import times over the `timing` runs, and the subprocesses of the `probing`
    run that spent least in them."""
    best: dict[str, float] = {}
    for argv in timing:
        for key, value in import_times(argv, cwd, env, 1).items():
            best[key] = min(best.get(key, value), value)
    runs = [probe(argv, cwd, env, root) for argv in probing]
    return best, min(runs, key=lambda sub: sum(t for _, t in sub))


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


def commands(
    args: argparse.Namespace,
    root: Path,
    env: dict[str, str],
    results: dict[str, dict[str, Any]],
    floors: dict[str, dict[str, float]],
    breakdown: dict[str, dict[str, Any]],
) -> bool:
    """Every command against the bare commands and the floor; True when a local command
    imported fabric or paramiko."""
    imports: dict[str, dict[str, float]] = {}
    calls: dict[str, list[Any]] = {}
    main_ = build(root, args.files, env)
    inv = str(BIN / "inv")
    tally = str(BIN / "tally-session")
    py = str(BIN / "python")

    def run(argv: list[str]) -> None:
        subprocess.run(argv, cwd=main_, env=env, check=True, capture_output=True)

    def timed_run(argv: list[str]) -> Callable[[int], float]:
        return lambda i: timed(lambda: run(argv))

    floor = timed_run([inv, "--version"])
    # --before: another installation's programs (an older checkout's venv) as one more
    # side of the same rounds, on the same repository (sessions of their own names)
    old = Path(args.before) if args.before else None
    before: dict[str, Callable[[int], float]] = {}

    # start the tmux server once so neither side pays for it; every command once, so
    # its bytecode is cached
    sh("tmux new-session -d -s keepalive", main_, env)
    for argv in ([inv, "--version"], [tally, "--version"], [inv, "session.list"]):
        run(argv)
    run([inv, "session.add", "warm", "-q", "--no-wait"])
    run([inv, "session.remove", "warm", "-q"])

    # floors: the interpreter, invoke, the programs' start-up; what teardown costs
    modules = "import tally_tasks.cli, tally_tasks.operations.add, tally_tasks.operations.remove"
    floors.update(
        (k, row({"ours": v}))
        for k, v in rounds(
            args.runs,
            {
                "python -c pass": timed_run([py, "-c", "pass"]),
                "inv --version": floor,
                "tally-session --version": timed_run([tally, "--version"]),
                "inv --list": timed_run([inv, "--list"]),
                "imports, then exit": timed_run([py, "-c", modules]),
                "imports, then os._exit": timed_run(
                    [py, "-c", modules + "; import os; os._exit(0)"]
                ),
            },
        ).items()
    )

    # add / remove
    def ours_add(i: int) -> float:
        return timed(lambda: run([inv, "session.add", f"a{i}", "-q", "--no-wait"]))

    def bare_add_(i: int) -> float:
        return timed(lambda: sh(bare_add(main_, f"b{i}", BACKEND + 500 + i), main_, env))

    if old is not None:
        before = {
            "before": lambda i: timed(
                lambda: run([str(old / "inv"), "session.add", f"c{i}", "-q", "--no-wait"])
            )
        }
    results["add"] = row(
        rounds(args.runs, {"ours": ours_add, "bare": bare_add_, "floor": floor, **before})
    )

    def ours_rm(i: int) -> float:
        return timed(lambda: run([inv, "session.remove", f"a{i}", "-q"]))

    def bare_rm(i: int) -> float:
        return timed(lambda: sh(bare_remove(main_, f"b{i}"), main_, env))

    if old is not None:
        before = {
            "before": lambda i: timed(
                lambda: run([str(old / "inv"), "session.remove", f"c{i}", "-q"])
            )
        }
    results["remove"] = row(
        rounds(args.runs, {"ours": ours_rm, "bare": bare_rm, "floor": floor, **before})
    )

    # where the time of each goes: imports (importtime), subprocesses (probe); the
    # least of a few runs of each
    spread = max(3, args.runs // 3)
    for op, flags in (("add", ["--no-wait"]), ("remove", [])):
        imports[op], calls[op] = where(
            [[inv, f"session.{op}", f"p{i}", "-q", *flags] for i in range(spread)],
            [[inv, f"session.{op}", f"q{i}", "-q", *flags] for i in range(spread)],
            main_,
            env,
            root,
        )

    # resume of N sessions (tmux server killed before each run)
    names = [f"r{i}" for i in range(args.resume_sessions)]
    for n in names:
        run([inv, "session.add", n, "-q", "--no-wait"])
    reg = json.loads((main_ / ".tally-sessions").read_text())
    script = "\n".join(
        line
        for n in names
        for line in bare_tmux(f"tally-{n}", Path(reg[n]["worktree"]), reg[n]["backend_port"])
    )

    def ours_resume(i: int) -> float:
        kill_server(env)
        return timed(lambda: run([inv, "session.resume", "-q", "--no-wait"]))

    def bare_resume(i: int) -> float:
        kill_server(env)
        return timed(lambda: sh(script, main_, env))

    if old is not None:
        resume_before = [str(old / "inv"), "session.resume", "-q", "--no-wait"]

        def before_resume(i: int) -> float:
            kill_server(env)
            return timed(lambda: run(resume_before))

        before = {"before": before_resume}
    results[f"resume {len(names)}"] = row(
        rounds(args.runs, {"ours": ours_resume, "bare": bare_resume, **before})
    )
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
    bare_list = "cat .tally-sessions >/dev/null; tmux ls >/dev/null; git worktree list >/dev/null"
    m = args.list_sessions

    def bare_ls(i: int) -> float:
        return timed(lambda: sh(bare_list, main_, env))

    listing = rounds(
        args.runs,
        {
            "inv": timed_run([inv, "session.list"]),
            "tally-session": timed_run([tally, "list"]),
            **(
                {
                    "inv before": timed_run([str(old / "inv"), "session.list"]),
                    "tally-session before": timed_run([str(old / "tally-session"), "list"]),
                    "floor before": timed_run([str(old / "inv"), "--version"]),
                }
                if old is not None
                else {}
            ),
            "bare": bare_ls,
            "floor": floor,
        },
    )
    for label, side in ((f"inv list {m}", "inv"), (f"tally-session list {m}", "tally-session")):
        results[label] = row(
            {"ours": listing[side], "bare": listing["bare"], "floor": listing["floor"]}
            | ({"before": listing[side + " before"]} if old is not None else {})
        )
    if old is not None:
        results["inv --version"] = row(
            {"ours": listing["floor"], "before": listing["floor before"]}
        )
    results[f"list {m} --git"] = row(
        rounds(
            args.runs,
            {
                "ours": timed_run([inv, "session.list", "--git"]),
                "bare": bare_ls,
                "floor": floor,
            },
        )
    )
    for label, argv in (
        (f"inv list {m}", [inv, "session.list"]),
        (f"tally-session list {m}", [tally, "list"]),
        ("inv --version", [inv, "--version"]),
    ):
        imports[label], calls[label] = where([argv] * spread, [argv] * spread, main_, env, root)
    results["agent hook"] = hook_time(root, main_, env, max(args.runs, 21))
    everything = subprocess.run(
        [py, "-X", "importtime", "-c", "import tally_tasks.cli"],
        capture_output=True,
        text=True,
        env=env,
    ).stderr
    fabric_loaded = any(w in everything for w in ("paramiko", "fabric"))
    interpreter = floors["python -c pass"]["ours_min"]
    for label, got in imports.items():
        total = (results.get(label) or floors[label])["ours_min"]
        sub = calls[label]
        spent = sum(t for _, t in sub)
        breakdown[label] = {
            "total": total,
            "interpreter": interpreter,
            "invoke": got["invoke"],
            "ours": got["ours"],
            "subprocesses": spent,
            "calls": len(sub),
            "rest": total - interpreter - got["invoke"] - got["ours"] - spent,
            "argv": [" ".join(a) for a, _ in sub],
            "calls_ms": [(_said(a), t) for a, t in sub],
        }
    return fabric_loaded


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=3000)
    ap.add_argument("--runs", type=int, default=11)
    ap.add_argument("--list-sessions", type=int, default=50)
    ap.add_argument("--resume-sessions", type=int, default=20)
    ap.add_argument("--node-modules", type=int, default=30000)
    ap.add_argument(
        "--node-modules-only", action="store_true", help="measure only the node_modules tree"
    )
    ap.add_argument(
        "--before", default="", help="bin folder of another install (a venv) to time alongside"
    )
    ap.add_argument(
        "--shell",
        default="/bin/sh",
        help="the windows' shell ($SHELL): a line editor's (bash, zsh, fish) start is waited for",
    )
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args()
    if shutil.which("tmux") is None:
        sys.exit("bench: tmux is not installed")

    root = Path(tempfile.mkdtemp(prefix="tally-bench-"))
    tmux_dir = Path(tempfile.mkdtemp(prefix="tb", dir="/tmp"))
    (root / "home").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INVOKE_", "GIT_", "TMUX"))}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # a user's shell caches bytecode
    env.update(
        HOME=str(root / "home"),
        TMUX_TMPDIR=str(tmux_dir),
        SHELL=args.shell,
        NO_COLOR="1",
        GIT_CONFIG_NOSYSTEM="1",
        GIT_AUTHOR_NAME="b",
        GIT_AUTHOR_EMAIL="b@example.invalid",
        GIT_COMMITTER_NAME="b",
        GIT_COMMITTER_EMAIL="b@example.invalid",
        PATH=f"{BIN}:{os.environ.get('PATH', '')}",
    )
    results: dict[str, dict[str, Any]] = {}
    floors: dict[str, dict[str, float]] = {}
    breakdown: dict[str, dict[str, Any]] = {}
    # the package's bytecode, as `pip install .` (and bootstrap.sh) compile it: `inv` never
    # writes any, so a module changed since would be compiled again in every timed run
    for bin_ in [BIN, *([Path(args.before)] if args.before else [])]:
        subprocess.run(
            [str(bin_ / "python"), "-m", "compileall", "-q", str(_package(bin_))],
            env=env,
            check=True,
            capture_output=True,
        )
    load = os.getloadavg()
    try:
        fabric_loaded = False
        if not args.node_modules_only:
            fabric_loaded = commands(args, root, env, results, floors, breakdown)
        if args.node_modules:
            results.update(bench_node_modules(root, args.node_modules, args.runs))
    finally:
        subprocess.run(["tmux", "kill-server"], env=env, capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(tmux_dir, ignore_errors=True)

    def ms(r: dict[str, float], key: str) -> str:
        if key not in r:
            return f"{'':>11}"
        return f"{r[key + '_min'] * 1000:>4.0f} / {r[key] * 1000:>4.0f}"

    print(f"load average at the start: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    print(f"\n{'start-up, ms (min / median)':<30} {'':>11}")
    for label, r in floors.items():
        print(f"{label:<30} {ms(r, 'ours')}")
    header = ("operation, ms (min / median)", "ours", "bare", "over bare", "inv --version")
    if any("before" in r for r in results.values()):
        print(f"\n{'before (--before), ms (min / median)':<36} {'before':>11} {'now':>11}")
        for op, r in results.items():
            if "before" in r:
                print(f"{op:<36} {ms(r, 'before')} {ms(r, 'ours')}")
    print(
        f"\n{header[0]:<30} {header[1]:>11} {header[2]:>11} {header[3]:>11} {header[4]:>13}  ×floor"
    )
    for op, r in results.items():
        r["ratio"] = r["ours"] / r["bare"] if r.get("bare") else float("inf")
        x = f"{r['x_floor_min']:.2f} / {r['x_floor']:.2f}" if "x_floor" in r else ""
        cells = [ms(r, "ours"), ms(r, "bare"), ms(r, "over_bare"), f"{ms(r, 'floor'):>13}"]
        print(f"{op:<30} {' '.join(cells)}  {x}" + (f"  ({r['made']})" if "made" in r else ""))
    paired = [
        f"{op} {r['over_bare_paired'] * 1000:.0f}"
        for op, r in results.items()
        if "over_bare_paired" in r
    ]
    print("over bare, the median of each round's own difference (ms): " + ", ".join(paired))
    print(
        f"\n{'breakdown, ms (min)':<30} {'total':>6} {'python':>7} {'invoke':>7} {'ours':>6}"
        f" {'subprocesses':>15} {'rest':>6}"
    )
    for label, b in breakdown.items():
        print(
            f"{label:<30} {b['total'] * 1000:>6.0f} {b['interpreter'] * 1000:>7.0f}"
            f" {b['invoke'] * 1000:>7.0f} {b['ours'] * 1000:>6.0f}"
            f" {b['subprocesses'] * 1000:>8.0f} ({b['calls']:>2}) {b['rest'] * 1000:>6.0f}"
        )
    for label, b in breakdown.items():
        if b["calls_ms"]:
            shown = ", ".join(f"{a} {t * 1000:.0f}" for a, t in b["calls_ms"])
            print(f"  {label} (ms): {shown}")
    if "remove" in breakdown:
        # the four commands a person types: kill-session, worktree remove, branch -D (rm is
        # no subprocess here); everything else remove runs is its checks
        work = ("tmux kill-session", "git worktree remove", "git branch")
        checks = sum(t for a, t in breakdown["remove"]["calls_ms"] if not a.startswith(work))
        r = results["remove"]
        allowed = 2 * (r["bare_min"] + checks)
        print(
            f"remove: {r['ours_min'] * 1000:.0f} ms (min) against 2 × (bare "
            f"{r['bare_min'] * 1000:.0f} + its checks' subprocesses {checks * 1000:.0f}) = "
            f"{allowed * 1000:.0f} ms"
        )
        r["checks"], r["allowed"] = checks, allowed
    if floors:
        exits = (
            floors["imports, then exit"]["ours_min"] - floors["imports, then os._exit"]["ours_min"]
        )
        print(f"interpreter teardown that a quick exit skips: {exits * 1000:.0f} ms (min)")
    print(f"fabric/paramiko imported by local commands: {'yes' if fabric_loaded else 'no'}")
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    out = {
        "when": stamp,
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "system": platform.platform(),
            "load": load,
        },
        "params": {
            "files": args.files,
            "runs": args.runs,
            "node_modules": args.node_modules,
            "shell": args.shell,
        },
        "floors": floors,
        "results": results,
        "breakdown": breakdown,
        "fabric_imported": fabric_loaded,
    }
    path = args.out / f"{stamp}.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"written {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
