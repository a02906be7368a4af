"""Start-up and exit: no ``unittest.mock`` in a task run, a MockContext that still works,
no PyYAML import for a kept invoke.yaml and the same settings as invoke's, the .pth file
that does it for `inv`, and the quick exit that loses nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from conftest import Sample, run_cli

HEAVY = ("unittest", "unittest.mock", "asyncio", "ssl")


def imported(stderr: str) -> set[str]:
    """Modules named by ``-X importtime`` lines (PYTHONPROFILEIMPORTTIME)."""
    return {
        line.rsplit("|", 1)[1].strip()
        for line in stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }


def python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
    )


@pytest.mark.parametrize(
    "args",
    [
        ["inv", "session.add", "x", "-q"],
        ["inv", "session.list"],
        ["tally-session", "list", "--host", ""],  # not tally_tasks.quick's: invoke's path
        ["tally-session", "remove", "x", "-q"],
        ["inv", "session.remove", "x", "-q"],
        ["inv", "--version"],
    ],
    ids=[
        "inv-add",
        "inv-list",
        "tally-session-list",
        "tally-session-remove",
        "inv-remove",
        "inv-version",
    ],
)
def test_a_task_run_never_imports_unittest_mock(sample: Sample, args: list[str]) -> None:
    if args[1] in ("session.list", "list", "session.remove", "remove"):
        assert run_cli(["inv", "session.add", "x", "-q"], sample.main).returncode == 0
    r = run_cli(args, sample.main, env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert r.returncode == 0, r.stderr[-2000:]
    modules = imported(r.stderr)
    assert "invoke" in modules
    assert not modules & set(HEAVY), modules & set(HEAVY)


def test_remove_imports_only_what_it_runs(sample: Sample) -> None:
    """remove copies no tree and makes no temp folder: neither tempfile, nor shutil (bz2,
    lzma) or random behind it, nor the built-in steps of add, nor the JSON writer of
    ~/.claude.json when nothing in it changes."""
    assert run_cli(["inv", "session.add", "x", "-q"], sample.main).returncode == 0
    r = run_cli(
        ["inv", "session.remove", "x", "-q"], sample.main, env={"PYTHONPROFILEIMPORTTIME": "1"}
    )
    assert r.returncode == 0, r.stderr[-2000:]
    modules = imported(r.stderr)
    assert "tally_tasks.operations.remove" in modules
    unused = {"tempfile", "shutil", "random", "bz2", "lzma", "tally_tasks.nodejson"}
    unused |= {f"tally_tasks.steps.{s}" for s in ("env", "links", "ports", "tmux", "worktree")}
    unused |= {"tally_tasks.listing", "tally_tasks.status"}
    assert not modules & unused, modules & unused


def test_add_imports_what_it_uses_when_it_uses_it(sample: Sample) -> None:
    """add binds its ports' probes with _socket, fingerprints a small tree without
    hashlib (OpenSSL), links a tree, copies files and stages them without shutil and
    tempfile (bz2, lzma, random behind them), reads no pane of its new session, with -q
    starts no preflight and, with --no-wait, waits for no window: none of them imported;
    the wait imports what it needs."""
    sample.write_config(links=[{"path": "frontend/node_modules", "mode": "auto"}])
    unused = {"socket", "hashlib", "concurrent.futures", "tally_tasks.readiness"}
    unused |= {"shutil", "tempfile", "bz2", "lzma", "random"}
    # a new session's panes are neither read nor restarted; -q starts no preflight
    unused |= {f"tally_tasks.{m}" for m in ("panes", "restart", "live", "preflight")}
    unused |= {"tally_tasks.listing", "tally_tasks.status"}  # list's, imported by list only
    r = run_cli(
        ["inv", "session.add", "x", "-q", "--no-wait"],
        sample.main,
        env={"PYTHONPROFILEIMPORTTIME": "1"},
    )
    assert r.returncode == 0, r.stderr[-2000:]
    modules = imported(r.stderr)
    assert {"_socket", "tally_tasks.links", "tally_tasks.operations.add"} <= modules
    assert not modules & unused, modules & unused
    wt = sample.main.parent / "tally-x"
    assert (wt / "backend" / ".env").is_file()  # copied: the files of `copies` were there
    stamps = sample.main / ".git" / "worktrees" / "tally-x" / "tally-trees.json"
    assert "frontend/node_modules" in stamps.read_text()  # the tree was fingerprinted
    r = run_cli(
        ["inv", "session.add", "y", "-q"], sample.main, env={"PYTHONPROFILEIMPORTTIME": "1"}
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert "tally_tasks.readiness" in imported(r.stderr)


MOCK_CONTEXT = """
import sys
from tally_tasks import startup
startup.defer_mock()
import invoke
assert "unittest.mock" not in sys.modules and "unittest" not in sys.modules
from invoke import MockContext, Result
c = MockContext(run={"ls": Result("listing")})
import unittest.mock
import invoke.context
assert isinstance(c.run, unittest.mock.Mock), type(c.run)
assert c.run("ls").stdout == "listing"
c.run.assert_called_once_with("ls")
assert invoke.context.Mock is unittest.mock.Mock
assert sys.modules["unittest.mock"] is unittest.mock and unittest.mock.patch
print("ok")
"""

OTHER_NAME = """
import sys
from tally_tasks import startup
startup.defer_mock()
from unittest.mock import patch, sentinel
import unittest.mock
assert patch is unittest.mock.patch and sentinel is unittest.mock.sentinel
assert type(sys.modules["unittest.mock"]).__name__ == "module"
print("ok")
"""

AFTER_INVOKE = """
import sys
import invoke
from tally_tasks import startup
startup.defer_mock()
assert type(sys.modules["unittest.mock"]).__name__ == "module"
print("ok")
"""


@pytest.mark.parametrize(
    "code",
    [MOCK_CONTEXT, OTHER_NAME, AFTER_INVOKE],
    ids=["mock-context-made", "another-name-asked-first", "invoke-already-imported"],
)
def test_the_stand_in_answers_as_the_real_module(code: str) -> None:
    r = python(code)
    assert r.returncode == 0 and r.stdout == "ok\n", r.stderr


# --- invoke's PyYAML: a kept parse, else the real module ------------------------------


def yaml_imported(stderr: str) -> bool:
    """Whether PyYAML (invoke's, or its own) was imported (``-X importtime`` lines)."""
    return any(m.startswith(("invoke.vendor.yaml", "yaml")) for m in imported(stderr))


@pytest.mark.parametrize("where", ["main", "worktree"])
def test_a_kept_invoke_yaml_imports_no_yaml(sample: Sample, where: str) -> None:
    """The first run parses the checkout's invoke.yaml and keeps it in its git folder (a
    worktree's own); every later run, `inv` or tally-session through invoke, reads it
    without importing PyYAML. A changed file is parsed again."""
    assert run_cli(["inv", "session.add", "x", "-q", "--no-wait"], sample.main).returncode == 0
    here = sample.main if where == "main" else sample.main.parent / "tally-x"
    kept = (
        sample.main / ".git" / "tally-yaml.cache"
        if where == "main"
        else sample.main / ".git" / "worktrees" / "tally-x" / "tally-yaml.cache"
    )
    kept.unlink(missing_ok=True)
    timing = {"PYTHONPROFILEIMPORTTIME": "1"}
    first = run_cli(["inv", "session.list", "--json"], here, env=timing)
    assert first.returncode == 0, first.stderr[-2000:]
    assert yaml_imported(first.stderr)
    assert kept.is_file() and kept.stat().st_mode & 0o777 == 0o600
    for args in (
        ["inv", "session.list", "--json"],
        ["tally-session", "list", "--json", "--host", ""],  # invoke's path, not quick's
    ):
        r = run_cli(args, here, env=timing)
        assert r.returncode == 0, r.stderr[-2000:]
        assert [(e["name"], e["worktree"]) for e in json.loads(r.stdout)] == [
            (e["name"], e["worktree"]) for e in json.loads(first.stdout)
        ]
        assert "invoke" in imported(r.stderr) and not yaml_imported(r.stderr), r.stderr[-2000:]
    text = (here / "invoke.yaml").read_text()
    (here / "invoke.yaml").write_text(text.replace("TALLY_ACTIVATED=yes", "TALLY_ACTIVATED=no!"))
    r = run_cli(["inv", "session.list", "--json"], here, env=timing)
    assert r.returncode == 0 and yaml_imported(r.stderr), r.stderr[-2000:]


# Each file as invoke's Config loads it, twice (parsed, then kept), with the stand-in in
# place, printed with whether the real PyYAML was imported by the end.
LOAD = """
import sys
from tally_tasks import startup
startup.defer()
import tally_tasks.tasks  # our tasks loaded, as by `inv` in a project of ours
from invoke import Config
for _ in range(2):
    c = Config(lazy=True)
    c.set_project_location(sys.argv[1])
    try:
        c.load_project()
        print(repr(c._project))
    except Exception as e:
        print(type(e).__name__, str(e))
print(type(sys.modules.get("invoke.vendor.yaml")).__name__)
"""

YAML_TEXTS = [
    ("plain", "tally:\n  activate: x\n  ports: {backend: 9000}\n", "module"),
    ("yaml 1.1 words", "tally:\n  attention: {bell: no, message: on}\nother: [yes, ~]\n", "module"),
    ("empty", "", "module"),
    ("a date: parsed each time", "tally:\n  project: p\nwhen: 2024-01-02\n", "module"),
    ("not YAML", "tally: [\n", "module"),
]


@pytest.mark.parametrize("text", [t[1] for t in YAML_TEXTS], ids=[t[0] for t in YAML_TEXTS])
def test_the_yaml_stand_in_loads_what_invoke_loads(tmp_path: Path, text: str) -> None:
    """The same data (or the same error, naming the file) as invoke's own PyYAML gives,
    kept or not; the real module is imported only where the file is parsed."""
    from invoke import Config

    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "invoke.yaml").write_text(text)
    c = Config(lazy=True)
    c.set_project_location(str(tmp_path))
    try:
        c.load_project()
        expected = repr(c._project)
    except Exception as e:
        expected = f"{type(e).__name__} {e}"
    load = LOAD.replace("sys.argv[1]", repr(str(tmp_path)))
    r = python(load)
    assert r.stdout == f"{expected}\n{expected}\nmodule\n", r.stderr  # parsed
    kept = (tmp_path / ".git" / "tally-yaml.cache").exists()
    assert kept == ("2024" not in text and "[\n" not in text)
    if kept:  # a fresh process reads the kept parse, without PyYAML
        r = python(load)
        assert r.stdout == f"{expected}\n{expected}\n_YamlStandIn\n", r.stderr


OTHER_YAML_NAME = """
import sys
from tally_tasks import startup
startup.defer()
import invoke.util
stand_in = invoke.util.yaml
assert type(stand_in).__name__ == "_YamlStandIn"
assert stand_in.safe_dump({"a": 1}) == "a: 1\\n"  # any other name: the real module
import invoke.vendor.yaml
assert type(invoke.vendor.yaml).__name__ == "module" and invoke.vendor.yaml is not stand_in
assert stand_in.YAMLError is invoke.vendor.yaml.YAMLError
print("ok")
"""

NOT_A_PROJECT = """
import sys
from tally_tasks import startup
startup.defer()
import invoke.util, io
s = io.StringIO("a: 1\\n"); s.name = sys.argv[1]
assert invoke.util.yaml.safe_load(s) == {"a": 1}
assert type(sys.modules["invoke.vendor.yaml"]).__name__ == "module"
print("ok")
"""


@pytest.mark.parametrize("code", [OTHER_YAML_NAME, NOT_A_PROJECT], ids=["other-name", "not-kept"])
def test_the_yaml_stand_in_gives_the_real_module(tmp_path: Path, code: str) -> None:
    """Any other name, and a file that is not a checkout's own invoke.yaml (the user's
    ~/.invoke.yaml, a runtime file), get the real PyYAML; nothing is kept for them."""
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    user_file = str(tmp_path / ".invoke.yaml")
    r = python(code.replace("sys.argv[1]", repr(user_file)))
    assert r.returncode == 0 and r.stdout == "ok\n", r.stderr
    assert not (tmp_path / ".git" / "tally-yaml.cache").exists()


def test_another_projects_invoke_yaml_is_not_kept(tmp_path: Path, isolated_env: Path) -> None:
    """`inv` in a project of this environment whose tasks are not ours: its invoke.yaml
    is parsed as invoke parses it, and nothing is written into its repository."""
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "tasks.py").write_text(
        "from invoke import task\n\n@task\ndef hi(c):\n    print(c.config.greeting)\n"
    )
    (tmp_path / "invoke.yaml").write_text("greeting: hello\n")
    for _ in range(2):
        r = run_cli(["inv", "hi"], tmp_path)
        assert (r.returncode, r.stdout) == (0, "hello\n"), r.stderr
    assert not (tmp_path / ".git" / "tally-yaml.cache").exists()


def test_each_install_keeps_its_own_parse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two installs (another PyYAML, another Python) reading one checkout keep a parse
    each, the last few, instead of parsing in turn."""
    from tally_tasks import yamlcache

    cache = tmp_path / yamlcache.CACHE_FILE
    parsed: list[str] = []

    def keep(stamp: str, text: str) -> object:
        monkeypatch.setattr(yamlcache, "_stamp", lambda: (stamp,))
        kept = yamlcache.Kept(cache)
        data = kept.parse("/p/invoke.yaml", text, lambda: parsed.append(stamp) or {"t": text})
        kept.save()
        return data

    for _ in range(3):
        for stamp in ("a", "b"):
            assert keep(stamp, "x: 1\n") == {"t": "x: 1\n"}
    assert parsed == ["a", "b"]  # once each
    assert keep("a", "x: 2\n") == {"t": "x: 2\n"} and parsed[-1] == "a"  # changed: again
    for stamp in "cdef":
        keep(stamp, "x: 1\n")
    assert len(yamlcache.Kept(cache).entries) == yamlcache.KEEP


PTH = Path(sysconfig.get_paths()["purelib"]) / "tally_tasks_startup.pth"


def test_the_pth_file_is_installed_and_quiet_outside_inv() -> None:
    """bootstrap.sh's `pip install -e .` put it beside the package; any other program of
    this Python imports nothing for it (the editable install's finder is its own)."""
    assert PTH.is_file(), "re-run ./bootstrap.sh (pip install -e .)"
    r = python(
        "import sys; print(sorted(m for m in sys.modules if m.startswith(('tally', 'unit'))))"
    )
    assert r.stdout == "[]\n", r.stdout + r.stderr


def test_the_pth_file_defers_mock_and_yaml_for_inv(tmp_path: Path) -> None:
    """What `site` runs for a program named inv: the stand-ins are in place."""
    line = PTH.read_text()
    script = tmp_path / "inv"
    script.write_text(
        "import sys\n"
        "print(type(sys.modules.get('unittest.mock')).__name__, 'invoke' in sys.modules,\n"
        "      type(sys.modules.get('invoke.vendor.yaml')).__name__)\n"
    )
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
    assert r.stdout == "_StandIn False _YamlStandIn\n", (line, r.stdout, r.stderr)


QUICK = """
import atexit, sys, threading, time
from pathlib import Path
from tally_tasks.startup import quick_exit
out = Path(sys.argv[1])
atexit.register(lambda: out.write_text(out.read_text() + "atexit\\n"))
def later():
    time.sleep(0.2)
    out.write_text(out.read_text() + "thread\\n")
out.write_text("")
threading.Thread(target=later).start()
sys.stdout.write("no newline, still buffered")
sys.stderr.write("err")
quick_exit(3)
print("never")
"""


def test_quick_exit_loses_nothing(tmp_path: Path) -> None:
    """Threads joined, exit handlers run (in the interpreter's order), output flushed,
    the status kept."""
    out = tmp_path / "order"
    r = subprocess.run(
        [sys.executable, "-c", QUICK, str(out)], capture_output=True, text=True, timeout=30
    )
    assert (r.returncode, r.stdout, r.stderr) == (3, "no newline, still buffered", "err")
    assert out.read_text() == "thread\natexit\n"


def test_inv_runs_every_task_it_is_given_before_it_exits(sample: Sample) -> None:
    # two calls (the same twice would be run once: invoke dedupes)
    r = run_cli(["inv", "session.list", "--json", "session.list", "--json", "--brief"], sample.main)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("[]") == 2, r.stdout


def test_a_program_run_in_process_returns(
    sample: Sample, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Only invoke's own script ends the process early: a Program run inside another
    (this test) returns."""
    from invoke import Program

    from tally_tasks import ns

    monkeypatch.chdir(sample.main)
    Program(namespace=ns).run(["inv", "session.list", "--json"], exit=False)
    assert capsys.readouterr().out == "[]\n"


# Says so when the interpreter tears its modules down (a module global's __del__).
TELL = """import sys
class _Tell:
    def __del__(self):
        sys.stderr.write("teardown\\n")
_tell = _Tell()
"""


@pytest.mark.parametrize(
    ("args", "teardown"),
    [
        (["inv", "session.list"], False),
        (["tally-session", "list"], False),
        (["tally-session", "remove", "nosuch"], False),  # exit status 1, quick all the same
        (["inv", "--version"], True),  # no task ran: invoke's own exit
    ],
    ids=["inv-list", "tally-session-list", "tally-session-error", "inv-version"],
)
def test_a_command_ends_without_the_interpreters_teardown(
    sample: Sample, tmp_path: Path, args: list[str], teardown: bool
) -> None:
    (tmp_path / "sitecustomize.py").write_text(TELL)
    r = run_cli(args, sample.main, env={"PYTHONPATH": str(tmp_path)})
    assert ("teardown" in r.stderr) == teardown, (r.returncode, r.stdout, r.stderr)
    assert r.returncode == (1 if "nosuch" in args else 0), r.stderr


# Names each task whose arguments are built, as the process ends.
COUNT_ARGUMENTS = """import atexit, sys
from invoke.tasks import Task
_built = []
_real = Task.get_arguments
def _counting(self, *a, **k):
    _built.append(self.name)
    return _real(self, *a, **k)
Task.get_arguments = _counting
atexit.register(lambda: sys.stderr.write("built: " + " ".join(_built) + "\\n"))
"""


@pytest.mark.parametrize(
    ("args", "built"),
    [
        (["inv", "session.list"], "list"),
        (["inv", "session.list", "session.list", "--json"], "list list"),  # once for each
        (["tally-session", "list", "--host", ""], "list"),  # invoke's path, not quick.py's
        (["tally-session", "remove", "nosuch"], "remove"),
    ],
    ids=["inv", "inv-twice", "tally-session", "tally-session-remove"],
)
def test_only_the_tasks_named_have_their_arguments_built(
    sample: Sample, tmp_path: Path, args: list[str], built: str
) -> None:
    """invoke's parser makes (and copies) a context per task of the collection; only the
    named ones are built (tasks.TaskContext)."""
    (tmp_path / "sitecustomize.py").write_text(COUNT_ARGUMENTS)
    r = run_cli(args, sample.main, env={"PYTHONPATH": str(tmp_path)})
    said = [ln for ln in r.stderr.splitlines() if ln.startswith("built:")]
    assert said == [f"built: {built}"], (r.returncode, r.stderr)


COUNT_LOOKUPS = """import atexit, sys
from invoke.collection import Collection
_asked = []
_real = Collection.task_with_config
def _counting(self, name):
    _asked.append(name)
    return _real(self, name)
Collection.task_with_config = _counting
atexit.register(lambda: sys.stderr.write("looked up: " + " ".join(sorted(set(_asked))) + "\\n"))
"""


@pytest.mark.parametrize(
    ("args", "asked"),
    [
        (["inv", "session.list"], "list session.list"),
        (["tally-session", "list", "--host", ""], "list"),
    ],
    ids=["inv", "tally-session"],
)
def test_only_the_tasks_named_are_looked_up(
    sample: Sample, tmp_path: Path, args: list[str], asked: str
) -> None:
    """A task looked up in the collection has the collection's configuration merged and
    copied for it (invoke's `task_with_config`): only the tasks named are."""
    (tmp_path / "sitecustomize.py").write_text(COUNT_LOOKUPS)
    r = run_cli(args, sample.main, env={"PYTHONPATH": str(tmp_path)})
    said = [ln for ln in r.stderr.splitlines() if ln.startswith("looked up:")]
    assert said == [f"looked up: {asked}"], (r.returncode, r.stderr)


def test_a_task_context_is_built_when_used_and_copied_apart() -> None:
    import copy

    from tally_tasks import ns
    from tally_tasks.tasks import TaskContext, task_contexts

    contexts = {c.name: c for c in task_contexts(ns)}
    add = contexts["session.add"]
    assert isinstance(add, TaskContext)
    assert repr(add) == "<parser/Context 'session.add' (arguments built when used)>"
    unbuilt = copy.deepcopy(add)
    assert unbuilt._pending is not None and unbuilt is not add
    assert "--name" in add.flags and "--no-wait" in add.flags  # built on first use
    assert "'name'" in repr(add)
    copied = copy.deepcopy(add)
    copied.args["name"].value = "x"
    assert add.args["name"].value is None  # a parse of the copy leaves the original alone
    assert copied.flags["--name"] is copied.args["name"]  # one Argument, two ways in
    assert [a.name for a in unbuilt.positional_args] == [a.name for a in add.positional_args]


def test_every_task_builds_its_arguments() -> None:
    """Built only when used, a bad help key would show only when its task runs: every task
    is built here (invoke raises for a help key that names no argument)."""
    from tally_tasks import ns
    from tally_tasks.tasks import task_contexts

    for context in task_contexts(ns):
        assert context.args is not None, context.name


def test_a_tasks_positional_arguments_are_invokes() -> None:
    """Worked out on first use (TallyTask), they are what invoke's Task gives."""
    from invoke import Task

    from tally_tasks import ns
    from tally_tasks.tasks import TallyTask

    for name in ns.task_names:
        ours = ns[name]
        assert isinstance(ours, TallyTask)
        theirs = Task(ours.body)
        assert list(ours.positional) == list(theirs.positional), name
    assert ns["session.add"].positional == ["name"]


def test_the_collection_inv_loads_shares_our_tasks() -> None:
    """invoke deep-copies the collection of a tasks.py (`ns`): the same names, the same
    task objects (a task is not changed once defined), a collection of its own."""
    import copy
    import types

    from invoke import Collection

    from tally_tasks import ns

    module = types.ModuleType("tasks")
    module.ns = ns  # type: ignore[attr-defined]
    loaded = Collection.from_module(module)
    assert loaded is not ns and loaded.task_names == ns.task_names
    for name in ns.task_names:
        assert loaded[name] is ns[name], name
    assert copy.deepcopy(ns["session.add"]) is ns["session.add"]


# passes of the collector while our modules are imported (tally_tasks.config imported,
# nothing frozen yet: their import is not over), and the collector's state at exit
GC_SEEN = """import atexit, gc, sys
_passes = []
def _seen(phase, info):
    if phase == "start" and "tally_tasks.config" in sys.modules and not gc.get_freeze_count():
        _passes.append(info["generation"])
gc.callbacks.append(_seen)
atexit.register(lambda: sys.stderr.write(
    f"gc: enabled={gc.isenabled()} frozen={gc.get_freeze_count() > 0} "
    f"passes={len(_passes)}\\n"))
"""


def _gc_seen(r: subprocess.CompletedProcess[str]) -> str:
    said = [ln for ln in r.stderr.splitlines() if ln.startswith("gc:")]
    assert len(said) == 1, (r.returncode, r.stderr)
    return said[0]


@pytest.mark.parametrize(
    ("args", "seen"),
    [
        (["inv", "session.list"], "enabled=True frozen=True passes=0"),
        (["tally-session", "list", "--host", ""], "enabled=True frozen=True passes=0"),
        (["tally-session", "list"], "enabled=False frozen=False passes=0"),  # quick.py's
    ],
    ids=["inv", "tally-session", "tally-session-quick"],
)
def test_the_collector_is_held_while_our_modules_are_imported(
    sample: Sample, tmp_path: Path, args: list[str], seen: str
) -> None:
    """No pass of the cyclic collector while the program's modules are imported; the task
    runs with it enabled again, what they made frozen (not walked again)."""
    (tmp_path / "sitecustomize.py").write_text(GC_SEEN)
    r = run_cli(args, sample.main, env={"PYTHONPATH": str(tmp_path)})
    assert r.returncode == 0, r.stderr
    assert _gc_seen(r) == f"gc: {seen}"


def test_a_projects_own_task_runs_with_the_collector(sample: Sample, tmp_path: Path) -> None:
    """A project's task added to our collection (README: project tasks as steps), run
    by `inv` itself: the collector is let go once our modules are imported."""
    (tmp_path / "sitecustomize.py").write_text(GC_SEEN)
    (sample.main / "tasks.py").write_text(
        "from invoke import task\nfrom tally_tasks import ns\n\n\n"
        "@task\ndef hi(c):\n    import gc\n    print(gc.isenabled())\n\n\nns.add_task(hi)\n"
    )
    r = run_cli(["inv", "hi"], sample.main, env={"PYTHONPATH": str(tmp_path)})
    assert (r.returncode, r.stdout) == (0, "True\n"), r.stderr
    assert _gc_seen(r) == "gc: enabled=True frozen=True passes=0"


def test_another_projects_inv_keeps_the_collector_as_it_is(
    tmp_path: Path, isolated_env: Path
) -> None:
    """`inv` with tasks not ours: the collector is never held (their task may run long)."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(GC_SEEN)
    project = tmp_path / "p"
    project.mkdir()
    (project / "tasks.py").write_text("from invoke import task\n\n@task\ndef hi(c):\n    pass\n")
    r = run_cli(["inv", "hi"], project, env={"PYTHONPATH": str(site)})
    assert r.returncode == 0, r.stderr
    assert _gc_seen(r) == "gc: enabled=True frozen=False passes=0"


def test_importing_the_collection_elsewhere_leaves_the_collector_alone() -> None:
    """pytest, a script: `ns` imported outside `inv` holds and freezes nothing."""
    r = python(
        "import gc\nfrom tally_tasks import ns\nprint(gc.isenabled(), gc.get_freeze_count())"
    )
    assert r.stdout == "True 0\n", r.stderr
