"""`session.dashboard`: one live screen over every session (Textual).

A thin view: the table draws `board.lines()` (the rows `list --json` gives), and every key
calls the function the task of the same name calls (`operations.add.run`, `remove.plan`,
`remove.run`, ...), with their step lines shown on the screen (`output.redirect`).
Reading tmux, ports, git and hosts happens in worker threads: the screen never waits.
Imported only by this command (Textual takes about 0.2 s to import).
"""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import App, ComposeResult, SuspendNotSupported
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Footer, Input, Label, RichLog, Static

from . import board as board_
from . import output, panes, remote, sessions, tmux
from . import ports as ports_
from . import repo as repo_
from .errors import TallyError, one_line
from .operations import add as add_
from .operations import live as live_
from .operations import remove as remove_
from .registry import ports_of
from .session import Project, url_port
from .steps.project import ProjectTasks

REFRESH = 1.0  # seconds between two reads of tmux and the ports
HOSTS_EVERY = 5.0  # seconds between two questions to a host (each is an SSH connection)
STATE_STYLE = {
    "waiting": "bold black on yellow",
    "exited": "bold red",
    "idle": "cyan",
    "working": "green",
    "stopped": "dim",
}


class _Lines(io.StringIO):
    """A text stream that hands each complete line to `emit` (output.redirect's target)."""

    def __init__(self, emit: Callable[[str], None]) -> None:
        super().__init__()
        self._emit = emit
        self._buf = ""

    @property
    def encoding(self) -> str:  # type: ignore[override]  # StringIO says None: "ascii"
        return "utf-8"

    def isatty(self) -> bool:
        return True  # colours (output.py still honours NO_COLOR): Text.from_ansi draws them

    def write(self, text: str) -> int:
        self._buf += text
        *done, self._buf = self._buf.split("\n")
        for line in done:
            self._emit(line)
        return len(text)

    def end(self) -> None:
        """Hand over a last line that came without its newline."""
        if self._buf:
            self._emit(self._buf)
            self._buf = ""


def captured(fn: Callable[[], object], emit: Callable[[str], None]) -> bool:
    """Run `fn` as a task's boundary would, its lines (and its error) sent to `emit`;
    False when it failed."""
    with output.redirect(_Lines(emit)):
        try:
            return fn() is not False
        except TallyError as e:
            output.error(str(e))
        except (OSError, UnicodeError) as e:
            output.error(one_line(e))
    return False


# --- dialogs --------------------------------------------------------------------------------


class Ask(ModalScreen[str | None]):
    """A question with a line of text for the answer (Esc: no answer)."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "dismiss(None)", "cancel")]

    def __init__(self, prompt: str, lines: list[str] | None = None) -> None:
        super().__init__()
        self.prompt, self.lines = prompt, lines or []

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            if self.lines:
                yield Static(Text.from_ansi("\n".join(self.lines)), classes="said")
            yield Label(self.prompt)
            yield Input()

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip() or None)


class Confirm(ModalScreen[bool]):
    """Lines to read, then one key that says yes (anything else: no)."""

    def __init__(self, lines: list[str], prompt: str, yes: str = "y") -> None:
        super().__init__()
        self.lines, self.prompt, self.yes = lines, prompt, yes

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(Text.from_ansi("\n".join(self.lines)), classes="said")
            yield Label(Text(self.prompt, style="bold"))

    def on_key(self, event: Any) -> None:
        event.stop()
        self.dismiss(event.key == self.yes)


class Operation(ModalScreen[None]):
    """An operation's step lines as they come; Esc or Enter closes it once it is done."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "close"),
        Binding("enter", "close", "close"),
    ]

    def __init__(self, title: str) -> None:
        super().__init__()
        self.title_text = title
        self.done = False
        self.said: list[str] = []

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(Text(self.title_text, style="bold"))
            yield RichLog(wrap=True, markup=False)
            yield Label("working…", id="state")

    def add_line(self, line: str) -> None:
        self.said.append(Text.from_ansi(line).plain)
        self.query_one(RichLog).write(Text.from_ansi(line))

    def finish(self, ok: bool) -> None:
        self.done = True
        state = "done" if ok else "failed"
        self.query_one("#state", Label).update(f"{state} — Esc or Enter closes")

    def action_close(self) -> None:
        if self.done:
            self.dismiss(None)

    def on_key(self, event: Any) -> None:
        if event.key not in ("escape", "enter"):
            event.stop()  # nothing reaches the screen below (q would quit) while it runs


# --- the screen -----------------------------------------------------------------------------


class Sessions(DataTable[Text]):
    """The table; Enter (select) switches to the session, and the footer says so."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "select_cursor", "switch", key_display="⏎")
    ]


class Dashboard(App[None]):
    """The table of sessions over a preview of the selected one's agent window."""

    TITLE = "tally dashboard"
    AUTO_FOCUS = "#sessions"
    ENABLE_COMMAND_PALETTE = False
    CSS = """
    #sessions { height: auto; max-height: 50%; }
    #preview { height: 1fr; border: round $secondary; padding: 0 1; }
    #preview.screen { text-wrap: nowrap; text-overflow: clip; }
    #message { height: 1; padding: 0 1; color: $text-muted; }
    #filter { display: none; height: 3; }
    #filter.shown { display: block; }
    Ask, Confirm, Operation { align: center middle; }
    .dialog { width: 90%; height: auto; max-height: 90%; border: thick $accent;
              background: $surface; padding: 0 1; }
    .dialog RichLog { height: auto; max-height: 16; }
    .said { height: auto; max-height: 14; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("n", "new", "new"),
        Binding("r", "restart", "restart"),
        Binding("s", "send", "send"),
        Binding("o", "open", "open"),
        Binding("d", "remove", "remove"),
        Binding("v", "view", "view"),
        Binding("slash", "filter", "filter", key_display="/"),
        Binding("q", "quit", "quit"),
    ]
    VIEWS = ("agent", "servers", "diff")

    def __init__(
        self,
        project: Project | None,
        srv: tmux.TmuxServer,
        hosts: Mapping[str, remote.Host] | None = None,
        refresh: float = REFRESH,
        hosts_every: float = HOSTS_EVERY,
        board: board_.Board | None = None,
        warm: threading.Thread | None = None,
        tasks: ProjectTasks | None = None,
    ) -> None:
        """`board` and `warm`: a board whose first refresh (`warm`) began before Textual
        was imported (see `session.dashboard`); `tasks`: the project's own tasks, for the
        steps that name one."""
        super().__init__()
        self.project, self.srv = project, srv
        self.tasks = quiet(tasks)
        self.hosts = dict(hosts or {})
        self.board = board or board_.Board(project, srv, tuple(self.hosts))
        self._warm = warm
        self.refresh_every, self.hosts_every = refresh, hosts_every
        self.query_text = ""
        self.view = "agent"
        self.shown: list[board_.Line] = []
        self.bells = 0  # how many times the bell rang (tests read it)
        self.ticks = 0  # refreshes drawn (tests and the benchmark read it)
        self._busy = threading.Lock()  # one local refresh at a time
        self._again = False  # asked for while one ran: run once more right after it
        self.current: board_.Line | None = None  # the selected line (threads read it)
        self._asking: set[str] = set()  # hosts being asked right now
        self._operating = False
        self._preview_key: tuple[str, str] | None = None
        self.forwards: dict[str, Forward] = {}  # "host/name" -> its frontend's forward

    # -- layout and refresh -------------------------------------------------------------

    def compose(self) -> ComposeResult:
        # kept: a dialog on top makes `query_one` look in the dialog, not here
        self.filter_box = Input(placeholder="filter: part of a name, branch or host", id="filter")
        self.table = Sessions(id="sessions", cursor_type="row")
        self.preview = Static(id="preview")
        self.message_bar = Static(id="message")
        yield from (self.filter_box, self.table, self.preview, self.message_bar, Footer())

    def on_mount(self) -> None:
        table = self.table
        columns = board_.COLUMNS if self.hosts else board_.COLUMNS[1:]
        for col in columns:
            table.add_column(col, key=col)
        self.poll()
        self.set_interval(self.refresh_every, self.poll)
        if self.hosts:
            self.ask_hosts()
            self.set_interval(self.hosts_every, self.ask_hosts)

    def poll(self) -> None:
        """Start a refresh in a thread; while one runs, one more follows it (never two
        at once, never a queue of them)."""
        if self._busy.acquire(blocking=False):
            self.run_worker(self._refresh, thread=True, group="refresh")
        else:
            self._again = True

    def _refresh(self) -> None:
        try:
            while True:
                self._again = False
                if self._warm is not None:  # the first refresh, begun before the screen
                    self._warm.join()
                    self._warm = None
                else:
                    self.board.refresh()
                preview = self._read_preview()
                self.call_from_thread(self._draw, preview)
                if not self._again:
                    break
        finally:
            self._busy.release()

    def ask_hosts(self) -> None:
        """Ask every host not being asked already, each in a daemon thread: quitting never
        waits for a silent host's timeout."""
        for name, host in self.hosts.items():
            if name not in self._asking:
                self._asking.add(name)
                threading.Thread(target=self._ask, args=(host,), daemon=True).start()

    def _ask(self, host: remote.Host) -> None:
        try:
            answer: board_.Answer = remote.sessions(host)
        except Exception as e:  # noqa: BLE001 - whatever it was, the host's line says it
            answer = str(e).removeprefix(f"{host.name}: ") or type(e).__name__
        finally:
            self._asking.discard(host.name)
        self.board.answer(host.name, answer)
        if not self.is_running:
            return  # the screen was closed meanwhile
        try:
            self.call_from_thread(self._draw, None)
        except RuntimeError:
            pass  # closed just now

    def _draw(self, preview: tuple[tuple[str, str], str] | None) -> None:
        every = self.board.lines()
        for line in self.board.started_waiting(every):
            self._attention(line)
        lines = self.board.lines(self.query_text) if self.query_text else every
        table = self.table
        if [ln.key for ln in lines] == [ln.key for ln in self.shown]:
            # the same rows in the same order: only the cells that changed are drawn again
            for old, new in zip(self.shown, lines, strict=True):
                if old.cells != new.cells or old.state != new.state:
                    for col, cell in zip(table.columns, self._cells(new), strict=True):
                        table.update_cell(new.key, col, cell)
        else:
            table.clear()
            for ln in lines:
                table.add_row(*self._cells(ln), key=ln.key)
            keys = [ln.key for ln in lines]
            if self.current is not None and self.current.key in keys:
                table.move_cursor(row=keys.index(self.current.key), animate=False)
        self.shown = lines
        self.current = self.selected()
        if preview is not None:
            self._show_preview(*preview)
        self.ticks += 1

    def _cells(self, line: board_.Line) -> list[Text]:
        cells = [Text(c) for c in (line.cells if self.hosts else line.cells[1:])]
        agent = cells[-4]
        word = line.cells[3].split(" ")[0]
        agent.stylize(STATE_STYLE.get(word, ""))
        if line.row is None:
            agent.stylize("red" if "unreachable" in line.cells[3] else "dim")
        if line.state == "waiting":
            cells[1 if self.hosts else 0].stylize("bold reverse")
        ports = cells[-3]
        for i, ch in enumerate(ports.plain):
            if ch in "✓✗!":
                ports.stylize({"✓": "green", "✗": "bold red", "!": "yellow"}[ch], i, i + 1)
        return cells

    def _attention(self, line: board_.Line) -> None:
        self.say(
            f"{line.name} is waiting for you"
            + (f" on {line.host}" if line.host != board_.LOCAL else "")
        )
        if self.project is None or self.project.settings.dashboard_bell:
            self.bells += 1
            self.bell()

    # -- the selected session and its preview ------------------------------------------

    def selected(self) -> board_.Line | None:
        table = self.table
        if not self.shown or table.cursor_row < 0 or table.cursor_row >= len(self.shown):
            return None
        return self.shown[table.cursor_row]

    @on(DataTable.RowHighlighted)
    def _moved(self) -> None:
        line = self.selected()
        if line != self.current:
            self.current = line
            self._preview_key = None
            self.poll()

    def _read_preview(self) -> tuple[tuple[str, str], str] | None:
        """(what, text) for the preview pane; runs in the refresh thread."""
        # before the first draw nothing is selected yet: the line that will be
        line = self.current or next(iter(self.board.lines(self.query_text)), None)
        if line is None:
            return ("", ""), "no sessions; press n to make one"
        key = (line.key, self.view)
        if line.row is None:
            said = self.board.answers.get(line.host)
            return key, f"{line.host}: " + (said if isinstance(said, str) else "asking…")
        if line.host != board_.LOCAL or self.project is None:
            return key, f"{line.key}: a session on {line.host}; Enter attaches to it over SSH"
        row = line.row
        if not row.get("running"):
            return key, _not_running(line)
        if self.view == "diff":
            if self._preview_key == key:
                return None  # git once per selection, not every second
            return key, _diff_stat(self.project, row)
        agent = panes.agent_or_last(self.project.settings.windows)
        screens: dict[str, list[str] | None] = {}
        if self.view == "agent" and agent is not None:
            screens[agent] = tmux.capture(self.srv, row["tmux"], agent)  # one tmux call
        if not any(screens.values()):
            windows = tmux.window_names(self.srv, row["tmux"])
            shown = [w for w in windows if w != agent] if self.view == "servers" else windows[-1:]
            screens = {w: tmux.capture(self.srv, row["tmux"], w) for w in shown}
        parts = []
        for window, captured in screens.items():
            screen = captured or []
            while screen and not screen[-1].strip():
                screen.pop()
            # the bottom of the screen, where the prompt is, as much of it as the box holds
            keep = 5 if self.view == "servers" else self.preview.content_size.height or 200
            parts.append(
                ("\033[1m── " + window + " ──\033[0m\n" if self.view == "servers" else "")
                + "\n".join(screen[-keep:])
            )
        return key, "\n".join(parts) or "(no window)"

    def _show_preview(self, key: tuple[str, str], text: str) -> None:
        pane = self.preview
        name = key[0].split("/", 1)[-1] if key[0] else ""
        pane.border_title = f"{name} · {self.view}" if name else ""
        if getattr(pane, "_shown", None) != text:
            pane._shown = text  # type: ignore[attr-defined]
            # a screen is cut at the box's edge, as tmux shows a pane in a narrower
            # window; a message (one line) wraps
            pane.set_class("\n" in text, "screen")
            pane.update(Text.from_ansi(text))
        self._preview_key = key

    def action_view(self) -> None:
        """Cycle the preview: agent window, server windows, git diff --stat."""
        self.view = self.VIEWS[(self.VIEWS.index(self.view) + 1) % len(self.VIEWS)]
        self._preview_key = None
        self.poll()

    def say(self, text: str) -> None:
        self.message_bar.update(Text.from_ansi(text))

    def message(self) -> str:
        return str(self.message_bar.render())

    # -- keys ---------------------------------------------------------------------------

    def _chosen(self, what: str) -> tuple[board_.Line, dict[str, Any]] | None:
        """The selected session's line and row, or None after saying why there is none."""
        line = self.selected()
        if line is None or line.row is None:
            self.say(f"{what}: select a session first")
            return None
        return line, line.row

    def _say_not_running(self, what: str, line: board_.Line) -> None:
        self.say(f"{what}: {_not_running(line)}")

    @on(DataTable.RowSelected)
    def _enter(self) -> None:
        self.action_switch()

    def action_switch(self) -> None:
        line = self.selected()
        if line is None or line.row is None:
            return
        if line.host != board_.LOCAL:
            argv = remote.attach_argv(self.hosts[line.host], line.name, output.program())
            self._hand_over(argv, None)
            return
        if self.project is None:
            return
        if not line.row.get("running"):
            self.say(_not_running(line))
            return
        if line.state == "waiting":  # as `next` does: where the agent asks
            live_.at_agent(self.project, self.srv, line.row["tmux"])
        argv, switch = tmux.attach_argv(self.project.settings.tmux_socket, line.row["tmux"])
        if switch:
            proc = subprocess.run(argv, capture_output=True, text=True)
            if proc.returncode != 0:
                self.say(f"tmux switch-client failed: {proc.stderr.strip()}")
            return
        self._hand_over(argv, tmux.outside_env())

    def _hand_over(self, argv: list[str], env: dict[str, str] | None) -> None:
        """Give the terminal to `argv` (tmux attach, ssh) and come back when it ends."""
        try:
            with self.suspend():
                subprocess.run(argv, env=env)
        except SuspendNotSupported:
            self.say("cannot hand over this terminal; run: " + " ".join(argv))
            return
        self.poll()

    @work(group="operation")
    async def action_new(self) -> None:
        """A new session where the selected row is (a host's row: on that host); a name
        written ``HOST:NAME`` (``local:NAME``) says where instead."""
        line = self.selected()
        here = line.host if line is not None and line.host in self.hosts else board_.LOCAL
        prompt = (
            "New session name (also its branch):"
            if here == board_.LOCAL
            else f"New session on {here}: name (also its branch), or local:NAME for here:"
        )
        answer = await self.push_screen_wait(Ask(prompt))
        if not answer:
            return
        where, _, name = answer.rpartition(":")  # git allows no ":" in a branch name
        where = where.strip() or here
        name = name.strip()
        if not name:
            return
        if where != board_.LOCAL and where not in self.hosts:
            known = ", ".join([board_.LOCAL, *self.hosts])
            self.say(f"new: no host named {where!r} (here: {known})")
            return
        if where != board_.LOCAL:  # the host's own add, as `add --host` runs it
            host = self.hosts[where]
            await self.operate(
                f"add {name} on {where}", lambda: on_host(host, ["add", "--name", name])
            )
            return
        if self.project is None:
            self.say("new: run the dashboard inside the project's checkout to add here")
            return
        project, srv = self.project, self.srv

        def add() -> bool:
            return add_.create(project, name, srv, tasks=self.tasks)

        await self.operate(f"add {name}", add)

    @work(group="operation")
    async def action_remove(self) -> None:
        picked = self._chosen("remove")
        if picked is None:
            return
        line, row = picked
        name = line.name
        if line.host != board_.LOCAL:  # the host's own remove, as `remove --host` runs it
            host = self.hosts[line.host]

            def plan(force: bool) -> bool:
                argv = ["remove", "--name", name, "--dry-run", *(["--force"] * force)]
                return on_host(host, argv)

            def remove(force: bool) -> bool:
                return on_host(host, ["remove", "--name", name, *(["--force"] * force)])

        elif self.project is not None:
            if tmux.current_session(self.srv) == row["tmux"]:
                self.say(f"remove: the dashboard runs inside {name}'s tmux; remove it elsewhere")
                return
            project, srv, tasks = self.project, self.srv, self.tasks

            def plan(force: bool) -> bool:
                return remove_.plan(project, name, srv, force, False, tasks)

            def remove(force: bool) -> bool:
                remove_.run(project, name, srv, force=force, tasks=tasks)
                return True

        else:
            return
        ok, said = await self._said(lambda: plan(False))
        if ok:
            if await self.push_screen_wait(Confirm(said, f"Remove {name}?  y: yes · any key: no")):
                await self.operate(f"remove {name}", lambda: remove(False))
            return
        if not any("without --force" in ln for ln in said):
            await self.push_screen_wait(Confirm(said, "Refused. Any key closes."))
            return
        if not await self.push_screen_wait(
            Confirm(said, "Refused. f: see what --force would do · any key: cancel", yes="f")
        ):
            return
        ok, forced = await self._said(lambda: plan(True))
        if not ok:
            await self.push_screen_wait(Confirm(forced, "Refused even with --force. Any key."))
            return
        typed = await self.push_screen_wait(
            Ask(f"This loses the work listed above. Type {name} to remove it with --force:", forced)
        )
        if typed != name:
            self.say(f"remove {name}: not confirmed, nothing removed")
            return
        await self.operate(f"remove --force {name}", lambda: remove(True))

    async def _said(self, fn: Callable[[], object]) -> tuple[bool, list[str]]:
        """(whether `fn` succeeded, the lines it printed), run in a thread."""
        said: list[str] = []
        return await asyncio.to_thread(captured, fn, said.append), said

    @work(group="operation")
    async def action_send(self) -> None:
        """Type a line into the agent's window (`session.send`'s function; on a host, the
        host's own `send`)."""
        picked = self._chosen("send")
        if picked is None:
            return
        line, row = picked
        if not row.get("running"):
            self._say_not_running("send", line)
            return
        where = "" if line.host == board_.LOCAL else f" on {line.host}"
        text = await self.push_screen_wait(
            Ask(f"Type to {line.name}'s agent{where} (Enter sends):")
        )
        if text is None:
            return
        if line.host != board_.LOCAL:
            host, name = self.hosts[line.host], line.name

            def send() -> bool:
                return on_host(host, ["send", "--name", name, f"--text={text}"])

        elif self.project is not None:
            project, srv = self.project, self.srv

            def send() -> bool:
                live_.send(project, sessions.get(project, line.name), srv, text)
                return True

        else:
            return
        ok, said = await self._said(send)
        if ok:
            self.say(f"sent to {line.name}{where}: {text}")
        else:
            self.say(next((ln for ln in reversed(said) if ln.strip()), "send failed"))
        self.poll()

    @work(group="operation")
    async def action_restart(self) -> None:
        """Restart what died in the session (`session.restart`'s function; a program that
        runs is left alone), then wait for it as the task does. On a host: the host's own
        `restart NAME --window W` for each window that died."""
        picked = self._chosen("restart")
        if picked is None:
            return
        line, row = picked
        dead = board_.broken(row)
        if not dead:
            self.say(f"restart: nothing in {line.name} has died")
            return
        name = line.name
        if line.host != board_.LOCAL:
            host = self.hosts[line.host]
            gone = board_.died(row)  # `restart --window` would stop a program that runs
            if not gone:
                self.say(f"restart: {name}'s programs run ({', '.join(dead)} not answering)")
                return

            def restart() -> bool:
                ok = True
                for window in gone:
                    ok = on_host(host, ["restart", "--name", name, "--window", window]) and ok
                return ok

            title = f"restart {name} on {line.host} ({', '.join(gone)})"
        elif self.project is not None:
            project, srv = self.project, self.srv

            def restart() -> bool:  # a session removed meanwhile: its error, on the screen
                session = sessions.get(project, name)
                done = live_.restart_windows(project, session, srv, live=False)
                if done:
                    live_.wait(project, session, srv, done)
                return True

            title = f"restart {name} ({', '.join(dead)})"
        else:
            return
        await self.operate(title, restart)

    def action_open(self) -> None:
        """Open the frontend URL; a host's session's port is forwarded here first (as
        `session.forward` does), until the dashboard quits."""
        picked = self._chosen("open")
        if picked is None:
            return
        line, row = picked
        try:
            which, number = url_port(line.name, ports_of(row))
        except TallyError as e:
            self.say(str(e))
            return
        if line.host == board_.LOCAL:
            self._browse(f"http://localhost:{number}/")
            return
        fwd = self.forwards.get(line.key)
        if fwd is not None and fwd.thread.is_alive():
            if fwd.url:
                self._browse(fwd.url, f"(forwarded from {line.host}:{number})")
            else:
                self.say(f"forwarding {line.host}:{number}: still connecting…")
            return
        here = self.board.answers.get(board_.LOCAL)
        taken = [p for r in (here if isinstance(here, list) else []) for p in ports_of(r).values()]
        taken += [f.local for f in self.forwards.values() if f.thread.is_alive()]
        try:  # the same port here when it is free, else the next free one
            offset = ports_.next_offset({which: number}, taken)
        except TallyError as e:
            self.say(f"open: {e}")
            return
        note = f"(forwarded from {line.host}:{number} until the dashboard quits)"
        self.forwards[line.key] = fwd = Forward(
            self.hosts[line.host],
            {which: number},
            offset,
            opened=lambda url: self._from_thread(self._browse, url, note),
            ended=lambda why: self._from_thread(self.say, f"forward {line.name}: {why}"),
        )
        self.say(f"forwarding {line.host}:{number} to localhost:{fwd.local}…")
        fwd.start()

    def _from_thread(self, fn: Callable[..., object], *args: object) -> None:
        """`fn(*args)` on the screen, from a thread that may outlive it."""
        if not self.is_running:
            return
        try:
            self.call_from_thread(fn, *args)
        except RuntimeError:
            pass  # closed just now

    def _browse(self, url: str, note: str = "") -> None:
        note = f" {note}" if note else ""
        if not _has_browser():
            self.say(f"no browser here; open {url}{note}")
            return
        self.say(f"opening {url}{note}")
        import webbrowser

        self.run_worker(lambda: webbrowser.open(url), thread=True, group="browser")

    def stop_forwards(self) -> None:
        """End every forward (its SSH connection with it); called as the dashboard ends."""
        for fwd in self.forwards.values():
            fwd.stop.set()
        for fwd in self.forwards.values():
            fwd.thread.join(timeout=5)

    def on_unmount(self) -> None:
        self.stop_forwards()

    def action_filter(self) -> None:
        box = self.filter_box
        box.add_class("shown")
        box.focus()

    @on(Input.Changed, "#filter")
    def _filter(self, event: Input.Changed) -> None:
        self.query_text = event.value.strip()
        self._draw(None)

    @on(Input.Submitted, "#filter")
    def _filter_done(self) -> None:
        box = self.filter_box
        if not box.value:
            box.remove_class("shown")
        self.table.focus()

    def on_key(self, event: Any) -> None:
        box = self.filter_box
        if event.key == "escape" and box.has_focus:
            box.value = ""
            box.remove_class("shown")
            self.table.focus()

    # -- operations ---------------------------------------------------------------------

    async def operate(self, title: str, fn: Callable[[], object]) -> bool:
        """Run an operation in a thread, its step lines on an `Operation` screen."""
        if self._operating:
            self.say("another operation is still running")
            return False
        self._operating = True
        screen = Operation(title)
        await self.push_screen(screen)
        try:
            ok = await asyncio.to_thread(
                captured, fn, lambda line: self.call_from_thread(screen.add_line, line)
            )
        finally:
            self._operating = False
        screen.finish(ok)
        self.poll()
        if self.hosts:
            self.ask_hosts()
        return ok


def _has_browser() -> bool:
    """A browser that will not take over this terminal: BROWSER, a desktop, or macOS."""
    return bool(
        os.environ.get("BROWSER")
        or os.environ.get("DISPLAY")
        or os.environ.get("WAYLAND_DISPLAY")
        or sys.platform in ("darwin", "win32")
    )


def _diff_stat(project: Project, row: Mapping[str, Any]) -> str:
    """`git diff --stat` of the worktree (committed and not) against where it left the
    main checkout's branch."""
    head = repo_.main_branch(repo_.Repo(project.main), project.settings.land_into)
    here = repo_.Repo(Path(row["worktree"]))
    base = repo_.git(here, "merge-base", head, "HEAD").stdout.strip()
    if not base:
        return f"no common commit with {head}"
    stat = repo_.git(here, "diff", "--stat", "--color=always", base).stdout.rstrip()
    return stat or f"no changes against {head}"


def _not_running(line: board_.Line) -> str:
    """`line`'s session is not running, and the command that starts it (on its host)."""
    there = () if line.host == board_.LOCAL else ("--host", line.host)
    return f"{line.name} is not running; start it with: " + output.command(
        "resume", line.name, *there
    )


def on_host(host: remote.Host, argv: list[str]) -> bool:
    """Run a task on `host` as ``--host`` runs it (the host's own code), its lines through
    `output` as they come; False when it failed there."""
    out, err = _Lines(output.info), _Lines(output.info)
    try:
        result = remote.run(host, argv, caller=output.program(), streams=(out, err))
    finally:
        out.end()
        err.end()
    return bool(result.exited == 0)


class Forward:
    """A session's port on a host, forwarded here in a thread (`remote.forward`, as
    `session.forward` runs it) until `stop` is set; `opened` gets the local URL once it
    listens, `ended` why it ended by itself."""

    def __init__(
        self,
        host: remote.Host,
        ports: dict[str, int],
        offset: int,
        opened: Callable[[str], None],
        ended: Callable[[str], None],
    ) -> None:
        self.host, self.ports, self.offset = host, ports, offset
        self.opened, self.ended = opened, ended
        self.local = next(iter(ports.values())) + offset
        self.url = ""
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _ready(self, local: dict[str, int]) -> None:
        self.url = f"http://localhost:{next(iter(local.values()))}/"
        self.opened(self.url)

    def _run(self) -> None:
        try:
            remote.forward(self.host, self.ports, self.offset, self.stop, self._ready)
        except TallyError as e:
            self.ended(str(e))
        except Exception as e:  # noqa: BLE001 - a thread's end: said, not a traceback
            self.ended(str(e) or type(e).__name__)
        else:
            if not self.stop.is_set():
                self.ended("the forward ended")


def quiet(tasks: ProjectTasks | None) -> ProjectTasks | None:
    """The project's tasks as the dashboard runs them: the commands they run read no keys
    (they are the screen's) and their output goes to the operation's lines."""
    from invoke import Config

    if tasks is None:
        return None
    config = tasks.config.clone() if tasks.config is not None else Config()
    config.run.in_stream = False
    config.run.out_stream = config.run.err_stream = _Lines(output.info)
    return ProjectTasks(tasks.load, config)


def run(
    board: board_.Board,
    hosts: Mapping[str, remote.Host],
    warm: threading.Thread,
    tasks: ProjectTasks | None,
) -> None:
    app = Dashboard(board.project, board.srv, hosts, board=board, warm=warm, tasks=tasks)
    try:
        app.run()
    finally:
        app.stop_forwards()
