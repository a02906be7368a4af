"""Shared fixtures: real git repos, a private tmux server, a temp HOME, recording stand-ins.

Nothing here touches the real HOME, the real tmux server or port 8000: every test gets
HOME, TMUX_TMPDIR and port bases of its own, and `guard_real_home` fails a test that
writes into the real HOME anyway.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import libtmux
import pytest

from tally_tasks import output, ports
from tally_tasks.config import settings_from
from tally_tasks.session import Project

REAL_HOME = Path(os.path.expanduser("~"))
VENV_BIN = Path(sys.executable).parent

# A stand-in for python/npm/claude: records argv, cwd and whether the activation ran, then
# behaves as the program would in a window: a dev server (`runserver 8001`, `--port 5001`)
# serves on its port from its folder until it is stopped; claude stays, reading its
# terminal, until `/exit` (or the end of its input); anything else ends at once.
STUB = """#!{py}
import json, os, sys
prog = os.path.basename(sys.argv[0])
with open(os.path.join({log!r}, prog + ".jsonl"), "a") as f:
    env = {{k: v for k, v in os.environ.items() if k.startswith("TALLY_")}}
    f.write(json.dumps({{"prog": prog, "argv": sys.argv[1:], "cwd": os.getcwd(),
                        "activated": os.environ.get("TALLY_ACTIVATED"), "env": env}}) + "\\n")
ports = [int(a) for a in sys.argv[1:] if a.isdigit() and 1024 <= int(a) <= 65535]
if prog in ("python", "npm") and ports:
    import http.server
    try:
        handler = http.server.SimpleHTTPRequestHandler
        server = http.server.ThreadingHTTPServer(("127.0.0.1", ports[-1]), handler)
    except OSError as e:
        sys.exit(f"Error: that port is already in use ({{e}})")
    server.serve_forever()
elif prog == "claude" and sys.stdin.isatty():
    for line in sys.stdin:
        if line.strip() == "/exit":
            break
"""


def pane(srv: libtmux.Server, target: str) -> str:
    """The visible screen of pane `target` (capture-pane), as one string."""
    return "\n".join(srv.cmd("capture-pane", "-p", "-t", target).stdout)


def poll(fn: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Call `fn` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {fn}")
        time.sleep(interval)


def free_base(span: int = 50) -> int:
    """A port base well away from 8000/5000 with `span` free ports above it."""
    for _ in range(200):
        base = random.randrange(20000, 60000, 10)
        ok = True
        for p in range(base, base + span, 7):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", p))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise RuntimeError("no free port range")


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Temp HOME with its own shell rc, a private tmux socket dir, fixed git identity."""
    home = tmp_path / "home"
    home.mkdir()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "log"
    log.mkdir()
    for prog in ("python", "npm", "claude"):
        stub = bin_dir / prog
        stub.write_text(STUB.format(log=str(log), py=sys.executable))
        stub.chmod(0o755)
    # A pane's login shell resets PATH from /etc/profile: give it back the stand-ins.
    path = f"{bin_dir}:{VENV_BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}"
    (home / ".profile").write_text(f'export PATH="{path}"\n')
    tmux_dir = Path(tempfile.mkdtemp(prefix="tt", dir="/tmp"))  # short: socket paths
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("PATH", path)
    monkeypatch.setenv("SHELL", "/bin/sh")
    monkeypatch.setenv("TMUX_TMPDIR", str(tmux_dir))
    monkeypatch.delenv("TMUX", raising=False)
    monkeypatch.delenv("TMUX_PANE", raising=False)
    monkeypatch.delenv("CLAUDE_CONFIG_DIR", raising=False)
    monkeypatch.setenv("NO_COLOR", "1")
    for key in list(os.environ):
        if key.startswith(("INVOKE_", "GIT_")):
            monkeypatch.delenv(key)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_AUTHOR_NAME", "Test")
    monkeypatch.setenv("GIT_AUTHOR_EMAIL", "test@example.invalid")
    monkeypatch.setenv("GIT_COMMITTER_NAME", "Test")
    monkeypatch.setenv("GIT_COMMITTER_EMAIL", "test@example.invalid")
    (home / ".gitconfig").write_text(
        "[init]\n\tdefaultBranch = main\n[commit]\n\tgpgsign = false\n"
    )
    output.set_quiet(False)
    yield tmp_path
    subprocess.run(["tmux", "kill-server"], capture_output=True)
    shutil.rmtree(tmux_dir, ignore_errors=True)


@pytest.fixture(autouse=True)
def guard_real_home() -> Iterator[None]:
    """Fail any test that writes into the real HOME."""

    def snapshot() -> dict[str, float]:
        out = {}
        for p in (REAL_HOME / ".claude.json", REAL_HOME / ".tally-sessions", REAL_HOME):
            try:
                out[str(p)] = p.stat().st_mtime
            except OSError:
                out[str(p)] = -1.0
        return out

    before = snapshot()
    yield
    assert snapshot() == before, "a test wrote into the real HOME"


@dataclass
class Sample:
    """A main checkout shaped like Tally, with its config and stand-in logs."""

    root: Path  # tmp_path
    main: Path
    log: Path
    config: dict[str, Any]

    @property
    def home(self) -> Path:
        return self.root / "home"

    def project(self, **overrides: Any) -> Project:
        settings = settings_from({**self.config, **overrides})
        return Project(self.main, self.main / ".git", settings)

    def calls(self, prog: str) -> list[dict[str, Any]]:
        f = self.log / f"{prog}.jsonl"
        if not f.exists():
            return []
        return [json.loads(line) for line in f.read_text().splitlines() if line.strip()]

    def wait_calls(self, prog: str, n: int = 1, timeout: float = 15.0) -> list[dict[str, Any]]:
        return poll(lambda: len(self.calls(prog)) >= n and self.calls(prog), timeout)

    def registry(self) -> dict[str, Any]:
        f = self.main / ".tally-sessions"
        return json.loads(f.read_text()) if f.exists() else {}

    def write_config(self, **overrides: Any) -> None:
        """invoke.yaml beside tasks.py (JSON is YAML), for the end-to-end tests."""
        (self.main / "invoke.yaml").write_text(json.dumps({"tally": {**self.config, **overrides}}))


def make_sample(root: Path, parent: str = "Dev", name: str = "tally") -> Sample:
    main = root / parent / name
    (main / "backend").mkdir(parents=True)
    (main / "frontend" / "node_modules" / "pkg").mkdir(parents=True)
    (main / "frontend" / "node_modules" / "pkg" / "index.js").write_text("module.exports = 1\n")
    (main / "backend" / "manage.py").write_text("# django\n")
    (main / "frontend" / "package.json").write_text("{}\n")
    (main / ".gitignore").write_text(".env\ndb.sqlite3\nnode_modules/\n.tally-sessions\n")
    (main / "tasks.py").write_text("from tally_tasks import ns  # noqa: F401\n")
    env = main / "backend" / ".env"
    env.write_text("SECRET_KEY=s3cret\n")
    env.chmod(0o600)
    (main / "frontend" / ".env").write_text("VITE_X=1\n")
    with sqlite3.connect(main / "backend" / "db.sqlite3") as db:
        db.execute("create table t (x)")
    git(main, "init", "-q", "-b", "main")
    git(main, "add", "-A")
    git(main, "commit", "-q", "-m", "init")
    backend, frontend = free_base(), free_base()
    while abs(frontend - backend) < 100:
        frontend = free_base()
    config: dict[str, Any] = {
        "ports": {"backend": backend, "frontend": frontend},
        "activate": "export TALLY_ACTIVATED=yes",
        "lock_timeout": 5.0,
        # symlinks, which most tests check by name; the default (`auto`: a hard-linked
        # node_modules) has its own tests in test_links.py
        "links": ["frontend/node_modules", "backend/db.sqlite3"],
    }
    return Sample(root=root, main=main, log=root / "log", config=config)


@pytest.fixture
def sample(isolated_env: Path) -> Sample:
    s = make_sample(isolated_env)
    s.write_config()
    git(s.main, "add", "invoke.yaml")
    git(s.main, "commit", "-q", "-m", "config")
    return s


@pytest.fixture
def srv(isolated_env: Path) -> Iterator[libtmux.Server]:
    server = libtmux.Server()
    yield server
    server.kill() if server.is_alive() else None


def run_cli(
    args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run `inv ...` or `tally-session ...` from the venv, as a user types it."""
    prog = str(VENV_BIN / args[0])
    return subprocess.run(
        [prog, *args[1:]],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture
def serve() -> Iterator[Callable[[int, Path], subprocess.Popen[bytes]]]:
    """Start `python -m http.server PORT` in a folder (a dev server stand-in); every
    server is ended afterwards."""
    started: list[subprocess.Popen[bytes]] = []

    def start(port: int, cwd: Path) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
            cwd=cwd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        started.append(proc)
        poll(lambda: proc.poll() is not None or ports.is_listening(port))
        assert proc.poll() is None, f"http.server could not listen on {port}"
        return proc

    try:
        yield start
    finally:
        for proc in started:
            proc.terminate()
            proc.wait(timeout=10)


def add_submodule(main: Path, lib: Path) -> None:
    """A one-commit repository at `lib`, added to `main` as submodule `lib` and committed."""
    lib.mkdir()
    git(lib, "init", "-q", "-b", "main")
    (lib / "a.txt").write_text("a\n")
    git(lib, "add", "a.txt")
    git(lib, "commit", "-q", "-m", "lib")
    git(main, "-c", "protocol.file.allow=always", "submodule", "-q", "add", str(lib), "lib")
    git(main, "commit", "-q", "-m", "submodule")


def init_submodules(worktree: Path) -> None:
    git(worktree, "-c", "protocol.file.allow=always", "submodule", "-q", "update", "--init")


def leftovers(path: Path) -> list[str]:
    """Staging folders or temp files a copy or link may leave beside `path`."""
    return sorted(p.name for p in path.parent.glob(f".{path.name}.*"))


def run_into_closed_pipe(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run `inv ...`/`tally-session ...` with stdout a pipe whose reader is already gone:
    every write fails with EPIPE."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run(
            [str(VENV_BIN / args[0]), *args[1:]],
            cwd=cwd,
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    finally:
        os.close(write_end)


def silent_server(kind: str) -> tuple[int, Callable[[], None]]:
    """A TCP port that accepts and then says nothing ("silent") or speaks HTTP ("http")."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            if kind == "http":
                conn.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n")
                conn.close()
            else:
                held.append(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()

    def close() -> None:
        stop.set()
        thread.join()
        for c in held:
            c.close()
        server.close()

    return int(server.getsockname()[1]), close


def in_group(pgid: int) -> list[str]:
    """The live processes of process group `pgid` (a zombie counts as gone)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            stat = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if stat[2] == str(pgid) and stat[0] != "Z":
            found.append(proc.name)
    return found


def preflights_in(folder: Path) -> list[int]:
    """The pids of preflight shells working in `folder`."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if (
                proc.name.isdigit()
                and b"__tally_preflight__" in (proc / "cmdline").read_bytes()
                and os.readlink(proc / "cwd") == str(folder)
            ):
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def imported_by(argv: list[str], cwd: Path) -> set[str]:
    """The modules a command (`["inv", "session.list"]`) imports, run as invoke runs it in
    a fresh interpreter; the command must succeed."""
    code = (
        "import json, sys\n"
        "from invoke.main import program\n"
        f"program.run({argv!r}, exit=False)\n"
        "print(json.dumps(sorted(sys.modules)), file=sys.stderr)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    return set(json.loads(r.stderr.strip().splitlines()[-1]))


COUNTING = """#!/bin/sh
printf '%s\\n' "$(basename "$0") $*" >> {log}
exec {real} "$@"
"""


def counting(folder: Path, *progs: str) -> tuple[str, Path]:
    """Stand-ins for `progs` (git, tmux) in `folder` that write each call to a log, a line
    each ("git status --porcelain=v1 ..."), then run the real program: (the PATH that
    puts them first, the log)."""
    folder.mkdir()
    log = folder / "calls.log"
    log.write_text("")
    for prog in progs:
        real = shutil.which(prog)
        assert real is not None, prog
        (folder / prog).write_text(COUNTING.format(log=log, real=real))
        (folder / prog).chmod(0o755)
    return f"{folder}:{os.environ['PATH']}", log


def obeying_permissions(argv: list[str]) -> list[str]:
    """`argv` run so that file permission bits hold: as it is for a normal user; for root
    (CI), under setpriv without the capabilities that let root ignore them. Skips the
    test where neither is possible."""
    if os.geteuid() != 0:
        return argv
    drop = ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner", "--"]
    if shutil.which("setpriv") is None or subprocess.run([*drop, "true"]).returncode != 0:
        pytest.skip("root ignores permission bits here and setpriv cannot drop that")
    return [*drop, *argv]


def commit(folder: Path, rel: str, text: str, message: str) -> str:
    """Write `rel` in the checkout `folder`, commit it; returns the commit."""
    path = folder / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    git(folder, "add", rel)
    git(folder, "commit", "-q", "-m", message)
    return git(folder, "rev-parse", "HEAD").strip()


def add_origin(main: Path) -> Path:
    """A bare "origin" beside the sample, with main pushed and origin/HEAD set, as a
    clone has them."""
    bare = main.parent.parent / "origin.git"
    git(main.parent, "init", "-q", "--bare", "-b", "main", str(bare))
    git(main, "remote", "add", "origin", str(bare))
    git(main, "push", "-q", "-u", "origin", "main")
    git(main, "remote", "set-head", "origin", "main")
    return bare


def forge_merge(bare: Path, branch: str, how: str) -> None:
    """What a forge's merge button does on origin, then deletes the branch there: `squash`
    (one commit of the branch's combined diff) or `rebase` (its commits replayed, new ids:
    main moved first). The local repository learns of it only by fetching."""
    clone = bare.parent / f"forge-{branch.replace('/', '-')}"
    git(bare.parent, "clone", "-q", str(bare), str(clone))
    commit(clone, "forge.txt", f"merged before {branch}\n", "another pull request")
    if how == "squash":
        git(clone, "merge", "-q", "--squash", f"origin/{branch}")
        git(clone, "commit", "-q", "-m", f"{branch} (#1)")
    else:
        git(clone, "cherry-pick", f"main..origin/{branch}")
    git(clone, "push", "-q", "origin", "main", f":refs/heads/{branch}")
    shutil.rmtree(clone)


def git_state(*checkouts: Path) -> dict[str, Any]:
    """Everything `land` promises to leave as it was, byte for byte: every ref, and for
    each checkout its HEAD, ORIG_HEAD, index file, status and every file (links as
    links). The index is read before anything runs git in it."""
    state: dict[str, Any] = {
        "refs": git(checkouts[0], "for-each-ref", "--format=%(refname) %(objectname)")
    }
    for co in checkouts:
        paths = git(
            co,
            "rev-parse",
            "--path-format=absolute",
            *("--git-path", "index", "--git-path", "HEAD", "--git-path", "ORIG_HEAD"),
        ).splitlines()
        for name, path in zip(("index", "HEAD", "ORIG_HEAD"), paths, strict=True):
            p = Path(path)
            state[f"{co}:{name}"] = (
                hashlib.sha256(p.read_bytes()).hexdigest() if p.exists() else None
            )
        state[f"{co}:status"] = git(
            co, "--no-optional-locks", "status", "--porcelain=v1", "--untracked-files=all"
        )
        files: dict[str, str] = {}
        for folder, dirs, names in os.walk(co):
            here = Path(folder)
            if here == co:
                dirs[:] = [d for d in dirs if d != ".git"]
                names = [n for n in names if n != ".git"]
            for entry in [*dirs, *names]:
                path = here / entry
                rel = str(path.relative_to(co))
                if path.is_symlink():
                    files[rel] = "-> " + os.readlink(path)
                elif path.is_file():
                    files[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
            dirs[:] = [d for d in dirs if not (here / d).is_symlink()]
        state[f"{co}:files"] = files
    return state


STANDIN_CLAUDE = Path(__file__).with_name("standin_claude.py")


@pytest.fixture
def standin_claude(isolated_env: Path) -> Path:
    """Replace the recording `claude` stub with the stand-in that runs hooks as Claude Code
    does (tests/standin_claude.py); its first line is this Python, so the process is
    named `claude`, as the real one is."""
    prog = isolated_env / "bin" / "claude"
    prog.write_text(f"#!{sys.executable}\n" + STANDIN_CLAUDE.read_text())
    prog.chmod(0o755)
    return prog


def proc_walks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every walk of /proc that `ports.holders` makes from here on (a folder each)."""
    walked: list[str] = []

    class Spy(type(Path())):  # type: ignore[misc]
        def iterdir(self) -> Iterator[Path]:
            if str(self) == "/proc":
                walked.append(str(self))
            return super().iterdir()

    monkeypatch.setattr(ports, "Path", Spy)
    return walked
