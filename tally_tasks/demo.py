"""`inv demo` (a task of this repository, not of the collection users import): the real
`add` on a built-in sample project, for a first try in a minute.

The sample is shaped like the Tally layout: a backend and a frontend (small HTTP servers
from Python's standard library, started like ``manage.py runserver`` and ``npm run dev``),
an untracked ``backend/.env`` (0600), a SQLite database and a ``node_modules`` folder.

``--path DIR`` may be any folder, the user's own included: the demo only ever makes
``DIR/tally-sample`` (the sample's main checkout) and its sessions' worktrees beside it,
and marks the sample it built with ``DIR/tally-sample/.git/tally-demo`` (inside ``.git``:
neither committed nor seen by ``git status``). A ``DIR/tally-sample`` without that marker
is not the demo's: neither building nor ``--clean`` touches it.

The default folder is the user's own (``$XDG_CACHE_HOME/tally-demo``, else
``~/.cache/tally-demo``), never a shared temp folder another user could plant a sample in.
A sample with anything in it that is not the user's, or that is a link, is refused: the
demo writes its ``invoke.yaml`` and registry there, and never through a link.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

from invoke import Context, task

from . import output, registry, sessions
from . import tmux as tmux_
from .config import DEFAULTS, plain, settings_from
from .errors import TallyError
from .repo import find_main
from .session import Project
from .steps import tmux as tmux_step
from .tasks import boundary

SAMPLE = "tally-sample"
SESSION = "demo"
MARKER = "tally-demo"  # in the sample's .git: this checkout is the demo's to remove

MANAGE_PY = '''\
"""A stand-in for Django's manage.py: `python manage.py runserver PORT`."""
import http.server, json, os, sqlite3, sys

def env():
    try:
        with open(".env") as f:
            return dict(l.strip().split("=", 1) for l in f if "=" in l)
    except OSError:
        return {}

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        with sqlite3.connect("db.sqlite3") as db:
            todos = [r[0] for r in db.execute("select title from todo")]
        body = json.dumps({"app": "backend", "port": PORT, "cwd": os.getcwd(),
                           "secret_key_set": bool(env().get("SECRET_KEY")),
                           "todos": todos}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Access-Control-Allow-Origin", "*")
        self.end_headers()
        self.wfile.write(body)

if __name__ == "__main__":
    if sys.argv[1:2] != ["runserver"]:
        sys.exit("usage: python manage.py runserver PORT")
    PORT = int(sys.argv[2])
    print(f"Starting development server at http://127.0.0.1:{PORT}/", flush=True)
    http.server.ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
'''

SERVE_PY = '''\
"""A stand-in for `npm run dev -- --port PORT --strictPort` (a Vite dev server)."""
import argparse, http.server

p = argparse.ArgumentParser()
p.add_argument("--port", type=int, required=True)
p.add_argument("--backend", type=int, required=True)
p.add_argument("--strictPort", action="store_true")
a = p.parse_args()
PAGE = f"""<!doctype html><title>tally sample</title>
<h1>Frontend on port {a.port}</h1><p>Backend: <a href="http://localhost:{a.backend}/">
http://localhost:{a.backend}/</a></p><pre id=out></pre>
<script>fetch("http://localhost:{a.backend}/").then(r => r.json())
.then(j => out.textContent = JSON.stringify(j, null, 2))</script>""".encode()

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(PAGE)

print(f"  VITE ready: http://localhost:{a.port}/", flush=True)
http.server.ThreadingHTTPServer(("127.0.0.1", a.port), Handler).serve_forever()
'''


def default_base() -> Path:
    """The user's own: ``$XDG_CACHE_HOME/tally-demo``, else ``~/.cache/tally-demo``."""
    cache = os.environ.get("XDG_CACHE_HOME", "")
    root = Path(cache) if os.path.isabs(cache) else Path.home() / ".cache"
    return root / "tally-demo"


def _old_base() -> Path:
    """Where earlier versions put the sample (a temp folder every user shares)."""
    return Path(tempfile.gettempdir()) / "tally-demo"


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(
        [
            "git",
            "-c",
            "user.name=tally demo",
            "-c",
            "user.email=demo@example.invalid",
            "-c",
            "commit.gpgsign=false",
            *args,
        ],
        cwd=cwd,
        check=True,
        capture_output=True,
    )


def marker(main: Path) -> Path:
    return main / ".git" / MARKER


def is_sample(main: Path) -> bool:
    """True when `main` is a sample checkout `build_sample` made (a real folder, marked)."""
    return not main.is_symlink() and not (main / ".git").is_symlink() and marker(main).is_file()


def own_name(main: Path) -> str:
    """The sample's project name when it has one of its own ("" = its folder's name)."""
    try:
        lines = marker(main).read_text().splitlines()
    except OSError:
        return ""
    return next((ln.split(": ", 1)[1] for ln in lines if ln.startswith("project: ")), "")


def _take_own_name(main: Path, srv: tmux_.TmuxServer) -> None:
    """A second demo (another --path) would clash with the first's tmux session: this
    sample takes a name of its own, kept in its marker for the runs and the clean after."""
    if own_name(main) or not tmux_.exists(srv, f"{SAMPLE}-{SESSION}"):
        return
    digest = hashlib.sha1(str(main.resolve()).encode()).hexdigest()[:6]
    with marker(main).open("a") as f:
        f.write(f"project: {SAMPLE}-{digest}\n")


def build_sample(main: Path) -> None:
    """The sample main checkout, committed, with its untracked shared and secret files.

    The marker is written right after ``git init``, before anything else: a build cut
    short is still the demo's, and ``--clean`` removes it.
    """
    import sqlite3  # here, not at the top: every command imports this module

    main.mkdir(parents=True)
    _git(main, "init", "-q", "-b", "main")
    marker(main).write_text("made by `inv demo`; `inv demo --clean` removes this checkout\n")
    (main / "backend").mkdir()
    (main / "frontend" / "node_modules" / "left-pad").mkdir(parents=True)
    (main / "backend" / "manage.py").write_text(MANAGE_PY)
    (main / "frontend" / "serve.py").write_text(SERVE_PY)
    (main / "frontend" / "package.json").write_text(
        '{"name": "tally-sample", "scripts": {"dev": "vite"}}\n'
    )
    (main / "frontend" / "node_modules" / "left-pad" / "index.js").write_text(
        "module.exports = (s, n) => String(s).padStart(n);\n"
    )
    (main / ".gitignore").write_text(
        ".env\ndb.sqlite3\nnode_modules/\n.tally-sessions\ninvoke.yaml\n"
    )
    (main / "README.md").write_text("A sample project for `inv demo` (tally-tasks).\n")
    env = main / "backend" / ".env"
    fd = os.open(env, os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("SECRET_KEY=demo-not-a-secret\nDEBUG=1\n")
    (main / "frontend" / ".env").write_text("VITE_API=http://localhost\n")
    db = sqlite3.connect(main / "backend" / "db.sqlite3")
    with db:
        db.execute("create table todo (title text)")
        db.executemany("insert into todo values (?)", [("try tally-tasks",), ("ship it",)])
    db.close()
    (main / "tasks.py").write_text("from tally_tasks import ns  # noqa: F401\n")
    _git(main, "add", "-A")
    _git(main, "commit", "-q", "-m", "Sample project")


def demo_settings(raw: dict[str, object], main: Path) -> dict[str, object]:
    """The sample's windows; ports, socket and lock timeout come from the user's config."""
    py = shlex.quote(sys.executable)
    claude = shutil.which("claude") is not None
    agent = (
        "claude -n {session}"
        if claude
        else (
            "echo 'Claude Code is not installed (npm install -g @anthropic-ai/claude-code);"
            " this window would run: claude -n {session}'"
        )
    )
    # without Claude Code, claude-perms would say "no window runs Claude Code" beside a
    # window named claude: the step is left out instead
    steps = [s for s in DEFAULTS["add_steps"] if claude or s != "claude_perms"]
    project = own_name(main)
    shared = ("ports", "tmux_socket", "lock_timeout")
    keep: dict[str, object] = {k: raw[k] for k in shared if k in raw}
    return {
        **keep,
        "project": project,
        "worktrees": "",
        "registry": ".tally-sessions",
        "activate": "",
        "links": ["frontend/node_modules", "backend/db.sqlite3"],
        "copies": ["backend/.env", "frontend/.env"],
        "hooks": {point: [] for point in DEFAULTS["hooks"]},  # none of the user's
        "windows": [
            {
                "name": "backend",
                "dir": "backend",
                "cmd": f"{py} manage.py runserver {{backend_port}}",
                "resume_cmd": "",
            },
            {
                "name": "frontend",
                "dir": "frontend",
                "cmd": f"{py} serve.py --port {{frontend_port}} --backend {{backend_port}}"
                " --strictPort",
                "resume_cmd": "",
            },
            {"name": "claude", "dir": "", "cmd": agent, "resume_cmd": ""},
        ],
        "add_steps": steps,
        "remove_steps": [],
    }


def _project(main: Path, raw: dict[str, object]) -> Project:
    config = demo_settings(raw, main)
    # The sample's own invoke.yaml, so `inv session.list` there sees the same settings
    # (JSON is YAML). Untracked: ports and paths are this machine's.
    registry.write_atomic(main / "invoke.yaml", json.dumps({"tally": config}, indent=2) + "\n")
    settings = settings_from(config)
    main, common = find_main(main)
    return Project(main=main, common_dir=common, settings=settings)


def _check_folder(base: Path) -> None:
    if base.exists() and not base.is_dir():
        raise TallyError(f"{base} is a file, not a folder; give --path a folder (or a new name)")


def _check_sample(main: Path, doing: str) -> None:
    """Refuse a `DIR/tally-sample` the demo did not build (someone's own checkout), and
    one with anything in it that is not the user's or is a link: the demo writes its
    invoke.yaml and registry there."""
    if (main.exists() or main.is_symlink()) and not is_sample(main):
        raise TallyError(
            f"{main} was not made by `inv demo` (no .git/{MARKER} marker); {doing}. "
            "Give --path another folder"
        )
    if main.exists():
        _check_own(main, doing)


def _check_own(main: Path, doing: str) -> None:
    """Everything in the sample is the user's and none of it is a link (the sample the
    demo builds has none): else another user planted it, or changed it."""
    me = os.geteuid()
    for top, dirs, files in os.walk(main):
        for path in [Path(top), *(Path(top, n) for n in dirs + files)]:
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                raise TallyError(
                    f"{path} is a link, and the demo never writes through one: this sample "
                    f"is not as the demo built it; {doing}. Remove {main} yourself, or give "
                    "--path another folder"
                )
            if st.st_uid != me:
                raise TallyError(
                    f"{path} belongs to another user (uid {st.st_uid}): the demo uses only a "
                    f"sample of yours; {doing}. Give --path another folder"
                )


def _check_base(base: Path, make: bool) -> None:
    """The default folder: the user's own real folder (`make`: made 0700 when missing)."""
    if make:
        base.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            base.mkdir(mode=0o700)
    st = base.lstat()
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise TallyError(
            f"{base} is a link or a file, not the demo's folder; nothing done. Remove it, "
            "or give --path a folder"
        )
    if st.st_uid != os.geteuid():
        raise TallyError(
            f"{base} belongs to another user (uid {st.st_uid}); nothing done. Give --path "
            "a folder of yours"
        )


def clean_sample(base: Path, raw: dict[str, object]) -> None:
    """Remove what the demo made in `base`: its sessions, the marked ``base/tally-sample``,
    then `base` itself if nothing else is left in it. Anything not the demo's stays."""
    from .operations import remove  # here: the collection is built without it

    if not base.exists() and not base.is_symlink():
        output.step("demo", f"nothing to clean: {base} does not exist")
        old = _old_base()
        if base == default_base() and is_sample(old / SAMPLE):
            again = f"{_inv()} demo --clean --path {shlex.quote(str(old))}"
            output.info(f"  an older demo's sample is in {old}; remove it with: {again}")
        return  # idempotent: a second --clean, or one after a manual rm, succeeds
    if base == default_base():
        _check_base(base, make=False)
    _check_folder(base)
    main = base / SAMPLE
    _check_sample(main, "nothing removed")
    removed = main.exists()
    if removed:
        project = _project(main, raw)
        srv = tmux_.server(project.settings.tmux_socket)
        for name in registry.load(project.registry_path):
            remove.run(project, name, srv, force=True)
        _remove_sample(main)
        output.step("demo", f"removed {main}")
    left = sorted(p.name for p in base.iterdir())
    if not left:
        base.rmdir()
        output.step("demo", f"removed {base}")
    elif not removed:
        raise TallyError(
            f"{base} has no demo sample ({SAMPLE}) and holds files the demo did not make; "
            "nothing removed"
        )
    else:
        shown = ", ".join(left[:3]) + (" …" if len(left) > 3 else "")
        output.step("demo", f"kept {base}: it holds files the demo did not make ({shown})")


def _remove_sample(main: Path) -> None:
    """Delete the sample, its marker last: a clean cut short can be run again."""
    git_dir = main / ".git"
    for top in (main, git_dir):
        for child in list(top.iterdir()):
            if child in (git_dir, marker(main)):
                continue
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    marker(main).unlink()
    git_dir.rmdir()
    main.rmdir()


def run(base: Path, raw: dict[str, object]) -> None:
    from . import readiness  # here: `inv --list` and every other task go without them
    from .operations import add, live

    if base == default_base():
        _check_base(base, make=True)
    _check_folder(base)
    main = base / SAMPLE
    _check_sample(main, "it is left alone")
    if not main.exists():
        try:
            build_sample(main)
        except OSError as e:
            raise TallyError(
                f"cannot make the sample in {base}: {e.strerror or e}; give --path another folder"
            ) from None
        output.step("sample", f"{main} (git repo with backend/, frontend/, .env, db.sqlite3)")
    if SESSION not in registry.load(main / ".tally-sessions"):
        _take_own_name(main, tmux_.server(str(raw.get("tmux_socket") or "")))
    project = _project(main, raw)
    srv = tmux_.server(project.settings.tmux_socket)
    entries = registry.load(project.registry_path)
    if SESSION in entries and entries[SESSION].get("state") != sessions.CREATING:
        session = project.session(SESSION, entries[SESSION])
        tmux_step.start(project, session, srv)
    else:
        session = add.run(project, SESSION, srv)
    urls = {p: f"http://localhost:{n}/" for p, n in session.ports.items()}
    # the same check as add's: a server of another program on its port is not the sample's
    # its servers (the agent's window may only say that Claude Code is not installed)
    served = readiness.window_ports(project.settings.windows, session.ports)
    results = live.ready(project, session, srv, [w for w, ports in served.items() if ports])
    if live.problems(results):
        raise TallyError(
            f"the sample's windows did not all come up ({live.problems(results)}); look at "
            f"them: {tmux_step.attach_line(project, session)}"
        )
    output.info()
    output.info(output.bold("The demo session is running:"))
    for port, url in urls.items():
        output.info(f"  {port:<9} {url}")
    output.info(f"  worktree  {session.worktree}")
    output.info(f"  attach    {tmux_step.attach_line(project, session)}   (detach: Ctrl-b d)")
    inv = _inv()
    list_cmd = f"{inv} list" if inv.endswith("tally-session") else f"{inv} session.list"
    output.info(f"  list      cd {shlex.quote(str(main))} && {list_cmd}")
    again = "" if base == default_base() else f" --path {shlex.quote(str(base))}"
    output.info(f"  clean up  {inv} demo --clean{again}")


def _inv() -> str:
    """The program as the user can type it: bare when on PATH, else the path they ran."""
    ran = os.path.abspath(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    name = os.path.basename(ran)
    if name not in ("inv", "invoke", "tally-session"):
        return "inv"
    on_path = shutil.which(name)
    if on_path and os.path.realpath(on_path) == os.path.realpath(ran):
        return name
    return shlex.quote(ran)


@task(
    help={
        "path": "folder for the sample project (default: ~/.cache/tally-demo)",
        "clean": "remove the demo session and the sample project",
        "quiet": "print only errors",
    }
)
@boundary
def demo(c: Context, path: str = "", clean: bool = False, quiet: bool = False) -> None:
    """Try it: build a sample project and run session.add on it, with both dev servers."""
    base = Path(path).expanduser().resolve() if path else default_base()
    raw = plain(c.config.get("tally") or {})
    if clean:
        clean_sample(base, raw)
    else:
        run(base, raw)
