"""`session.dashboard`: Textual's pilot against real git and a real tmux server, and one
real run of `tally-session dashboard` in an 80×24 tmux window."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
import webbrowser
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import libtmux
import pytest
import test_remote
from conftest import VENV_BIN, Sample, git, imported_by, pane, poll, run_cli, silent_server
from invoke import Collection, Config, Context, task
from test_remote import SSHD, FakeHost
from textual.pilot import Pilot
from textual.widgets import Input

from tally_tasks import board, panes, ports, remote
from tally_tasks.dashboard import Ask, Confirm, Dashboard, Operation, Sessions
from tally_tasks.operations import add as add_op
from tally_tasks.ports import is_free
from tally_tasks.steps.project import ProjectTasks

S = TypeVar("S")


def drive(app: Dashboard, script: Callable[[Pilot[None]], Awaitable[None]]) -> None:
    """Run `app` headless at 80×24 and let `script` press its keys."""

    async def main() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await script(pilot)

    asyncio.run(main())


async def until(pilot: Pilot[None], fn: Callable[[], Any], timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {fn}")
        await pilot.pause(0.05)


async def asked(pilot: Pilot[None], app: Dashboard, timeout: float = 15.0) -> Ask:
    """The question on screen, once its answer box has the keys (typing before is lost)."""

    def ready() -> Ask | None:
        screen = app.screen
        if not isinstance(screen, Ask):
            return None
        boxes = screen.query(Input)  # none yet while the screen is being put together
        return screen if boxes and boxes.first().has_focus else None

    ask: Ask = await until(pilot, ready, timeout)
    return ask


async def on_top(pilot: Pilot[None], app: Dashboard, kind: type[S], timeout: float = 15.0) -> S:
    """The screen of `kind` once it is on top."""
    screen: S = await until(pilot, lambda: isinstance(app.screen, kind) and app.screen, timeout)
    return screen


async def finished(pilot: Pilot[None], app: Dashboard, timeout: float = 30.0) -> Operation:
    """The operation's screen once it says it is done."""
    op = await on_top(pilot, app, Operation)
    await until(pilot, lambda: op.done, timeout)
    return op


async def type_text(pilot: Pilot[None], text: str) -> None:
    await pilot.press(*text)


def drawn(app: Dashboard) -> list[list[str]]:
    """Each row's cells as drawn, in the table's order."""
    t = app.query_one(Sessions)
    return [[c.plain for c in t.get_row_at(i)] for i in range(t.row_count)]


def table(app: Dashboard) -> dict[str, list[str]]:
    """NAME -> the row's cells as drawn, in the table's order."""
    return {r[0]: r for r in drawn(app)}


def on(app: Dashboard, host: str) -> dict[str, list[str]]:
    """With a HOST column: NAME -> the row's cells, of `host`'s rows."""
    return {r[1]: r for r in drawn(app) if r[0] == host}


def preview(app: Dashboard) -> str:
    return str(app.preview.render())


def app_for(sample: Sample, srv: libtmux.Server, **kw: Any) -> Dashboard:
    return Dashboard(sample.project(), srv, refresh=kw.pop("refresh", 0.3), **kw)


def add(sample: Sample, srv: libtmux.Server, *names: str) -> None:
    for name in names:
        add_op.run(sample.project(), name, srv)


hosts = test_remote.hosts  # the fixture: two hosts, each a real sshd and main checkout

# --- the table -------------------------------------------------------------------------------


def list_json(sample: Sample) -> list[dict[str, Any]]:
    r = run_cli(["inv", "session.list", "--json"], sample.main)
    assert r.returncode == 0, r.stderr
    rows: list[dict[str, Any]] = json.loads(r.stdout)
    return rows


def steady(cells: list[str] | tuple[str, ...]) -> list[str]:
    """Name, branch, the agent's state, ports, git: the cells that do not tick (how long a
    state has held and the age do)."""
    return [cells[0], cells[1], cells[2].split()[0], *cells[3:-1]]


def test_table_shows_what_list_json_says(sample: Sample, srv: libtmux.Server) -> None:
    add(sample, srv, "alpha", "beta", "gamma")
    (Path(sample.registry()["beta"]["worktree"]) / "notes.txt").write_text("mine\n")  # dirty
    gamma = Path(sample.registry()["gamma"]["worktree"])
    (gamma / "g.txt").write_text("g\n")
    git(gamma, "add", "g.txt")
    git(gamma, "commit", "-q", "-m", "g")  # one ahead
    srv.cmd("kill-session", "-t", "=tally-gamma")  # not running
    # the stand-in dev servers are up (list's own word), gamma's are not
    rows = poll(lambda: (r := list_json(sample)) and r[0]["status"] == "running" and r)
    expected = board.lines({"local": rows})
    app = app_for(sample, srv)

    async def script(pilot: Pilot[None]) -> None:
        await until(pilot, lambda: len(table(app)) == 3)
        shown = table(app)
        assert list(shown) == [ln.name for ln in expected]  # the same order
        for ln in expected:  # list's own cells, less the host (there is one)
            assert steady(shown[ln.name]) == steady(ln.cells[1:]), ln.name
        assert shown["alpha"][2].startswith("running") and shown["gamma"][2] == "stopped"
        ports = sample.registry()["alpha"]
        assert shown["alpha"][3] == f"{ports['backend_port']}✓ {ports['frontend_port']}✓"
        assert shown["beta"][4] == "↑0 ↓0 *" and shown["gamma"][4] == "↑1 ↓0"

    drive(app, script)


def test_a_change_shows_within_two_refreshes(
    sample: Sample, srv: libtmux.Server, serve: Callable[[int, Path], Any]
) -> None:
    add(sample, srv, "alpha")
    entry = sample.registry()["alpha"]
    worktree = Path(entry["worktree"])
    app = app_for(sample, srv, refresh=0.5)
    app.board.git_every = 3600.0  # git state only on change, for this test

    async def script(pilot: Pilot[None]) -> None:
        await until(pilot, lambda: "alpha" in table(app) and "↑0" in table(app)["alpha"][4])
        start = app.ticks
        serve(entry["backend_port"], worktree / "backend")
        await until(pilot, lambda: f"{entry['backend_port']}✓" in table(app)["alpha"][3])
        assert app.ticks - start <= 2
        # a commit moves the worktree's HEAD: git is asked again at once
        start = app.ticks
        (worktree / "n.txt").write_text("n\n")
        git(worktree, "add", "n.txt")
        git(worktree, "commit", "-q", "-m", "n")
        await until(pilot, lambda: table(app)["alpha"][4] == "↑1 ↓0")
        assert app.ticks - start <= 2
        # an edit moves nothing git keeps: it shows at the next `git status` round
        app.board.git_every = 1.0
        (worktree / "draft.txt").write_text("d\n")
        await until(pilot, lambda: table(app)["alpha"][4] == "↑1 ↓0 *")

    drive(app, script)


# --- keys ------------------------------------------------------------------------------------


async def new_session(pilot: Pilot[None], app: Dashboard, name: str) -> Operation:
    """Press n, type `name`, Enter; the add's screen once it is done."""
    await pilot.press("n")
    await asked(pilot, app)
    await type_text(pilot, name)
    await pilot.press("enter")
    screen = await finished(pilot, app, 30)
    return screen


def test_n_runs_the_real_add_and_shows_its_step_lines(sample: Sample, srv: libtmux.Server) -> None:
    app = app_for(sample, srv)

    async def script(pilot: Pilot[None]) -> None:
        screen = await new_session(pilot, app, "feature-x")
        said = "\n".join(screen.said)
        for step in ("ports", "worktree", "links", "env", "claude-perms", "tmux"):
            assert f"✓ {step}" in said
        assert "Session feature-x is ready" in said
        await pilot.press("escape")
        await until(pilot, lambda: "feature-x" in table(app))

    drive(app, script)
    assert "feature-x" in sample.registry()
    assert "tally-feature-x" in {s.name for s in srv.sessions}


def test_n_shows_a_project_task_step_and_its_output(sample: Sample, srv: libtmux.Server) -> None:
    @task
    def greet(c: Context, name: str) -> None:
        c.run(f"echo hello-from-task-{name}")  # as a project's task is written: no hide

    tasks = ProjectTasks(lambda: Collection(greet), Config())
    project = sample.project(add_steps=["ports", "worktree", "greet"])
    app = Dashboard(project, srv, refresh=0.3, tasks=tasks)

    async def script(pilot: Pilot[None]) -> None:
        screen = await new_session(pilot, app, "x")
        assert "hello-from-task-x" in screen.said, screen.said
        assert "✓ greet" in "\n".join(screen.said)

    drive(app, script)


def test_n_shows_a_refusal_and_changes_nothing(sample: Sample, srv: libtmux.Server) -> None:
    app = app_for(sample, srv)

    async def script(pilot: Pilot[None]) -> None:
        screen = await new_session(pilot, app, "-bad")
        assert any(line.startswith("✗ ") and "-bad" in line for line in screen.said)

    drive(app, script)
    assert sample.registry() == {}


async def send(pilot: Pilot[None], app: Dashboard, text: str) -> None:
    """Press s, type `text`, Enter: the line goes to the agent's window."""
    await pilot.press("s")
    await asked(pilot, app)
    await type_text(pilot, text)
    await pilot.press("enter")
    await until(pilot, lambda: not isinstance(app.screen, Ask))


def highlighted(app: Dashboard, row: int = 0) -> bool:
    name = app.table.get_row_at(row)[0]
    return any("reverse" in str(span.style) for span in name.spans)


def test_s_talks_to_the_agent_and_a_wait_rings_the_bell_once(
    sample: Sample, srv: libtmux.Server, standin_claude: Path
) -> None:
    add(sample, srv, "alpha")
    app = app_for(sample, srv)

    def agent() -> str:
        return table(app)["alpha"][2] if "alpha" in table(app) else ""

    async def script(pilot: Pilot[None]) -> None:
        await until(pilot, lambda: agent().startswith("idle"))  # Claude's SessionStart
        await send(pilot, app, "ask permission")
        await until(pilot, lambda: agent().startswith("waiting"))
        assert app.bells == 1 and highlighted(app)
        assert app.message().strip() == "alpha is waiting for you"
        await send(pilot, app, "prompt")  # the answer: it works again
        await until(pilot, lambda: agent().startswith("working"))
        assert not highlighted(app)
        await pilot.pause(1.0)  # refreshes while it works: no bell
        assert app.bells == 1
        await send(pilot, app, "question")  # waiting again: the bell again, once
        await until(pilot, lambda: agent().startswith("waiting"))
        await pilot.pause(1.0)
        assert app.bells == 2
        srv.cmd("select-window", "-t", "=tally-alpha:=backend")
        await pilot.press("enter")  # as `next` does: to the window where the agent asks
        await until(pilot, lambda: "attach -t =tally-alpha" in app.message())
        shown = srv.cmd(
            "list-windows", "-t", "=tally-alpha", "-F", "#{window_active}#{window_name}"
        )
        assert "1claude" in shown.stdout

    drive(app, script)


def test_an_agents_change_shows_within_two_refreshes(
    sample: Sample, srv: libtmux.Server, standin_claude: Path
) -> None:
    add(sample, srv, "alpha")
    app = app_for(sample, srv, refresh=0.5)

    async def script(pilot: Pilot[None]) -> None:
        await until(pilot, lambda: "alpha" in table(app) and table(app)["alpha"][2] != "")
        for command, state in (("ask permission", "waiting"), ("prompt", "working")):
            srv.cmd("send-keys", "-t", "=tally-alpha:=claude", "-l", command)
            srv.cmd("send-keys", "-t", "=tally-alpha:=claude", "Enter")
            # the stand-in says so once its hooks have run: the state is on disk
            await until(pilot, lambda c=command: f"done {c}" in pane(srv, "=tally-alpha:=claude"))
            start = app.ticks
            await until(pilot, lambda s=state: table(app)["alpha"][2].startswith(s))
            assert app.ticks - start <= 2

    drive(app, script)


def test_r_restarts_a_dead_server_and_waits_for_it(sample: Sample, srv: libtmux.Server) -> None:
    add(sample, srv, "alpha")
    backend = sample.registry()["alpha"]["backend_port"]
    frontend = sample.registry()["alpha"]["frontend_port"]
    app = app_for(sample, srv)

    def ports() -> str:
        return table(app)["alpha"][3] if "alpha" in table(app) else ""

    async def script(pilot: Pilot[None]) -> None:
        await until(pilot, lambda: ports() == f"{backend}✓ {frontend}✓", 30)
        await pilot.press("r")  # nothing died: nothing to do
        await until(pilot, lambda: "nothing in alpha has died" in app.message())
        server = panes.snapshot(srv).get("tally-alpha")["backend"].program
        assert server is not None
        os.killpg(server, signal.SIGTERM)  # the dev server dies in its window
        await until(pilot, lambda: ports().startswith(f"{backend}✗"))
        assert table(app)["alpha"][2].startswith("running")  # the agent is fine
        await pilot.press("r")
        op = await finished(pilot, app, 40)
        said = "\n".join(op.said)
        assert "✓ backend      restarted" in said and f"up on :{backend}" in said, said
        assert "frontend     running, left alone" in said  # a live one is not touched
        await pilot.press("escape")
        await until(pilot, lambda: ports().startswith(f"{backend}✓"))

    drive(app, script)


def test_d_removes_after_showing_the_dry_run(sample: Sample, srv: libtmux.Server) -> None:
    add(sample, srv, "alpha")
    app = app_for(sample, srv)

    async def script(pilot: Pilot[None]) -> None:
        await until(pilot, lambda: "alpha" in table(app))
        await pilot.press("d")
        screen = await on_top(pilot, app, Confirm)
        assert "Would remove session alpha (dry run: nothing changed)" in screen.lines[0]
        assert any("kill tally-alpha" in line for line in screen.lines)
        assert "alpha" in sample.registry()  # a dry run so far
        await pilot.press("y")
        op = await finished(pilot, app, 30)
        assert any("✓ registry" in line for line in op.said)
        await pilot.press("enter")
        await until(pilot, lambda: "alpha" not in table(app))

    drive(app, script)
    assert sample.registry() == {}


@pytest.mark.parametrize("typed", ["wrong", "alpha"], ids=["not-confirmed", "confirmed"])
def test_d_shows_the_refusal_and_force_needs_the_name_typed(
    sample: Sample, srv: libtmux.Server, typed: str
) -> None:
    add(sample, srv, "alpha")
    worktree = Path(sample.registry()["alpha"]["worktree"])
    (worktree / "precious.txt").write_text("work\n")
    app = app_for(sample, srv)

    async def script(pilot: Pilot[None]) -> None:
        await until(pilot, lambda: "alpha" in table(app))
        await pilot.press("d")
        refused = await on_top(pilot, app, Confirm)
        said = "\n".join(refused.lines)
        assert "refuse" in said and "precious.txt" in said, said
        await pilot.press("f")  # see what --force would do
        ask = await asked(pilot, app)
        assert any("worktree" in line and "remove" in line for line in ask.lines)
        assert (worktree / "precious.txt").exists()
        await type_text(pilot, typed)
        await pilot.press("enter")
        if typed == "alpha":
            await finished(pilot, app, 30)
        else:
            await until(pilot, lambda: "not confirmed" in app.message())

    drive(app, script)
    assert (typed == "alpha") == (not worktree.exists())
    assert (typed == "alpha") == ("alpha" not in sample.registry())


def test_d_any_other_key_removes_nothing(sample: Sample, srv: libtmux.Server) -> None:
    add(sample, srv, "alpha")
    app = app_for(sample, srv)

    async def script(pilot: Pilot[None]) -> None:
        await until(pilot, lambda: "alpha" in table(app))
        await pilot.press("d")
        await until(pilot, lambda: isinstance(app.screen, Confirm))
        await pilot.press("n")
        await until(pilot, lambda: not isinstance(app.screen, Confirm))

    drive(app, script)
    assert "alpha" in sample.registry()


def _browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A BROWSER that records the URLs it is given; the file it writes them to."""
    opened = tmp_path / "opened"
    browser = tmp_path / "browser"
    browser.write_text(f'#!/bin/sh\necho "$1" >> {opened}\n')
    browser.chmod(0o755)
    monkeypatch.setenv("BROWSER", str(browser))
    monkeypatch.setattr(webbrowser, "_tryorder", None)  # read BROWSER afresh
    return opened


def test_o_opens_the_frontend_url(
    sample: Sample, srv: libtmux.Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    add(sample, srv, "alpha")
    opened = _browser(tmp_path, monkeypatch)
    app = app_for(sample, srv)

    async def script(pilot: Pilot[None]) -> None:
        await until(pilot, lambda: "alpha" in table(app))
        await pilot.press("o")
        await until(pilot, opened.exists)

    drive(app, script)
    port = sample.registry()["alpha"]["frontend_port"]
    assert opened.read_text().split() == [f"http://localhost:{port}/"]


def test_filter_and_enter_outside_tmux(sample: Sample, srv: libtmux.Server) -> None:
    add(sample, srv, "alpha", "beta")
    app = app_for(sample, srv)

    async def script(pilot: Pilot[None]) -> None:
        await until(pilot, lambda: len(table(app)) == 2)
        await pilot.press("slash")
        await type_text(pilot, "bet")
        await until(pilot, lambda: list(table(app)) == ["beta"])
        await pilot.press("enter")  # back to the table
        await pilot.press("enter")  # switch: headless, the terminal cannot be handed over
        await until(pilot, lambda: "attach -t =tally-beta" in app.message())
        await pilot.press("slash", "escape")
        await until(pilot, lambda: len(table(app)) == 2)

    drive(app, script)


def test_v_cycles_the_preview(sample: Sample, srv: libtmux.Server) -> None:
    add(sample, srv, "alpha")
    poll(lambda: sample.calls("python") and sample.calls("claude"))
    worktree = Path(sample.registry()["alpha"]["worktree"])
    (worktree / "backend" / "manage.py").write_text("# changed\n")
    app = app_for(sample, srv)

    async def script(pilot: Pilot[None]) -> None:
        await until(pilot, lambda: "claude -n tally-alpha" in preview(app))
        await pilot.press("v")
        await until(pilot, lambda: "runserver" in preview(app) and "── frontend ──" in preview(app))
        await pilot.press("v")
        await until(pilot, lambda: "backend/manage.py" in preview(app) and "1 file" in preview(app))

    drive(app, script)


def test_the_preview_shows_the_bottom_of_the_screen_cut_at_the_edge(
    sample: Sample, srv: libtmux.Server
) -> None:
    """Where the prompt is: the last lines the box holds; a line wider than the box is
    cut, as tmux shows a pane in a narrower window, never wrapped over the next."""
    add(sample, srv, "alpha")
    poll(lambda: sample.calls("claude"))
    wide = "W" * 79 + "E"  # as wide as the pane, wider than the box
    script_ = f"seq 1 60; echo {wide}; echo BOTTOM; sleep 600"
    srv.cmd("respawn-pane", "-k", "-t", "=tally-alpha:=claude", script_)
    app = app_for(sample, srv)

    async def script(pilot: Pilot[None]) -> None:
        def fits() -> bool:  # the box's height settles with the first layouts
            return len(preview(app).splitlines()) <= app.preview.content_size.height

        await until(pilot, lambda: "BOTTOM" in preview(app) and fits())
        shown = preview(app).splitlines()
        assert shown[-1] == "BOTTOM" and shown[-2] == wide and "1" not in shown
        assert app.preview.has_class("screen")

    drive(app, script)


def test_a_silent_host_does_not_hold_the_screen(sample: Sample, srv: libtmux.Server) -> None:
    add(sample, srv, "alpha")
    port, close = silent_server("silent")
    host = remote.Host("odd", "root@127.0.0.1", "/x", port=port, timeout=3.0)
    app = app_for(sample, srv, hosts={"odd": host})
    try:

        async def script(pilot: Pilot[None]) -> None:
            started = time.monotonic()
            await until(pilot, lambda: "local" in table(app) or len(table(app)) == 2)
            rows = {r[1]: r for r in table(app).values()}
            assert rows["alpha"][0] == "local" and "asking…" in table(app)["odd"]
            assert time.monotonic() - started < 2.5  # not held by the host
            ticks = app.ticks
            await until(pilot, lambda: app.ticks >= ticks + 2)  # still refreshing
            await pilot.press("slash")
            await type_text(pilot, "alp")
            await until(pilot, lambda: list(table(app)) == ["local"])
            await pilot.press("escape")
            await until(pilot, lambda: "unreachable" in table(app)["odd"], 20)
            await pilot.press("down")  # the host's line: the preview says why
            await until(pilot, lambda: "no SSH server answered" in preview(app))

        drive(app, script)
    finally:
        close()


def _configured(sample: Sample, *names: str) -> dict[str, remote.Host]:
    """The laptop's `tally.hosts` (written by the `hosts` fixture), these hosts only."""
    config = json.loads((sample.main / "invoke.yaml").read_text())["tally"]["hosts"]
    return {n: h for n, h in remote.hosts_from(config).items() if n in names}


def _web_on_box1(sample: Sample, hosts: dict[str, FakeHost], *flags: str) -> FakeHost:
    """box1, with a session `web` added there by the laptop's `add --host box1`."""
    r = run_cli(["inv", "session.add", "web", "--host", "box1", "-q", *flags], sample.main)
    assert r.returncode == 0, r.stderr
    return hosts["box1"]


@pytest.mark.skipif(not Path(SSHD).exists(), reason="OpenSSH server not installed")
def test_a_hosts_session_is_removed_by_the_hosts_own_remove(
    sample: Sample, srv: libtmux.Server, hosts: dict[str, FakeHost]
) -> None:
    box1 = _web_on_box1(sample, hosts)
    (Path(box1.sample.registry()["web"]["worktree"]) / "mine.txt").write_text("work\n")
    app = app_for(sample, srv, hosts=_configured(sample, "box1"))

    async def script(pilot: Pilot[None]) -> None:
        await until(pilot, lambda: "box1" in table(app) and table(app)["box1"][1] == "web", 30)
        await pilot.press("down")  # box2's line is last: the first line is box1's web
        await pilot.press("up")
        await pilot.press("enter")  # headless: says the ssh line to the host's own attach
        await until(pilot, lambda: "ssh" in app.message() and "attach web" in app.message())
        await pilot.press("d")
        refused = await on_top(pilot, app, Confirm, 30)
        assert any("mine.txt" in line for line in refused.lines), refused.lines
        await pilot.press("f")
        await asked(pilot, app, 30)
        await type_text(pilot, "web")
        await pilot.press("enter")
        op = await finished(pilot, app, 60)
        assert any("✓ registry" in line for line in op.said), op.said

    drive(app, script)
    assert box1.sample.registry() == {}


def _get(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return int(resp.status)
    except OSError:
        return None


@pytest.mark.skipif(not Path(SSHD).exists(), reason="OpenSSH server not installed")
def test_s_and_r_on_a_hosts_session_run_the_hosts_own_send_and_restart(
    sample: Sample, srv: libtmux.Server, hosts: dict[str, FakeHost]
) -> None:
    box1 = _web_on_box1(sample, hosts)
    backend = box1.sample.registry()["web"]["backend_port"]
    app = app_for(sample, srv, hosts=_configured(sample, "box1"), hosts_every=1.0)

    def port_cells() -> str:
        return on(app, "box1").get("web", [""] * 5)[4]

    async def script(pilot: Pilot[None]) -> None:
        await until(pilot, lambda: f"{backend}✓" in port_cells(), 30)
        # s: the host's own `send`
        await pilot.press("s")
        ask = await asked(pilot, app)
        assert "web's agent on box1" in str(ask.prompt)
        await type_text(pilot, "hello #{host} $HOME")
        await pilot.press("enter")
        await until(pilot, lambda: "sent to web on box1: hello" in app.message(), 30)
        agent = ("capture-pane", "-p", "-t", "=tally-web:=agent")
        assert "hello #{host} $HOME" in box1.tmux(*agent).stdout
        # r: the host's own `restart NAME --window backend`, its lines on the screen
        server = ports.holders([backend])[backend][0].pid
        os.kill(server, signal.SIGTERM)  # the host's dev server dies in its window
        await until(pilot, lambda: f"{backend}✗" in port_cells(), 30)
        await pilot.press("r")
        op = await on_top(pilot, app, Operation)
        assert "on box1 (backend)" in op.title_text
        await until(pilot, lambda: op.done, timeout=60)
        said = "\n".join(op.said)
        assert "✓ backend      restarted" in said and f"up on :{backend}" in said, said
        await pilot.press("escape")
        await until(pilot, lambda: f"{backend}✓" in port_cells(), 30)

    drive(app, script)


@pytest.mark.skipif(not Path(SSHD).exists(), reason="OpenSSH server not installed")
def test_o_forwards_until_the_dashboard_quits(
    sample: Sample,
    srv: libtmux.Server,
    hosts: dict[str, FakeHost],
    serve: Callable[[int, Path], Any],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    box1 = _web_on_box1(sample, hosts, "--no-wait")
    frontend = box1.sample.registry()["web"]["frontend_port"]
    # the host's frontend on its localhost, which is this one: the forward cannot take
    # the same port here and picks the next free one
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "index.html").write_text("box1's frontend\n")
    serve(frontend, tmp_path / "site")
    opened = _browser(tmp_path, monkeypatch)
    app = app_for(sample, srv, hosts=_configured(sample, "box1"))
    got: list[int | None] = []

    async def script(pilot: Pilot[None]) -> None:
        await until(pilot, lambda: "web" in on(app, "box1"), 30)
        await pilot.press("o")
        await until(pilot, lambda: opened.exists() and opened.read_text(), 30)
        got.append(await asyncio.to_thread(_get, opened.read_text().split()[0]))
        assert "forwarded from box1" in app.message()
        await pilot.press("o")  # again: the same forward, opened again
        await until(pilot, lambda: len(opened.read_text().split()) == 2)
        await pilot.press("q")

    drive(app, script)
    urls = opened.read_text().split()
    assert got == [200] and urls[0] == urls[1] and len(app.forwards) == 1
    port = int(urls[0].rsplit(":", 1)[1].strip("/"))
    assert port != frontend
    # quitting ended the forward: its thread, its SSH connection, its listening port
    assert not any(f.thread.is_alive() for f in app.forwards.values())
    assert is_free(port) and _get(urls[0]) is None


@pytest.mark.skipif(not Path(SSHD).exists(), reason="OpenSSH server not installed")
def test_n_on_a_hosts_row_adds_there_unless_told_local(
    sample: Sample, srv: libtmux.Server, hosts: dict[str, FakeHost]
) -> None:
    box1 = _web_on_box1(sample, hosts, "--no-wait")
    app = app_for(sample, srv, hosts=_configured(sample, "box1"), hosts_every=1.0)
    arrived: list[tuple[float, str]] = []
    add_line = Operation.add_line

    def timed(screen: Operation, line: str) -> None:
        arrived.append((time.monotonic(), line))
        add_line(screen, line)

    def when(text: str) -> float:
        return next(t for t, line in arrived if text in line)

    async def script(pilot: Pilot[None]) -> None:
        await until(pilot, lambda: "web" in on(app, "box1"), 30)
        await pilot.press("n")
        ask = await asked(pilot, app)
        assert str(ask.prompt).startswith("New session on box1:")
        await type_text(pilot, "api")
        await pilot.press("enter")
        op = await on_top(pilot, app, Operation)
        assert op.title_text == "add api on box1"
        await until(pilot, lambda: op.done, timeout=60)
        said = "\n".join(op.said)
        assert "✓ worktree" in said and "Session api is ready" in said, said
        # streamed: the first step's line came while the host still worked
        assert when("Session api is ready") - when("✓ ports") > 0.1, arrived
        await pilot.press("escape")
        await until(pilot, lambda: "api" in on(app, "box1"), 30)
        for typed, says in (("mars:x", "no host named 'mars'"), ("local:here", "")):
            await pilot.press("n")
            await asked(pilot, app)
            await type_text(pilot, typed)
            await pilot.press("enter")
            if says:
                await until(pilot, lambda s=says: s in app.message())
                continue
            op = await on_top(pilot, app, Operation)
            assert op.title_text == "add here"
            await until(pilot, lambda o=op: o.done, timeout=60)

    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setattr(Operation, "add_line", timed)
    try:
        drive(app, script)
    finally:
        monkeypatch.undo()
    assert set(box1.sample.registry()) == {"web", "api"}
    assert set(sample.registry()) == {"here"}


def test_o_says_why_a_forward_could_not_start(sample: Sample, srv: libtmux.Server) -> None:
    with socket.socket() as s:  # a port nothing listens on: refused at once
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    host = remote.Host("odd", "root@127.0.0.1", "/x", port=port, timeout=3.0)
    app = app_for(sample, srv, hosts={"odd": host}, hosts_every=3600.0)
    row = {"name": "web", "branch": "web", "running": True, "frontend_port": 45678}

    async def script(pilot: Pilot[None]) -> None:
        await until(pilot, lambda: "unreachable" in table(app).get("odd", ()), 20)
        app.board.answer("odd", [row])  # as if it had answered
        app.poll()
        await until(pilot, lambda: table(app).get("odd", [""] * 2)[1] == "web")
        await pilot.press("o")
        await until(pilot, lambda: "forward web: cannot reach host odd" in app.message(), 20)
        assert not any(f.thread.is_alive() for f in app.forwards.values())

    drive(app, script)


def test_quitting_does_not_wait_for_a_silent_host(sample: Sample, srv: libtmux.Server) -> None:
    port, close = silent_server("silent")
    host = remote.Host("odd", "root@127.0.0.1", "/x", port=port, timeout=20.0)
    app = app_for(sample, srv, hosts={"odd": host})
    try:

        async def script(pilot: Pilot[None]) -> None:
            await until(pilot, lambda: "asking…" in table(app).get("odd", ()))
            await pilot.press("q")

        started = time.monotonic()
        drive(app, script)
        assert time.monotonic() - started < 10
    finally:
        close()


# --- attention -------------------------------------------------------------------------------


def _row(name: str, state: str, since: float, running: bool = True) -> dict[str, Any]:
    """A row as `list --json` gives it (`since` an ISO time with its offset)."""
    return {
        "name": name,
        "branch": name,
        "running": running,
        "backend_port": 8001,
        "listening": {"backend": True},
        "agent": {
            "state": state,
            "since": datetime.fromtimestamp(since).astimezone().isoformat(timespec="seconds"),
        },
        "windows": {"backend": "up", "claude": state},
    }


def test_sort_puts_who_needs_the_user_first() -> None:
    now = 1_000_000.0
    rows = [
        _row("working", "working", now - 10),
        _row("waits-1m", "waiting", now - 60),
        _row("stopped", "idle", now, running=False),
        _row("waits-3m", "waiting", now - 180),
        _row("idle", "idle", now - 5),
        {**_row("down", "working", now), "windows": {"backend": "exited", "claude": "working"}},
        _row("gone", "exited", now - 7),
    ]
    got = board.lines({"local": rows}, now=now)
    assert [ln.name for ln in got] == [
        *["waits-3m", "waits-1m", "down", "gone", "idle", "working", "stopped"]
    ]
    assert got[0].cells[3] == "waiting 3m" and got[-1].cells[3] == "stopped"
    assert got[3].cells[3] == "exited 7s"


@pytest.mark.parametrize(
    ("windows", "running", "broken", "died"),
    [
        ({"backend": "up", "claude": "idle"}, True, [], []),
        ({"backend": "exited", "frontend": "down"}, True, ["backend", "frontend"], ["backend"]),
        ({"backend": "missing", "frontend": "other"}, True, ["backend", "frontend"], ["backend"]),
        ({"backend": "exited"}, False, [], []),
    ],
    ids=["all-up", "exited-and-down", "missing-and-other", "not-running"],
)
def test_what_a_restart_from_the_dashboard_takes(
    windows: dict[str, str], running: bool, broken: list[str], died: list[str]
) -> None:
    row = {"name": "x", "running": running, "windows": windows}
    assert (board.broken(row), board.died(row)) == (broken, died)


def test_holders_are_asked_again_when_the_ports_change_or_in_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked: list[set[int]] = []
    monkeypatch.setattr(board.ports_, "holders", lambda up: asked.append(set(up)) or {})
    clock = [100.0]
    remembered = board.Remembered(every=5.0, clock=lambda: clock[0])
    for up, later, again in [
        ({1, 2}, 0.0, True),  # the first time
        ({1, 2}, 1.0, False),  # the same ports, a second later: remembered
        ({1}, 0.0, True),  # one stopped listening
        ({1}, 4.9, False),
        ({1}, 0.2, True),  # five seconds on
    ]:
        clock[0] += later
        before = len(asked)
        remembered(up)
        assert (len(asked) > before) == again, (up, later)


def test_starting_to_wait_is_news_once(sample: Sample, srv: libtmux.Server) -> None:
    b = board.Board(sample.project(), srv)
    now = time.time()
    steps = [
        ([_row("a", "waiting", now), _row("b", "working", now)], []),  # on opening: no news
        ([_row("a", "waiting", now), _row("b", "waiting", now)], ["b"]),
        ([_row("a", "waiting", now), _row("b", "waiting", now)], []),  # still: not again
        ([_row("a", "working", now), _row("b", "working", now)], []),
        ([_row("a", "waiting", now), _row("b", "working", now)], ["a"]),
    ]
    for rows, news in steps:
        b.answer("local", rows)
        assert [ln.name for ln in b.started_waiting(b.lines())] == news


# --- the command -----------------------------------------------------------------------------


def test_list_does_not_import_textual(sample: Sample) -> None:
    assert "textual" not in imported_by(["inv", "session.list"], sample.main)


def test_without_a_terminal_it_says_so(sample: Sample) -> None:
    r = run_cli(["tally-session", "dashboard"], sample.main)
    assert r.returncode == 1
    assert r.stderr.strip() == (
        "✗ the dashboard needs a terminal; for a listing run: tally-session list"
    )


def test_a_real_run_in_an_80x24_tmux_window(sample: Sample, srv: libtmux.Server) -> None:
    add(sample, srv, "feature-auth", "bugfix-ui")
    env = {k: v for k, v in os.environ.items() if k.startswith(("HOME", "PATH", "TMUX_TMPDIR"))}
    srv.cmd(
        "new-session", "-d", "-x", "80", "-y", "24", "-s", "dash", "-c", str(sample.main),
        *[a for k, v in env.items() for a in ("-e", f"{k}={v}")],
        f"{VENV_BIN / 'tally-session'} dashboard",
    )  # fmt: skip

    def screen() -> str:
        return pane(srv, "=dash:")

    def drawn() -> str:
        text = screen()
        return text if all(w in text for w in ("feature-auth", "bugfix-ui", "q quit")) else ""

    text = poll(drawn, timeout=30)
    lines = text.splitlines()
    assert lines[0].split() == ["NAME", "BRANCH", "AGENT", "PORTS", "GIT", "AGE"]
    assert "q quit" in lines[-1] and "n new" in lines[-1] and "⏎ switch" in lines[-1]
    assert all(len(line) <= 80 for line in lines)
    srv.cmd("send-keys", "-t", "=dash:", "v")
    poll(lambda: "· servers" in screen() and "runserver" in screen())
    # a user's terminal on the dashboard: Enter switches it to the selected session
    client = subprocess.Popen(
        ["script", "-qfc", "tmux attach -t =dash", "/dev/null"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def sessions_shown() -> list[str]:
            return srv.cmd("list-clients", "-F", "#{client_session}").stdout

        poll(lambda: sessions_shown() == ["dash"])
        srv.cmd("send-keys", "-t", "=dash:", "Enter")  # the first row: bugfix-ui
        poll(lambda: sessions_shown() == ["tally-bugfix-ui"])
        srv.cmd("switch-client", "-t", "=dash")
        srv.cmd("send-keys", "-t", "=dash:", "q")
        poll(lambda: "dash" not in {s.name for s in srv.sessions})
    finally:
        client.kill()
        client.wait()


def test_enter_outside_tmux_attaches_and_comes_back_on_detach(
    sample: Sample, srv: libtmux.Server, tmp_path: Path
) -> None:
    add(sample, srv, "alpha")
    typescript = tmp_path / "typescript"
    cmd = f"stty cols 80 rows 24; exec {VENV_BIN / 'tally-session'} dashboard"
    term = subprocess.Popen(
        ["script", "-qfc", cmd, str(typescript)],
        cwd=sample.main,
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        env={**os.environ, "TERM": "xterm-256color"},
    )
    assert term.stdin is not None

    def clients() -> list[str]:
        return srv.cmd("list-clients", "-F", "#{client_session}").stdout

    try:
        poll(lambda: typescript.exists() and b"alpha" in typescript.read_bytes())
        term.stdin.write(b"\r")  # Enter: the dashboard hands the terminal to tmux attach
        term.stdin.flush()
        poll(lambda: clients() == ["tally-alpha"])
        srv.cmd("detach-client", "-s", "=tally-alpha")
        poll(lambda: clients() == [])
        seen = len(typescript.read_bytes())
        poll(lambda: b"BRANCH" in typescript.read_bytes()[seen:])  # the table, drawn again
        term.stdin.write(b"q")
        term.stdin.flush()
        assert term.wait(timeout=15) == 0
    finally:
        term.kill()
        term.wait()
