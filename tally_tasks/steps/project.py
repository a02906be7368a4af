"""Steps that are the project's own Invoke tasks (`migrate`, `db.seed`), and which step
each entry of `tally.add_steps` / `tally.remove_steps` names (`for_add`, `for_remove`).

A task runs as part of the session: its name as the task's `name` argument (when the task
takes one), the `TALLY_*` variables in the environment, the worktree as working folder.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .. import output
from ..config import StepSpec
from ..errors import TallyError
from ..session import Project, Session
from . import builtin
from .base import FINE, Checked, Context, Made, Report, Step

if TYPE_CHECKING:
    from invoke import Collection, Config


@dataclass
class ProjectTasks:
    """The project's own Invoke collection (loaded only when a step names a task of it)
    and the config its tasks run with."""

    load: Callable[[], Collection]
    config: Config | None = None
    _loaded: list[Collection] = field(default_factory=list)

    def collection(self) -> Collection:
        if not self._loaded:
            self._loaded.append(self.load())
        return self._loaded[0]

    def find(self, dotted: str) -> Any:
        """The task named `dotted` (``db.seed``; ``db_seed`` as ``db-seed``), or None."""
        try:
            return self.collection()[dotted]
        except (KeyError, ValueError):
            return None

    def call(self, dotted: str, session: Session) -> None:
        """Run the task in the session's worktree, with its variables; its failure (a
        command that failed, an Exit, a TallyError) is one TallyError."""
        from invoke import Context as InvokeContext
        from invoke import Exit, Failure

        task = self.find(dotted)
        if task is None:
            raise TallyError(f"the project's tasks have no {dotted!r} any more")
        kwargs = {"name": session.name} if "name" in inspect.signature(task.body).parameters else {}
        c = InvokeContext(config=self.config.clone() if self.config is not None else None)
        try:
            with _inside(session):
                task(c, **kwargs)
        except Failure as e:
            raise TallyError(f"`{e.result.command}` failed with status {e.result.exited}") from None
        except Exit as e:
            raise TallyError(e.message or f"it exited with status {e.code}") from None


@contextmanager
def _inside(session: Session) -> Iterator[None]:
    """The worktree as working folder and the TALLY_* variables, for as long as it runs."""
    saved = {k: os.environ.get(k) for k in session.env()}
    here = os.getcwd()
    os.environ.update(session.env())
    os.chdir(session.worktree)
    try:
        yield
    finally:
        os.chdir(here)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@dataclass
class TaskStep:
    """A task of the project's collection as a step (`undo`: the task undoing it)."""

    task: str
    undo_task: str
    tasks: ProjectTasks
    required = False
    opens = False

    @property
    def name(self) -> str:
        return self.task

    def hold(self, ctx: Context) -> Made | None:
        """Its undo task runs also when the task itself was cut short."""
        return Made(self.undo_task) if self.undo_task else None

    def run(self, ctx: Context) -> Made | None:
        _require_dir(ctx.session)
        self.tasks.call(self.task, ctx.session)
        output.step(self.task, "project task done")
        return self.hold(ctx)

    def undo(self, ctx: Context, made: Made) -> None:
        if ctx.session.worktree.is_dir():  # never in the main checkout instead
            self.tasks.call(self.undo_task, ctx.session)

    def plan(self, ctx: Context) -> list[str]:
        undo = f" (undo: {self.undo_task})" if self.undo_task else ""
        return [f"run project task {self.task} in the worktree{undo}"]

    def check(self, ctx: Context, report: Report) -> Checked:
        return FINE  # what a task did is the project's to know; `doctor` checks it exists

    def fix(self, ctx: Context, report: Report, mend: tuple[str, ...]) -> None:
        pass


def _require_dir(session: Session) -> None:
    if not session.worktree.is_dir():
        raise TallyError(f"worktree {session.worktree} is gone; project tasks run inside it")


def resolve(
    specs: Sequence[StepSpec], key: str, tasks: ProjectTasks | None, builtins: bool = True
) -> list[Step]:
    """The step each entry names: a built-in one (when `builtins`), else a task of the
    project's collection; a name that is neither is one error naming the key."""
    found: list[Step] = []
    for spec in specs:
        if builtins and spec.task in builtin:
            if spec.undo:
                raise TallyError(
                    f"config key tally.{key}: {spec.task} is a built-in step, it has its own "
                    "undo; give `undo` to project tasks only"
                )
            found.append(builtin[spec.task])
            continue
        if tasks is None:
            raise TallyError(_unknown(key, spec.task, builtins))
        for dotted in (spec.task, spec.undo):
            if not dotted:
                continue
            found_task = tasks.find(dotted)
            if found_task is None:
                raise TallyError(_unknown(key, dotted, builtins))
            if getattr(found_task.body, "__module__", "").startswith("tally_tasks."):
                raise TallyError(  # `session.add` inside add would never end
                    f"config key tally.{key} names {dotted!r}, a task of tally-tasks itself; "
                    "name the project's own tasks there"
                )
        found.append(TaskStep(spec.task, spec.undo, tasks))
    return found


def _unknown(key: str, dotted: str, builtins: bool) -> str:
    what = "neither a built-in step (" + ", ".join(builtin) + ") nor" if builtins else "not"
    return (
        f"config key tally.{key} names {dotted!r}, which is {what} a task of the project's "
        "Invoke collection (its tasks.py); fix the name, or add the task there"
    )


def for_add(project: Project, tasks: ProjectTasks | None) -> list[tuple[str, Step]]:
    """(configured name, step) for each entry of `tally.add_steps`, checked whole before
    anything is made: every name known, the required steps there, the opening one first."""
    specs = project.settings.add_steps
    chosen = resolve(specs, "add_steps", tasks)
    names = [spec.task for spec in specs]
    for key, step in builtin.items():
        if step.required and step not in chosen:
            raise TallyError(f"tally.add_steps must include {key!r} (it has {names})")
        if step.opens and chosen[0] is not step:
            raise TallyError(f"tally.add_steps must start with {key!r} (it has {names})")
    return list(zip(names, chosen, strict=True))


def for_remove(project: Project, tasks: ProjectTasks | None) -> list[Step]:
    """The project tasks of `tally.remove_steps` (checked before anything is taken away)."""
    return resolve(project.settings.remove_steps, "remove_steps", tasks, builtins=False)
