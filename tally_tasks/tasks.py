"""The `session` task collection: the command line. Thin tasks over the operations
(add, remove, resume, doctor) and the steps, errors turned into Exit."""

from __future__ import annotations

import functools
import inspect
import json as _json
import os
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from invoke import Collection, Context, Exit, Program, Task
from invoke import task as _task
from invoke.parser import ParserContext

from . import output, sessions
from . import tmux as tmux_
from .config import explain_file
from .errors import TallyError
from .repo import find_main, here, in_worktree
from .session import Project, find_project

if TYPE_CHECKING:  # imported by the tasks that use them: not by `list`
    from . import remote
    from .steps.project import ProjectTasks

F = TypeVar("F", bound=Callable[..., Any])


class TallyTask(Task):
    """A task whose flags never take ``-h``: that stays invoke's help (``--host`` is ``-o``),
    and whose positional arguments are worked out (from its signature) when first asked
    for, not when the module is imported: a command uses one task of the collection."""

    _positional: Any = None

    @property
    def positional(self) -> Any:
        if self._positional is None:
            self._positional = list(Task.fill_implicit_positionals(self, None))
        return self._positional

    @positional.setter
    def positional(self, value: Any) -> None:
        self._positional = value

    def fill_implicit_positionals(self, positional: Any) -> Any:
        return positional  # None: the property above works them out on first use

    def argspec(self, body: Callable[..., Any]) -> inspect.Signature:
        """invoke's, with ``host`` (before ``quiet``) for a `hosted` task: worked out
        when the task's arguments are, not for every task as the module is imported."""
        sig = super().argspec(body)
        if not getattr(body, "tally_hosted", False):
            return sig
        params = list(sig.parameters.values())
        at = next((i for i, p in enumerate(params) if p.name == "quiet"), len(params))
        host = inspect.Parameter("host", inspect.Parameter.POSITIONAL_OR_KEYWORD, default="")
        return sig.replace(parameters=[*params[:at], host, *params[at:]])

    def arg_opts(self, name: str, default: str, taken_names: set[str]) -> dict[str, Any]:
        # -o stays --host's whatever comes before it (--no-wait would take it)
        reserved = {"h"} if name == "host" else {"h", "o"}
        return super().arg_opts(name, default, taken_names | reserved)

    def __deepcopy__(self, memo: dict[int, Any]) -> TallyTask:
        """The task itself: invoke deep-copies the collection it loads from a tasks.py
        (`Collection.from_module`), every task with it, on every `inv` start (2 of its 2.3
        ms for this collection); a task is not changed once defined (its call count
        aside, which nothing here reads)."""
        return self


def task(*args: Any, **kwargs: Any) -> Any:
    return _task(*args, klass=TallyTask, **kwargs)


class TaskContext(ParserContext):
    """invoke's parser context of one task, its arguments built the first time they are
    used. invoke's parser makes one context per task of the collection, then copies them
    all (``copy.deepcopy``) before it reads the command line, though only the tasks named
    there are ever used: for this collection, 5.5 of the 8 ms its parse took."""

    _BUILT_LATER = frozenset(("args", "positional_args", "flags", "inverse_flags"))

    def __init__(
        self, name: str | None, aliases: Any, collection: Collection, ignore_unknown_help: Any
    ) -> None:
        self.name, self.aliases = name, aliases
        # the task is looked up then, too: ``collection[name]`` merges and copies the
        # collection's configuration for each lookup (1.5 ms for all the tasks of ours)
        self._pending: tuple[Collection, Any] | None = (collection, ignore_unknown_help)

    def __getattr__(self, attr: str) -> Any:  # only for what the instance does not have
        pending = self.__dict__.get("_pending")
        if pending is None or attr not in self._BUILT_LATER:
            raise AttributeError(attr)
        self._pending = None
        collection, ignore = pending
        task = collection[self.name]
        ParserContext.__init__(
            self, self.name, self.aliases, task.get_arguments(ignore_unknown_help=ignore)
        )
        return getattr(self, attr)

    def __deepcopy__(self, memo: dict[int, Any]) -> TaskContext:
        import copy

        if self._pending is not None:  # nothing built yet: nothing to copy but the names
            return TaskContext(self.name, copy.deepcopy(self.aliases, memo), *self._pending)
        new = object.__new__(type(self))
        memo[id(self)] = new
        new.__dict__.update(copy.deepcopy(self.__dict__, memo))
        return new

    def __repr__(self) -> str:
        if self._pending is None:
            return super().__repr__()
        return f"<parser/Context {self.name!r} (arguments built when used)>"


def task_contexts(collection: Collection, ignore_unknown_help: Any = None) -> list[ParserContext]:
    """`Collection.to_contexts`, each task's arguments built when used (`TaskContext`)."""
    return [
        TaskContext(primary, aliases, collection, ignore_unknown_help)
        for primary, aliases in collection.task_names.items()
    ]


class TallyCollection(Collection):
    """invoke's Collection whose parser contexts are `TaskContext`s (tally-session's; `inv`
    copies the collection it loads into a plain one: `startup.quick_inv` sees to it)."""

    def to_contexts(self, ignore_unknown_help: bool | None = None) -> list[ParserContext]:
        return task_contexts(self, ignore_unknown_help)


NAME_HELP = "session name (also a branch name), e.g. feature-auth; may be given positionally"
QUIET_HELP = "print only errors"


def boundary(fn: F) -> F:
    """Turn TallyError into one red line on stderr and exit status 1; apply --quiet."""

    @functools.wraps(fn)
    def wrapper(c: Context, *args: Any, **kwargs: Any) -> Any:
        output.set_quiet(bool(kwargs.get("quiet")))
        try:
            if any(kwargs.get(k) in ("-h", "--help") for k in ("name", "text")):
                # invoke hands a pending positional any word, even `add --help`
                _task_help(fn.__name__.rstrip("_").replace("_", "-"))
                return None
            return fn(c, *args, **kwargs)
        except (TallyError, OSError, UnicodeError, KeyboardInterrupt) as e:
            raise Exit(code=output.said(e)) from None

    return wrapper  # type: ignore[return-value]


# A program over this collection other than `inv` (tally-session) says so here.
_program: list[Program] = []


def use_program(program: Program) -> None:
    """`program` runs these tasks at the top level (not under `session.`)."""
    _program[:] = [program]


def _running() -> tuple[Program | None, str]:
    """The program running the tasks, and the prefix of their names in it."""
    if _program:
        return _program[0], ""
    from invoke.main import program

    return program, "session."


def _task_help(task_name: str) -> None:
    """Print the task's help as ``--help TASK`` would, from the program that is running."""
    running, prefix = _running()
    key = prefix + task_name
    try:
        running.print_task_help(key)  # type: ignore[union-attr]
    except (AttributeError, KeyError):  # a collection nested under another name
        raise TallyError(
            f"'--help' is not a session name; for help run: {output.program()} --help TASK"
        ) from None


def project_of(c: Context) -> Project:
    """The main repo around the current folder, with the `tally` settings."""
    return find_project(lambda main: tally_config(c, main))


def tally_config(c: Context, main: Path) -> Any:
    """The `tally` settings, from the main checkout's invoke.yaml.

    Run from a worktree, `inv` found the worktree's tasks.py and read the invoke.yaml
    beside it: the branch's committed copy, or none. The settings are the main
    checkout's (as `tally-session` reads them), so that layer is read again from there.
    """
    loaded = getattr(c.config, "_project_prefix", None)
    if loaded and Path(loaded).resolve() != main.resolve() and in_worktree(Path(loaded), main):
        config = c.config.clone()
        config.set_project_location(str(main))
        try:
            config.load_project()
        except Exception:  # what invoke says of a broken file is a traceback
            raise TallyError(explain_file(main) or f"cannot load {main}/invoke.yaml") from None
        return config.get("tally")
    return c.config.get("tally")


def _server(project: Project) -> Any:
    return tmux_.server(project.settings.tmux_socket)


HOST_HELP = "run it on this host from tally.hosts (over SSH)"


def _hosts(c: Context) -> dict[str, remote.Host]:
    from . import remote

    try:
        raw = tally_config(c, find_main(here())[0])
    except TallyError:  # outside any checkout: the invoke.yaml invoke found, if any
        raw = c.config.get("tally")
    return remote.hosts_from((raw or {}).get("hosts"))


def _on_host(c: Context, host: str, task_name: str, name: str = "", **flags: Any) -> None:
    """Run the same task on `host` (one implementation, two transports); keep its status."""
    from . import remote

    hosts = _hosts(c)
    if host == "auto" and "auto" not in hosts:
        if task_name != "add":
            raise TallyError(
                f"--host auto only places new sessions (add); name the host {task_name} acts on"
                f" ({', '.join(hosts) or 'none configured'})"
            )
        target = remote.least_busy(hosts)
        output.step("host", f"{target.name} (fewest sessions)")
    else:
        target = remote.pick(hosts, host)
    argv = [task_name] + (["--name", name] if name else [])
    for key, value in flags.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            argv.append(flag)
        elif value not in (False, None, ""):
            argv += [flag, str(value)]
    result = remote.run(target, argv, caller=output.program())
    if result.exited != 0:
        raise Exit(code=result.exited)


def hosted(*local_only: str) -> Callable[[F], F]:
    """The task can run on a host: it gains ``--host NAME``, which sends it there with its
    flags (one implementation, two transports); `local_only` flags cannot go along."""

    def wrap(fn: F) -> F:
        task_name = fn.__name__.rstrip("_").replace("_", "-")

        @functools.wraps(fn)
        def wrapper(c: Context, *args: Any, host: str = "", **kwargs: Any) -> Any:
            if not host:
                return fn(c, *args, **kwargs)
            for flag in local_only:
                if kwargs.get(flag):
                    raise TallyError(f"give --host NAME or --{flag.replace('_', '-')}, not both")
            _on_host(c, host, task_name, **kwargs)
            return None

        # invoke reads the flags from the signature: `TallyTask.argspec` adds --host
        wrapper.tally_hosted = True  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return wrap


def project_tasks(c: Context, project: Project) -> ProjectTasks:
    """The project's own tasks, for the steps that name one (loaded only then)."""
    from .steps.project import ProjectTasks

    return ProjectTasks(functools.partial(_collection, project.main), c.config)


def _collection(main: Path) -> Collection:
    """The project's collection: the one `inv` loaded (its tasks.py, which imports `ns` and
    may add tasks of its own); for tally-session, the main checkout's tasks.py."""
    running, _ = _running()
    if running is not None and not _program and running.collection is not None:
        return running.collection
    from invoke.exceptions import CollectionNotFound
    from invoke.loader import FilesystemLoader

    try:
        module, _parent = FilesystemLoader(start=str(main)).load()
    except CollectionNotFound:
        return Collection()
    return Collection.from_module(module)


@task(
    help={
        "name": NAME_HELP,
        "force": "overwrite existing copies of .env files",
        "dry_run": "print what would be done and change nothing",
        "no_wait": "do not wait for the windows' servers to answer",
        "host": HOST_HELP + "; auto: the host with the fewest sessions",
        "quiet": QUIET_HELP,
    }
)
@boundary
@hosted()
def add(
    c: Context,
    name: str,
    force: bool = False,
    dry_run: bool = False,
    no_wait: bool = False,
    quiet: bool = False,
) -> None:
    """Create a session: ports, worktree, links, env copies, Claude perms, tmux windows."""
    from .operations import add as add_

    project = project_of(c)
    srv, tasks = _server(project), project_tasks(c, project)
    if not add_.create(project, name, srv, force, tasks, dry_run=dry_run, wait=not no_wait):
        raise Exit(code=1)  # the dry run says the real add would refuse


@task(
    help={
        "name": NAME_HELP,
        "force": "also remove uncommitted work, a locked worktree and an unmerged branch "
        "(stashes stay: they belong to the repository)",
        "keep_branch": "keep the session's branch",
        "dry_run": "print what would be done and change nothing",
        "host": HOST_HELP,
        "quiet": QUIET_HELP,
    }
)
@boundary
@hosted()
def remove(
    c: Context,
    name: str,
    force: bool = False,
    keep_branch: bool = False,
    dry_run: bool = False,
    quiet: bool = False,
) -> None:
    """Remove a session (tmux, worktree, branch, ports); refuses to lose work without --force."""
    from .operations import remove as remove_

    project = project_of(c)
    srv, tasks = _server(project), project_tasks(c, project)
    if dry_run:
        if not remove_.plan(project, name, srv, force, keep_branch, tasks):
            raise Exit(code=1)  # as the real remove would
        return
    remove_.run(project, name, srv, force=force, keep_branch=keep_branch, tasks=tasks)


@task(
    help={
        "name": NAME_HELP,
        "rebase": "rebase the branch onto the main branch, then fast-forward main to it",
        "squash": "land the branch as one commit (--message, else its commit subjects)",
        "merge": "land the branch with a merge commit",
        "message": "the squash or merge commit's message",
        "keep": "keep the session (and its branch) after landing",
        "dry_run": "print what would land, commit by commit, and change nothing",
        "host": HOST_HELP,
        "quiet": QUIET_HELP,
    }
)
@boundary
@hosted()
def land(
    c: Context,
    name: str,
    rebase: bool = False,
    squash: bool = False,
    merge: bool = False,
    message: str = "",
    keep: bool = False,
    dry_run: bool = False,
    quiet: bool = False,
) -> None:
    """Land the session's branch in the main branch (rebase, squash or merge), then remove it."""
    from .operations import land as land_

    chosen = [m for m, on in (("rebase", rebase), ("squash", squash), ("merge", merge)) if on]
    if len(chosen) > 1:
        raise TallyError("give one of --rebase, --squash, --merge")
    project = project_of(c)
    method = chosen[0] if chosen else project.settings.land_method
    if dry_run:
        if not land_.plan(project, name, method, message, keep):
            raise Exit(code=1)  # as the real land would
        return
    tasks = project_tasks(c, project)
    land_.run(project, name, _server(project), method, message, keep, tasks)


@task(
    help={
        "merged": "sessions whose branch is merged into the main branch (squash and rebase "
        "merges too)",
        "gone": "sessions whose upstream branch was deleted (after git fetch --prune)",
        "dry_run": "print what would be removed and change nothing",
        "host": HOST_HELP,
        "quiet": QUIET_HELP,
    }
)
@boundary
@hosted()
def prune(
    c: Context, merged: bool = False, gone: bool = False, dry_run: bool = False, quiet: bool = False
) -> None:
    """Remove finished sessions: branch merged, or upstream gone (neither flag: both)."""
    from .operations import prune as prune_

    project = project_of(c)
    both = not (merged or gone)
    srv, tasks = _server(project), project_tasks(c, project)
    prune_.run(project, srv, merged or both, gone or both, dry_run, tasks)


@task(
    help={
        "name": NAME_HELP,
        "draft": "open the pull request as a draft",
        "host": HOST_HELP,
        "quiet": QUIET_HELP,
    }
)
@boundary
@hosted()
def pr(c: Context, name: str, draft: bool = False, quiet: bool = False) -> None:
    """Push the session's branch and open a pull request (with gh, when it is installed)."""
    from . import forge

    project = project_of(c)
    forge.pr(project, sessions.get(project, name), draft)


@task(
    help={
        "name": "resume only this session (default: all)",
        "no_wait": "do not wait for the windows' servers to answer",
        "host": HOST_HELP,
        "quiet": QUIET_HELP,
    }
)
@boundary
@hosted()
def resume(c: Context, name: str = "", no_wait: bool = False, quiet: bool = False) -> None:
    """Restart the tmux sessions of every registered session (or one) after a reboot."""
    from .operations import live
    from .operations import resume as resume_

    project = project_of(c)
    srv = _server(project)
    started = resume_.run(project, srv, name or None)
    if no_wait or not started:
        return
    found = live.ready_many(project, [sessions.get(project, n) for n in started], srv)
    bad = {n: live.problems(r) for n, r in found.items() if live.problems(r)}
    if bad:
        raise TallyError(
            f"{len(bad)} session(s) started with problems: "
            + "; ".join(f"{n} ({p})" for n, p in bad.items())
        )


@task(
    name="list",
    help={
        "json": "print a JSON list (with the git state unless --brief)",
        "git": "add the git state: commits ahead/behind the main branch, whether it is merged "
        "(squash and rebase merges too), uncommitted changes",
        "brief": "with --json: leave out the git state (fastest)",
        "host": HOST_HELP,
        "all_hosts": "this machine's sessions and every host's, in one table (HOST column)",
    },
)
@boundary
@hosted("all_hosts")
def list_(
    c: Context, json: bool = False, git: bool = False, brief: bool = False, all_hosts: bool = False
) -> None:
    """List sessions: name, branch, running, ports, age, worktree (--git: ahead/behind, dirty)."""
    if all_hosts:
        _list_all_hosts(c, json)
        return
    from . import listing  # here: add and remove need none of its status and live state

    listing.show(project_of(c), json=json, git=git, brief=brief)


def _list_all_hosts(c: Context, as_json: bool) -> None:
    from . import listing, remote, status

    rows: list[dict[str, Any]] = []
    unreachable: dict[str, str] = {}
    try:
        project = project_of(c)
        rows = [{"host": "local", **r} for r in status.rows(project, _server(project), False)]
    except TallyError as e:
        unreachable["local"] = str(e)
    for host, answer in remote.all_sessions(_hosts(c)).items():
        if isinstance(answer, str):
            unreachable[host] = answer
        else:
            rows += [{"host": host, **r} for r in answer]
    if as_json:
        output.data(_json.dumps({"sessions": rows, "unreachable": unreachable}, indent=2))
        return
    if rows:
        output.table(listing.table(rows, False, host_column=True))
    elif not unreachable:
        output.info("no sessions here or on any host")
    for host, why in unreachable.items():
        output.warn(host, "unreachable: " + why if host != "local" else why)


@task(
    help={
        "name": "check only this session (default: all, and the environment)",
        "fix": "repair what is safe: links, copies, tmux, entries whose worktree is gone",
        "host": HOST_HELP,
        "quiet": QUIET_HELP,
    }
)
@boundary
@hosted()
def doctor(c: Context, name: str = "", fix: bool = False, quiet: bool = False) -> None:
    """Check sessions and tools; --fix mends links, copies, tmux and stale entries."""
    from .operations import doctor as doctor_
    from .steps.base import silently

    project = project_of(c)
    srv, tasks = _server(project), project_tasks(c, project)
    report = doctor_.run(project, srv, name or None, fix, tasks)
    if fix and report.fixed:
        # check again what --fix left; a session it dropped is not there to check
        again = name if not name or name in sessions.load(project) else None
        recheck = silently(lambda: doctor_.run(project, srv, again, False, tasks)).problems
        remaining = (
            recheck
            if not name or again
            else [p for p in recheck if p.startswith(("tools:", "activate:", "tmux:", "steps:"))]
        )
    else:
        remaining = report.problems
    if remaining:
        if output.is_quiet():  # the warnings were not shown: the errors must name them
            for problem in remaining:
                output.error(problem)
        mend = (
            f"; --fix mends {report.fixable} of them: "
            + output.command(
                "doctor", None, *(["--name", shlex.quote(name)] if name else []), "--fix"
            )
            if report.fixable and not fix
            else ""
        )
        output.error(
            f"{len(remaining)} problem(s) found"
            + (f", {len(report.fixed)} fixed" if report.fixed else "")
            + mend
        )
        raise Exit(code=1)
    said = [f"{len(report.fixed)} fixed"] if report.fixed else []
    said += [f"{len(report.notes)} note(s) above"] if report.notes else []
    output.info("all good" + (f" ({', '.join(said)})" if said else ""))


@task(help={"name": NAME_HELP, "host": HOST_HELP})
@boundary
def attach(c: Context, name: str, host: str = "") -> None:
    """Attach to the session's tmux session (switch to it when already inside tmux)."""
    if host:
        from . import remote

        # the host's own attach: its tmux socket, its checks, over `ssh -t`
        argv = remote.attach_argv(remote.pick(_hosts(c), host), name, output.program())
        if not (os.isatty(0) and os.isatty(1)):
            raise TallyError("not a terminal; run: " + " ".join(shlex.quote(a) for a in argv))
        os.execvp(argv[0], argv)
    project = project_of(c)
    session = sessions.get(project, name)
    srv = _server(project)
    if not tmux_.exists(srv, session.tmux_name):
        raise TallyError(
            f"tmux session {session.tmux_name} is not running; start it with: "
            + output.command("resume", name)
        )
    tmux_.attach(project.settings.tmux_socket, session.tmux_name)


@task(
    help={
        "name": NAME_HELP,
        "host": "the host the session runs on (from tally.hosts)",
        "offset": "add this to each local port (when the same ports are taken here)",
    }
)
@boundary
def forward(c: Context, name: str, host: str = "", offset: int = 0) -> None:
    """Forward a remote session's ports to localhost until Ctrl-C."""
    from . import remote

    if not host:
        raise TallyError("forward needs --host: a session on this machine is already on localhost")
    target = remote.pick(_hosts(c), host)
    row = remote.find_session(target, name)
    ports = {k[:-5]: v for k, v in row.items() if k.endswith("_port")}
    remote.forward(target, ports, offset)


@task(
    name="open",
    help={
        "name": NAME_HELP,
        "port": "which port's URL (default: frontend, else the first)",
        "browser": "open it with the platform's opener instead of printing it",
    },
)
@boundary
def open_(c: Context, name: str, port: str = "", browser: bool = False) -> None:
    """Print (or open in a browser) the session's frontend URL."""
    project = project_of(c)
    url = sessions.get(project, name).url(port)
    if browser:
        import webbrowser

        if not webbrowser.open(url):
            raise TallyError(f"no browser opener found; open {url} yourself")
    output.data(url)


@task(help={"all_hosts": "every configured host's sessions too (asked in the background)"})
@boundary
def dashboard(c: Context, all_hosts: bool = False) -> None:
    """A live screen of every session: watch, switch, add, send, restart, remove (q quits)."""
    from . import board

    if not (os.isatty(0) and os.isatty(1)):
        raise TallyError(
            "the dashboard needs a terminal; for a listing run: " + output.command("list")
        )
    try:
        project: Project | None = project_of(c)
    except TallyError:
        if not all_hosts:
            raise
        project = None  # the hosts' sessions can still be watched
    hosts = _hosts(c) if all_hosts else {}
    srv = tmux_.server(project.settings.tmux_socket if project else "")
    rows = board.Board(project, srv, tuple(hosts))
    warm = rows.warm()  # git and tmux answer while Textual loads
    from . import dashboard as dashboard_  # Textual: only this command pays for it

    dashboard_.run(rows, hosts, warm, project_tasks(c, project) if project else None)


# --- the steps, each on its own ---------------------------------------------------------

STEP_HELP = {"name": NAME_HELP, "host": HOST_HELP, "quiet": QUIET_HELP}


def _step(c: Context, key: str, name: str, **options: Any) -> None:
    """Run one built-in step on a session (the one opening a session makes its entry)."""
    from .steps import builtin
    from .steps.base import Context as StepContext

    project = project_of(c)
    step = builtin[key]
    session = project.new_session(name) if step.opens else sessions.get(project, name)
    step.run(StepContext(project, session, **options))


@task(help=STEP_HELP)
@boundary
@hosted()
def ports(c: Context, name: str, quiet: bool = False) -> None:
    """Give a session its ports (creates its registry entry)."""
    _step(c, "ports", name)


@task(help=STEP_HELP)
@boundary
@hosted()
def worktree(c: Context, name: str, quiet: bool = False) -> None:
    """Create the session's worktree and branch if missing."""
    _step(c, "worktree", name)


@task(
    aliases=["relink"],
    help={
        **STEP_HELP,
        "refresh": "build again the hard-linked, reflinked and copied trees that lack what "
        "main's has gained (never one the session changed, unless --force)",
        "force": "with --refresh: also rebuild trees the session changed (their changes go)",
        "dry_run": "print what would be done (with --refresh: what would be rebuilt)",
    },
)
@boundary
@hosted()
def links(
    c: Context,
    name: str,
    refresh: bool = False,
    force: bool = False,
    dry_run: bool = False,
    quiet: bool = False,
) -> None:
    """(Re)make the links to the main checkout's shared files (node_modules, db)."""
    if force and not refresh:
        raise TallyError("--force goes with --refresh (it rebuilds trees the session changed)")
    if dry_run:
        from .steps import links as links_step
        from .steps.base import Context as StepContext
        from .steps.base import plan_line

        project = project_of(c)
        ctx = StepContext(project, sessions.get(project, name), refresh=refresh, force=force)
        for line in links_step.plan(ctx):
            plan_line("links", line)
        return
    _step(c, "links", name, refresh=refresh, force=force)


@task(help={**STEP_HELP, "force": "overwrite existing copies"})
@boundary
@hosted()
def env(c: Context, name: str, force: bool = False, quiet: bool = False) -> None:
    """Copy the private files (.env) from the main checkout if missing."""
    _step(c, "env", name, force=force)


@task(help=STEP_HELP)
@boundary
@hosted()
def claude_perms(c: Context, name: str, quiet: bool = False) -> None:
    """Give the worktree the main checkout's Claude Code approvals and trust."""
    _step(c, "claude_perms", name)


@task(
    name="tmux",
    help={**STEP_HELP, "no_wait": "do not wait for the windows' servers to answer"},
)
@boundary
@hosted()
def tmux(c: Context, name: str, no_wait: bool = False, quiet: bool = False) -> None:
    """Start the session's tmux windows, or restart the missing ones and those that died."""
    # the session ran before (add started it): windows come back with their resume commands
    _step(c, "tmux", name, resume=True)
    if not no_wait:
        _wait(c, name)


def _wait(c: Context, name: str, windows: list[str] | None = None) -> None:
    """Readiness lines for the session's windows; their problems are the command's error."""
    from .operations import live

    project = project_of(c)
    live.wait(project, sessions.get(project, name), _server(project), windows)


@task(
    help={
        "name": NAME_HELP,
        "window": "only this window (default: every window)",
        "no_wait": "do not wait for the servers to answer",
        "host": HOST_HELP,
        "quiet": QUIET_HELP,
    }
)
@boundary
@hosted()
def restart(
    c: Context, name: str, window: str = "", no_wait: bool = False, quiet: bool = False
) -> None:
    """Restart a session's window programs (a live one is stopped first), or one window's."""
    from .operations import live

    project = project_of(c)
    session = sessions.get(project, name)
    done = live.restart_windows(project, session, _server(project), window or None)
    if done and not no_wait:
        _wait(c, name, done)


@task(
    help={
        "name": NAME_HELP,
        "text": "the line to type (a prompt, or yes to a permission question); may be given "
        "positionally after the name",
        "window": "type it into this window (default: the agent's)",
        "host": HOST_HELP,
        "quiet": QUIET_HELP,
    }
)
@boundary
@hosted()
def send(c: Context, name: str, text: str, window: str = "", quiet: bool = False) -> None:
    """Type a line of text and Enter into the session's agent window (or another window)."""
    from .operations import live

    project = project_of(c)
    session = sessions.get(project, name)
    typed = live.send(project, session, _server(project), text, window or None)
    output.step("send", f"{name}: typed into {typed}")


@task(name="next", help={"quiet": QUIET_HELP})
@boundary
def next_(c: Context, quiet: bool = False) -> None:
    """Go to the session whose agent has waited longest for you."""
    from .operations import live

    project = project_of(c)
    session = live.next_waiting(project, _server(project))
    if session is None:
        output.info("no agent is waiting for you")
        return
    output.step("next", f"{session.name}: its agent waits")
    live.go(project, session)


@task(help={"quiet": QUIET_HELP})
@boundary
def claude_prune(c: Context, quiet: bool = False) -> None:
    """Drop ~/.claude.json entries of worktrees that no longer exist."""
    from . import claude

    project = project_of(c)
    config = claude.config_path(project.settings.claude_config)
    dropped = claude.prune(
        config, project.worktrees_dir, f"{project.name}-", project.settings.claude_lock_stale
    )
    for key in dropped:
        output.step("claude", f"dropped {key}")
    if not dropped:
        output.step("claude", "nothing to prune")


session = Collection(
    "session",
    add,
    remove,
    land,
    prune,
    pr,
    resume,
    list_,
    doctor,
    attach,
    open_,
    forward,
    dashboard,
    ports,
    worktree,
    links,
    env,
    claude_perms,
    tmux,
    claude_prune,
    restart,
    send,
    next_,
)
