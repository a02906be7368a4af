"""The project's own Invoke tasks as steps (steps/project.py): in `add` (in order, with the
session's name, folder and variables; undone like a built-in step), in `remove` (before
the worktree goes), in the dry runs and in `doctor`; a name that is neither a step nor a
task is one error naming the key, before anything is made."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import libtmux
import pytest
from conftest import Sample, git, run_cli
from invoke import Collection, Context, Exit, task

from tally_tasks import sessions
from tally_tasks.errors import TallyError
from tally_tasks.operations import add as add_op
from tally_tasks.operations import doctor as doctor_op
from tally_tasks.operations import remove as remove_op
from tally_tasks.steps.project import ProjectTasks

BUILT = ["ports", "worktree", "links", "env"]


def recording(log: Path) -> ProjectTasks:
    """A project collection whose tasks write down how they were run."""

    def note(what: str, name: str | None) -> None:
        here = Path.cwd()
        with log.open("a") as f:
            f.write(
                json.dumps(
                    {
                        "task": what,
                        "name": name,
                        "cwd": str(here),
                        "linked": (here / "frontend" / "node_modules").is_symlink(),
                        "env": {k: v for k, v in os.environ.items() if k.startswith("TALLY_")},
                    }
                )
                + "\n"
            )

    @task
    def migrate(c: Context, name: str) -> None:
        note("migrate", name)
        c.run("pwd > migrated-here", hide=True, in_stream=False)  # c.run works in the worktree too

    @task
    def seed(c: Context) -> None:  # takes no name: given none
        note("db.seed", None)

    @task
    def drop(c: Context, name: str) -> None:
        note("db.drop", name)

    @task
    def broken(c: Context, name: str) -> None:
        note("broken", name)
        c.run("exit 3", hide=True, in_stream=False)

    @task
    def refuses(c: Context) -> None:
        raise Exit("the database is not running; start it first")

    db = Collection("db", seed, drop)
    ns = Collection(migrate, broken, refuses, db)
    return ProjectTasks(lambda: ns)


def ran(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


@pytest.fixture
def log(tmp_path: Path) -> Path:
    return tmp_path / "ran.jsonl"


def test_project_tasks_run_in_order_with_the_sessions_name_folder_and_variables(
    sample: Sample, srv: libtmux.Server, log: Path
) -> None:
    steps = ["ports", "worktree", "migrate", "links", "db.seed", "env"]
    project = sample.project(add_steps=steps)
    session = add_op.run(project, "feature/x", srv, tasks=recording(log))
    calls = ran(log)
    assert [c["task"] for c in calls] == ["migrate", "db.seed"]
    assert [c["name"] for c in calls] == ["feature/x", None]
    assert {c["cwd"] for c in calls} == {str(session.worktree)}
    assert [c["linked"] for c in calls] == [False, True]  # in order: links came between
    want = {"TALLY_SESSION": "feature/x"} | {
        f"TALLY_{p.upper()}_PORT": str(n) for p, n in session.ports.items()
    }
    assert calls[0]["env"] == want
    assert (session.worktree / "migrated-here").read_text().strip() == str(session.worktree)
    assert Path.cwd() != session.worktree and "TALLY_SESSION" not in os.environ  # restored


@pytest.mark.parametrize(
    "failing, says",
    [
        ("broken", "`exit 3` failed with status 3"),
        ("refuses", "the database is not running; start it first"),
    ],
    ids=["command-fails", "task-exits"],
)
def test_a_failing_project_task_undoes_the_add_with_the_projects_undo_task(
    sample: Sample, srv: libtmux.Server, log: Path, failing: str, says: str
) -> None:
    steps = [*BUILT, {"task": "migrate", "undo": "db.drop"}, failing]
    project = sample.project(add_steps=steps)
    with pytest.raises(TallyError) as e:
        add_op.run(project, "x", srv, tasks=recording(log))
    assert str(e.value) == (
        f"{failing} step failed: {says} (undone: db.drop, worktree, registry entry)"
    )
    worktree = sample.main.parent / "tally-x"
    drop = [c for c in ran(log) if c["task"] == "db.drop"]
    assert drop and drop[0]["cwd"] == str(worktree) and drop[0]["name"] == "x"  # before it went
    assert not worktree.exists()
    assert "x" not in sessions.load(project)
    assert "x" not in git(sample.main, "branch", "--format=%(refname:short)").split()


def test_a_failing_project_task_with_an_undo_has_its_undo_run_too(
    sample: Sample, srv: libtmux.Server, log: Path
) -> None:
    # half done when it failed (or was Ctrl-C'd): its undo takes away what is there
    steps = [*BUILT, {"task": "broken", "undo": "db.drop"}]
    project = sample.project(add_steps=steps)
    with pytest.raises(TallyError, match=r"\(undone: db.drop, worktree, registry entry\)"):
        add_op.run(project, "x", srv, tasks=recording(log))
    assert [c["task"] for c in ran(log)] == ["broken", "db.drop"]


@pytest.mark.parametrize(
    "key, steps, unknown",
    [
        ("add_steps", {"add_steps": [*BUILT, "migrate", "deploy"]}, "deploy"),
        ("add_steps", {"add_steps": [*BUILT, {"task": "migrate", "undo": "db.nuke"}]}, "db.nuke"),
        ("add_steps", {"add_steps": [*BUILT, "session.nope"]}, "session.nope"),
        ("remove_steps", {"remove_steps": ["db.dropp"]}, "db.dropp"),
    ],
    ids=["add-step", "undo-task", "dotted", "remove-step"],
)
def test_a_name_that_is_neither_a_step_nor_a_task_is_one_error_before_anything_is_made(
    sample: Sample, srv: libtmux.Server, log: Path, key: str, steps: dict[str, Any], unknown: str
) -> None:
    project = sample.project(**{"add_steps": BUILT, **steps})
    tasks = recording(log)
    run = (
        (lambda: add_op.run(project, "x", srv, tasks=tasks))
        if key == "add_steps"
        else (lambda: remove_op.run(project, "x", srv, tasks=tasks))
    )
    if key == "remove_steps":
        add_op.run(sample.project(add_steps=BUILT), "x", srv)
    before = sessions.load(project)
    with pytest.raises(TallyError) as e:
        run()
    message = str(e.value)
    assert f"tally.{key}" in message and repr(unknown) in message and "\n" not in message
    assert sessions.load(project) == before and ran(log) == []
    assert (sample.main.parent / "tally-x").exists() == (key == "remove_steps")


def test_without_the_projects_collection_a_task_name_is_the_same_error(
    sample: Sample, srv: libtmux.Server
) -> None:
    with pytest.raises(TallyError, match=r"tally\.add_steps names 'migrate'"):
        add_op.run(sample.project(add_steps=[*BUILT, "migrate"]), "x", srv)


def test_remove_steps_run_in_the_worktree_before_it_goes(
    sample: Sample, srv: libtmux.Server, log: Path
) -> None:
    project = sample.project(add_steps=BUILT, remove_steps=["db.drop", "db.seed"])
    tasks = recording(log)
    session = add_op.run(project, "x", srv, tasks=tasks)
    remove_op.run(project, "x", srv, tasks=tasks)
    calls = ran(log)
    assert [(c["task"], c["name"], c["cwd"]) for c in calls] == [
        ("db.drop", "x", str(session.worktree)),
        ("db.seed", None, str(session.worktree)),
    ]
    assert calls[0]["linked"]  # the worktree was whole when it ran
    assert not session.worktree.exists() and "x" not in sessions.load(project)


def test_a_failing_remove_step_stops_remove_unless_forced(
    sample: Sample, srv: libtmux.Server, log: Path
) -> None:
    project = sample.project(add_steps=BUILT, remove_steps=["broken"])
    tasks = recording(log)
    session = add_op.run(project, "x", srv, tasks=tasks)
    with pytest.raises(
        TallyError, match=r"broken step failed: `exit 3` failed with status 3; fix it"
    ):
        remove_op.run(project, "x", srv, tasks=tasks)
    assert session.worktree.is_dir() and "x" in sessions.load(project)
    remove_op.run(project, "x", srv, force=True, tasks=tasks)
    assert not session.worktree.exists() and "x" not in sessions.load(project)


def test_dry_runs_list_project_steps_and_change_nothing(
    sample: Sample, srv: libtmux.Server, log: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    steps = [*BUILT, "migrate", {"task": "db.seed", "undo": "db.drop"}]
    project = sample.project(add_steps=steps, remove_steps=["db.drop"])
    tasks = recording(log)
    assert add_op.plan(project, "x", srv, tasks=tasks)
    out = capsys.readouterr().out
    assert "· migrate      run project task migrate in the worktree\n" in out
    assert "· db.seed      run project task db.seed in the worktree (undo: db.drop)\n" in out
    assert out.index("· env") < out.index("· migrate") < out.index("· db.seed")
    assert ran(log) == [] and sessions.load(project) == {}
    add_op.run(sample.project(add_steps=BUILT), "x", srv)
    capsys.readouterr()
    assert remove_op.plan(project, "x", srv, False, False, tasks)
    out = capsys.readouterr().out
    assert "· db.drop      run project task db.drop in the worktree\n" in out
    assert out.index("· db.drop") < out.index("· worktree")
    assert ran(log) == []


def test_doctor_lists_project_steps_and_names_an_unknown_one(
    sample: Sample, srv: libtmux.Server, log: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tasks = recording(log)
    project = sample.project(
        add_steps=[*BUILT, {"task": "db.seed", "undo": "db.drop"}], remove_steps=["db.drop"]
    )
    add_op.run(project, "x", srv, tasks=tasks)
    capsys.readouterr()
    doctor_op.run(project, srv, "x", fix=False, tasks=tasks)
    out = capsys.readouterr().out
    assert (
        "steps        add: ports · worktree · links · env · db.seed (project task, undo: db.drop)"
        in out
    )
    assert "steps        remove: db.drop (project task)" in out
    wrong = sample.project(add_steps=[*BUILT, "db.sed"])
    report = doctor_op.run(wrong, srv, "x", fix=False, tasks=tasks)
    assert [p for p in report.problems if p.startswith("steps:")] == [
        "steps: config key tally.add_steps names 'db.sed', which is neither a built-in step "
        "(ports, worktree, links, env, claude_perms, tmux) nor a task of the project's Invoke "
        "collection (its tasks.py); fix the name, or add the task there"
    ]


# --- end to end: the project's tasks.py, as `inv` and `tally-session` load it -------------

PROJECT_TASKS = """\
from invoke import Collection, task

from tally_tasks import ns


@task
def migrate(c, name):
    c.run(f"echo {name} $TALLY_SESSION $TALLY_BACKEND_PORT > migrated")


@task
def drop(c, name):
    c.run(f"echo {name} >> {DROPPED!r}")


ns.add_task(migrate)
ns.add_collection(Collection("db", drop))
"""


@pytest.mark.parametrize("prog", ["inv", "tally-session"])
def test_the_projects_tasks_py_runs_inside_add_and_remove(
    sample: Sample, srv: libtmux.Server, tmp_path: Path, prog: str
) -> None:
    dropped = tmp_path / "dropped"
    (sample.main / "tasks.py").write_text(PROJECT_TASKS.replace("{DROPPED!r}", repr(str(dropped))))
    sample.write_config(add_steps=[*BUILT, "migrate"], remove_steps=["db.drop"])
    add = ["session.add", "x"] if prog == "inv" else ["add", "x"]
    r = run_cli([prog, *add], sample.main)
    assert r.returncode == 0, r.stderr
    worktree = sample.main.parent / "tally-x"
    port = json.loads((sample.main / ".tally-sessions").read_text())["x"]["backend_port"]
    assert (worktree / "migrated").read_text() == f"x x {port}\n"
    assert "✓ migrate      project task done" in r.stdout
    remove = ["session.remove", "x"] if prog == "inv" else ["remove", "x"]
    r = run_cli([prog, *remove, "--force"], sample.main)
    assert r.returncode == 0, r.stderr
    assert dropped.read_text() == "x\n" and not worktree.exists()


def test_a_task_of_tally_tasks_itself_is_no_project_step(sample: Sample) -> None:
    sample.write_config(add_steps=[*BUILT, "session.add"])
    r = run_cli(["inv", "session.add", "x"], sample.main)
    assert r.returncode == 1
    [line] = r.stderr.strip().splitlines()
    assert "tally.add_steps names 'session.add', a task of tally-tasks itself" in line
    assert not (sample.main / ".tally-sessions").exists() or "x" not in (
        json.loads((sample.main / ".tally-sessions").read_text())
    )


def test_inv_says_an_unknown_step_in_one_line(sample: Sample) -> None:
    sample.write_config(add_steps=[*BUILT, "migrate"])
    r = run_cli(["inv", "session.add", "x"], sample.main)
    assert r.returncode == 1
    [line] = r.stderr.strip().splitlines()
    assert "tally.add_steps names 'migrate'" in line
    assert not (sample.main.parent / "tally-x").exists()
