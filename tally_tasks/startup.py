"""Start-up and exit of the programs: what runs before invoke is imported, and after.

``invoke.context`` imports ``unittest.mock`` for `MockContext`, which no task run makes;
that import is a third of invoke's (asyncio and ssl come with it). `defer_mock` lets
invoke take a stand-in for ``Mock`` instead: the real module is imported the first
time one is made. `tally-session` calls it first thing (`main`); for `inv`, whose own
script imports invoke before any of our code, ``tally_tasks_startup.pth`` (installed
beside the package, run by Python's `site` at start-up) calls it when the program is
`inv`. Only ``sys``, ``os``, ``types`` and ``gc`` are imported here (and ``typing``, which
invoke imports anyway, with ``contextlib`` and ``collections.abc``).

``invoke.util`` imports invoke's vendored PyYAML (an eighth of invoke's import: its
reader's and resolver's expressions are compiled as it is imported) for one use,
`Config` parsing each config file with ``yaml.safe_load``. `defer_yaml` puts a stand-in
in its place: a checkout's own ``invoke.yaml`` whose parse is kept (tally_tasks.yamlcache:
in the checkout's git folder, with the file's whole text) is read without it, when the
tasks loaded are ours (``tally_tasks.tasks`` imported: `inv` in another project of this
environment keeps nothing in its repository); any other file, a changed one, or any
other name asked of it imports the real module. `defer` does both, for `inv` (the .pth
file) and `tally-session` (`main`).

`collector_held` holds Python's cyclic garbage collector while the program's modules are
imported (our collection's, when `inv` asks for ``tally_tasks.ns``; `tally-session`'s, in
`main`) and lets it go once they are, everything made until then frozen: no task (ours, or
a project's own added to our collection) runs with it held, and `inv` without our
collection never holds it.

`quick_exit` ends the process once the command is done, its output flushed, its threads
and exit handlers run, skipping the interpreter's teardown of every module (a fifth of
a short command's time): `main` (`tally-session`) when its Program is done, and
`QuickExecutor` (set on the Program of invoke's own script by `quick_inv`) when `inv` has
run every task it was given, which is the last thing invoke's script does.
"""

from __future__ import annotations

import contextlib
import gc
import os
import sys
import types
from collections.abc import Iterator
from typing import Any

_MOCK = "unittest.mock"
_YAML = "invoke.vendor.yaml"


def _real_mock(*args: Any, **kwargs: Any) -> Any:
    """``unittest.mock.Mock``, imported on the first call (a MockContext being made)."""
    from unittest import mock

    context = sys.modules.get("invoke.context")
    if context is not None and getattr(context, "Mock", None) is _real_mock:
        context.Mock = mock.Mock  # type: ignore[attr-defined]
    return mock.Mock(*args, **kwargs)


class _StandIn(types.ModuleType):
    """``unittest.mock`` until someone takes a name from it.

    The first to ask (invoke.context: ``from unittest.mock import Mock``) gets
    `_real_mock`, and the stand-in leaves ``sys.modules``: every later import gets the
    real module. Any other name is answered from the real module.
    """

    def __getattr__(self, name: str) -> Any:
        if name == "__path__":  # the import system asks whether it is a package: no
            raise AttributeError(name)
        first = sys.modules.get(_MOCK) is self
        if first:
            del sys.modules[_MOCK]
        if name == "Mock" and first:
            return _real_mock
        from unittest import mock

        return getattr(mock, name)


class _YamlStandIn(types.ModuleType):
    """``invoke.vendor.yaml`` until more than a kept parse is asked of it."""

    def safe_load(self, stream: Any) -> Any:
        if "tally_tasks.tasks" not in sys.modules:  # another project's: not ours to keep
            return _real_yaml().safe_load(stream)
        from .yamlcache import safe_load

        return safe_load(stream, _real_yaml)

    def __getattr__(self, name: str) -> Any:
        if name == "__path__":  # the import system asks whether it is a package: no
            raise AttributeError(name)
        return getattr(_real_yaml(), name)


_yaml: list[Any] = []  # the real module, once imported


def _real_yaml() -> Any:
    """invoke's vendored PyYAML (PyYAML itself where a packager took it out of invoke, as
    ``invoke.util`` falls back to), imported once; the stand-in leaves ``sys.modules``."""
    if not _yaml:
        if isinstance(sys.modules.get(_YAML), _YamlStandIn):
            del sys.modules[_YAML]
        import importlib

        try:
            _yaml.append(importlib.import_module(_YAML))
        except ImportError:
            _yaml.append(importlib.import_module("yaml"))
    return _yaml[0]


def defer() -> None:
    """`defer_mock` and `defer_yaml`: what `inv` and `tally-session` do before invoke is
    imported."""
    defer_mock()
    defer_yaml()


def defer_yaml() -> None:
    """Put the stand-in for invoke's PyYAML in place, unless invoke (or its PyYAML) is
    imported already."""
    if _YAML not in sys.modules and "invoke.util" not in sys.modules:
        sys.modules[_YAML] = _YamlStandIn(_YAML)


def defer_mock() -> None:
    """Put the stand-in for ``unittest.mock`` in place, unless something has imported the
    real one or invoke already (then there is nothing left to save)."""
    if _MOCK not in sys.modules and "invoke.context" not in sys.modules:
        sys.modules[_MOCK] = _StandIn(_MOCK)


@contextlib.contextmanager
def collector_held(hold: bool = True) -> Iterator[None]:
    """Python's cyclic garbage collector held while this program's modules are imported:
    it finds nothing to free among them (modules, classes and functions live as long as
    the process), yet it walked them all, again and again as they grew (`inv
    session.list`: 9 of its 26 passes came after invoke had loaded, about 2 ms). On the
    way out it goes again, what was made until then frozen (``gc.freeze``: kept for good,
    not walked by its later passes). `hold` False, or a collector off already: nothing."""
    held = hold and gc.isenabled()
    if held:
        gc.disable()
    try:
        yield
    finally:
        if held:
            gc.freeze()
            gc.enable()


def main() -> None:
    """`tally-session`: `defer`; `list` without invoke when it can (tally_tasks.quick),
    else the program (tally_tasks.cli); then `quick_exit`."""
    with collector_held():  # until the program is imported (a quick `list` ends inside)
        defer()
        from .quick import run as quickly

        code = quickly(sys.argv)
        if code is not None:
            quick_exit(code)
        from .cli import main as run

    try:
        run()
    except SystemExit as e:
        quick_exit(exit_code(e))
    quick_exit(0)


def quick_inv() -> None:
    """`inv` (invoke's script, whose Program is ``invoke.main.program``) runs its tasks with
    `QuickExecutor`, unless it was given an executor of its own (invoke reads a
    collection's ``tasks.executor_class`` only per task, too late for its Program), and
    parses the command line against contexts whose arguments are built when used
    (`tasks.task_contexts`: invoke copies the collection it loads into a plain
    `Collection`, so our `to_contexts` is not the one its Program would call)."""
    main = sys.modules.get("invoke.main")
    program = getattr(main, "program", None)
    if program is None:
        return
    from invoke import Executor

    if program.executor_class is Executor:
        program.executor_class = QuickExecutor
    if callable(getattr(program, "_make_parser", None)):
        program._make_parser = lambda: _lazy_parser(program)


def _lazy_parser(program: Any) -> Any:
    """What ``Program._make_parser`` makes, with `tasks.task_contexts`."""
    from invoke.parser import Parser

    from .tasks import task_contexts

    ignore = program.config.tasks.ignore_unknown_help
    return Parser(
        initial=program.initial_context, contexts=task_contexts(program.collection, ignore)
    )


class QuickExecutor:
    """invoke's Executor; `quick_exit` once it has run every task, when the process is
    invoke's own script (`inv`), which has nothing left to do then. A Program run
    otherwise (inside a test, another program) returns as it would."""

    def __init__(self, collection: Any, config: Any, core: Any) -> None:
        from invoke import Executor

        self._executor = Executor(collection, config, core)

    def execute(self, *tasks: Any) -> Any:
        results = self._executor.execute(*tasks)
        main_file = getattr(sys.modules.get("__main__"), "__file__", None) or ""
        if os.path.basename(main_file) in ("inv", "invoke") and main_file == sys.argv[0]:
            quick_exit(0)
        return results


def quick_exit(code: int) -> None:
    """End the process with `code` as Python would at exit (threads joined, exit handlers
    run, output flushed), without tearing down every module first."""
    import atexit

    threading = sys.modules.get("threading")
    shutdown = getattr(threading, "_shutdown", None)
    run_exitfuncs = getattr(atexit, "_run_exitfuncs", None)
    if run_exitfuncs is None or (threading is not None and shutdown is None):
        sys.exit(code)  # not CPython: the ordinary exit
    if shutdown is not None:
        shutdown()  # joins non-daemon threads, as the interpreter does first
    run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            code = code or 120  # what Python exits with when it cannot flush stdout
    os._exit(code)


def exit_code(e: SystemExit) -> int:
    """The status `sys.exit(e.code)` would end with (a message is printed, as it would)."""
    if e.code is None:
        return 0
    if isinstance(e.code, int):
        return e.code
    print(e.code, file=sys.stderr)
    return 1
