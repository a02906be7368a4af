"""tmux sessions against a real tmux server on a private socket, through both server kinds."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import libtmux
import pytest
from conftest import Sample, pane, poll

from tally_tasks import tmux
from tally_tasks.errors import TallyError
from tally_tasks.tmux import WindowRun


@pytest.fixture(params=["libtmux", "tally"])
def server(request: pytest.FixtureRequest, srv: libtmux.Server) -> tmux.TmuxServer:
    """The same private server, seen through libtmux or through tally's own `tmux.Server`."""
    return srv if request.param == "libtmux" else tmux.Server()


@pytest.fixture
def dirs(tmp_path: Path) -> dict[str, Path]:
    found = {}
    for name in ("a", "b", "c"):
        found[name] = tmp_path / "work" / name
        found[name].mkdir(parents=True)
    return found


def panes(srv: tmux.TmuxServer, name: str) -> list[tuple[str, str]]:
    """(window name, pane folder) per window of session `name`, in window order."""
    out = srv.cmd(
        "list-panes", "-s", "-t", f"={name}", "-F", "#{window_name}\t#{pane_current_path}"
    ).stdout
    return [(w, p) for w, _, p in (line.partition("\t") for line in out)]


def session_id(srv: tmux.TmuxServer, name: str) -> str:
    """tmux's id for session `name` (a recreated session gets a new one)."""
    out = srv.cmd("list-sessions", "-F", "#{session_name} #{session_id}").stdout
    [found] = [line.split()[1] for line in out if line.split()[0] == name]
    return str(found)


def idle(name: str, folder: Path) -> WindowRun:
    return WindowRun(name, folder, "")


# --- create ---------------------------------------------------------------------------------


def test_create_makes_windows_in_order_in_their_folders(
    server: tmux.TmuxServer, dirs: dict[str, Path]
) -> None:
    runs = [idle("backend", dirs["b"]), idle("frontend", dirs["a"]), idle("claude", dirs["c"])]
    tmux.create(server, "tally-x", runs, {})
    assert tmux.window_names(server, "tally-x") == ["backend", "frontend", "claude"]
    want = [("backend", str(dirs["b"])), ("frontend", str(dirs["a"])), ("claude", str(dirs["c"]))]
    poll(lambda: panes(server, "tally-x") == want)


def test_create_types_each_line_into_its_window_with_the_env(
    sample: Sample, server: tmux.TmuxServer, dirs: dict[str, Path]
) -> None:
    runs = [
        WindowRun("one", dirs["a"], "export TALLY_ACTIVATED=yes && python one 'two words'"),
        WindowRun("two", dirs["b"], "npm run dev"),
    ]
    tmux.create(server, "tally-x", runs, {"TALLY_SESSION": "x", "TALLY_BACKEND_PORT": "8123"})
    py = sample.wait_calls("python")[0]
    assert (py["argv"], py["cwd"], py["activated"]) == (["one", "two words"], str(dirs["a"]), "yes")
    assert py["env"]["TALLY_SESSION"] == "x"
    assert py["env"]["TALLY_BACKEND_PORT"] == "8123"
    npm = sample.wait_calls("npm")[0]
    assert (npm["argv"], npm["cwd"], npm["activated"]) == (["run", "dev"], str(dirs["b"]), None)
    assert npm["env"]["TALLY_SESSION"] == "x"  # later windows inherit the session's env


@pytest.mark.parametrize(
    ("line", "argv"),
    [
        ("python semi;", ["semi"]),
        ("python one; python two;", ["two"]),
        ("python escaped \\;", ["escaped", ";"]),
        ("python -- -t =x", ["--", "-t", "=x"]),
    ],
    ids=["trailing-semicolon", "two-commands", "escaped-semicolon", "dashes"],
)
def test_typed_line_runs_exactly_as_written(
    sample: Sample, srv: libtmux.Server, dirs: dict[str, Path], line: str, argv: list[str]
) -> None:
    tmux.create(srv, "tally-x", [WindowRun("w", dirs["a"], line)], {})
    want = line.count("python")
    calls = sample.wait_calls("python", want)
    assert calls[-1]["argv"] == argv
    assert len(calls) == want
    # the shell saw the line as written, trailing `;` included
    poll(lambda: line in pane(srv, "=tally-x:=w"))


def test_create_refuses_a_duplicate_and_leaves_the_running_one(
    server: tmux.TmuxServer, dirs: dict[str, Path]
) -> None:
    tmux.create(server, "tally-x", [idle("one", dirs["a"])], {})
    with pytest.raises(TallyError, match="tmux session tally-x already exists"):
        tmux.create(server, "tally-x", [idle("two", dirs["b"]), idle("three", dirs["c"])], {})
    assert tmux.window_names(server, "tally-x") == ["one"]


def test_create_without_windows_is_refused(srv: libtmux.Server) -> None:
    with pytest.raises(TallyError, match="tally.windows is empty"):
        tmux.create(srv, "tally-x", [], {})
    assert tmux.running(srv) == set()


def test_create_many_starts_all_in_one_go_and_skips_a_running_one(
    server: tmux.TmuxServer, dirs: dict[str, Path]
) -> None:
    tmux.create(server, "tally-a", [idle("w", dirs["a"])], {})
    before = session_id(server, "tally-a")
    failed = tmux.create_many(
        server,
        [
            ("tally-a", [idle("w", dirs["a"])], {}),
            ("tally-b", [idle("w", dirs["b"]), idle("v", dirs["c"])], {"TALLY_SESSION": "b"}),
        ],
    )
    assert failed == []
    assert tmux.running(server) == {"tally-a", "tally-b"}
    assert tmux.window_names(server, "tally-b") == ["w", "v"]
    assert session_id(server, "tally-a") == before
    assert tmux.create_many(server, []) == []


# --- formats: tmux expands #(...), #S, #{...} in -s, -n and -c ---------------------------------

FORMAT_NAMES = [
    ("hash", "team#Sharp"),
    ("brace", "x#{session_name}"),
    ("command", "x#(touch PWNED)"),
    ("double", "x##y"),
    ("trailing", "x#"),
    ("conditional", "#{?session_name,a,b}"),
]


@pytest.mark.parametrize("folder", [n for _, n in FORMAT_NAMES], ids=[i for i, _ in FORMAT_NAMES])
def test_folders_and_window_names_with_formats_are_taken_literally(
    server: tmux.TmuxServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    folder: str,
) -> None:
    monkeypatch.chdir(tmp_path)  # where tmux would run a #(...) job
    first, second, third, fourth = (tmp_path / f"{folder}-{i}" for i in range(4))
    for d in (first, second, third, fourth):
        d.mkdir()
    runs = [idle(f"w{folder}", first), idle(f"v{folder}", second)]
    tmux.create(server, "tally-x", runs, {"TALLY_SESSION": "x#(touch PWNED-env)"})
    tmux.add_windows(server, "tally-x", [idle(f"u{folder}", third)], {})
    tmux.respawn(server, f"=tally-x:=u{folder}", fourth, {})  # respawn-pane -c is expanded too
    want = [(f"w{folder}", str(first)), (f"v{folder}", str(second)), (f"u{folder}", str(fourth))]
    poll(lambda: panes(server, "tally-x") == want)
    assert tmux.window_names(server, "tally-x") == [w for w, _ in want]
    assert tmux.windows(server, "tally-x") == dict(want)
    env = server.cmd("show-environment", "-t", "=tally-x", "TALLY_SESSION").stdout
    assert env == ["TALLY_SESSION=x#(touch PWNED-env)"]  # -e is not expanded: kept as given
    assert list(tmp_path.rglob("PWNED*")) == []


def test_literal_doubles_every_hash() -> None:
    assert tmux.literal("a#(b)#{c}##d") == "a##(b)##{c}####d"
    assert tmux.literal("plain/path") == "plain/path"


# --- exact targeting ------------------------------------------------------------------------


def test_a_name_never_matches_a_longer_session_by_prefix(
    server: tmux.TmuxServer, dirs: dict[str, Path]
) -> None:
    tmux.create(server, "tally-ab", [idle("w", dirs["a"])], {})
    assert tmux.exists(server, "tally-ab")
    assert not tmux.exists(server, "tally-a")
    assert tmux.window_names(server, "tally-a") == []
    assert tmux.kill(server, "tally-a") is False
    assert tmux.running(server) == {"tally-ab"}

    tmux.create(server, "tally-a", [idle("w", dirs["b"])], {})
    assert tmux.running(server) == {"tally-a", "tally-ab"}
    assert tmux.kill(server, "tally-a") is True
    assert tmux.running(server) == {"tally-ab"}
    assert tmux.exists(server, "tally-ab")
    assert not tmux.exists(server, "tally-a")


def test_add_windows_targets_the_exact_session(
    server: tmux.TmuxServer, dirs: dict[str, Path]
) -> None:
    tmux.create(server, "tally-ab", [idle("w", dirs["a"])], {})
    tmux.create(server, "tally-a", [idle("w", dirs["a"])], {})
    tmux.add_windows(server, "tally-a", [idle("v", dirs["b"])], {})
    assert tmux.window_names(server, "tally-a") == ["w", "v"]
    assert tmux.window_names(server, "tally-ab") == ["w"]


# --- no server, absent sessions -------------------------------------------------------------


def test_no_server_running_means_nothing_runs(server: tmux.TmuxServer) -> None:
    assert tmux.running(server) == set()
    assert tmux.pane_paths(server) == {}
    assert tmux.exists(server, "tally-x") is False
    assert tmux.window_names(server, "tally-x") == []
    assert tmux.kill(server, "tally-x") is False


def test_shell_and_windows_answer_as_both_questions_asked_apart(
    server: tmux.TmuxServer, dirs: dict[str, Path]
) -> None:
    """No server; a server without the session (an exact name: tally-xy is not tally-x);
    the session: the same answers as `default_shell` and `windows`, from one call."""
    assert tmux.shell_and_windows(server, "tally-x") == (None, None)
    tmux.create(server, "tally-xy", [idle("w", dirs["a"])], {})
    shell = tmux.default_shell(server)
    assert shell and os.path.isabs(shell)
    assert tmux.windows(server, "tally-x") is None  # tally-xy's are not its
    assert tmux.shell_and_windows(server, "tally-x") == (shell, None)
    tmux.create(server, "tally-x", [idle("w", dirs["a"]), idle("v#(x)", dirs["b"])], {})
    want = {"w": str(dirs["a"]), "v#(x)": str(dirs["b"])}
    poll(lambda: tmux.windows(server, "tally-x") == want)
    assert tmux.shell_and_windows(server, "tally-x") == (shell, want)


def test_kill_an_absent_session_on_a_live_server(
    server: tmux.TmuxServer, dirs: dict[str, Path]
) -> None:
    tmux.create(server, "tally-y", [idle("w", dirs["a"])], {})
    assert tmux.kill(server, "tally-x") is False
    assert tmux.running(server) == {"tally-y"}


def test_pane_paths_maps_sessions_to_their_folders(
    server: tmux.TmuxServer, dirs: dict[str, Path]
) -> None:
    tmux.create(server, "tally-x", [idle("w", dirs["a"]), idle("v", dirs["b"])], {})
    tmux.create(server, "tally-y", [idle("w", dirs["c"])], {})
    want = {"tally-x": {str(dirs["a"]), str(dirs["b"])}, "tally-y": {str(dirs["c"])}}
    poll(lambda: tmux.pane_paths(server) == want)


# --- add_windows ----------------------------------------------------------------------------


def test_add_windows_adds_a_missing_window_and_runs_its_line(
    sample: Sample, server: tmux.TmuxServer, dirs: dict[str, Path]
) -> None:
    tmux.create(server, "tally-x", [idle("backend", dirs["a"])], {"TALLY_SESSION": "x"})
    runs = [WindowRun("frontend", dirs["b"], "npm run dev;"), idle("claude", dirs["c"])]
    tmux.add_windows(server, "tally-x", runs, {"TALLY_SESSION": "x", "TALLY_FRONTEND_PORT": "7"})
    assert tmux.window_names(server, "tally-x") == ["backend", "frontend", "claude"]
    npm = sample.wait_calls("npm")[0]
    assert (npm["argv"], npm["cwd"]) == (["run", "dev"], str(dirs["b"]))
    assert npm["env"]["TALLY_FRONTEND_PORT"] == "7"
    poll(lambda: ("claude", str(dirs["c"])) in panes(server, "tally-x"))


def test_add_windows_to_an_absent_session_fails_clearly(
    server: tmux.TmuxServer, dirs: dict[str, Path]
) -> None:
    tmux.create(server, "tally-xy", [idle("w", dirs["a"])], {})
    with pytest.raises(TallyError, match="tmux could not add windows to tally-x"):
        tmux.add_windows(server, "tally-x", [idle("v", dirs["b"])], {})
    assert tmux.window_names(server, "tally-xy") == ["w"]


def test_socket_path_is_where_tmux_puts_its_socket(srv: libtmux.Server) -> None:
    """attach decides switch-client (same server) or a new client by this path."""
    for name in ("", "tally-test"):
        sock = ["-L", name] if name else []
        subprocess.run(["tmux", *sock, "new-session", "-d", "-s", "probe"], check=True)
        said = subprocess.run(
            ["tmux", *sock, "display-message", "-p", "-t", "=probe", "#{socket_path}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        assert os.path.realpath(said) == os.path.realpath(tmux.socket_path(name))
        subprocess.run(["tmux", *sock, "kill-server"], capture_output=True)


def test_inside_another_servers_pane_tally_still_talks_to_its_own(
    srv: libtmux.Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without -L, tmux run in a pane of another server ($TMUX) asks that server: attach
    said a running session "is not running", and resume would have started it there."""
    srv.cmd("new-session", "-d", "-s", "tally-x")
    other = ["tmux", "-L", "tally-test-other"]
    subprocess.run([*other, "new-session", "-d", "-s", "elsewhere"], check=True)
    try:
        monkeypatch.setenv("TMUX", f"{tmux.socket_path('tally-test-other')},1,0")
        assert tmux.exists(tmux.server(""), "tally-x")
        assert tmux.running(tmux.server("")) == {"tally-x"}
    finally:
        subprocess.run([*other, "kill-server"], capture_output=True)
        # the teardown's kill-server would ask the other server too, and leave ours running
        monkeypatch.delenv("TMUX")


@pytest.mark.parametrize(
    ("socket_name", "line"),
    [("", "tmux attach -t =tally-x"), ("my sock", "tmux -L 'my sock' attach -t =tally-x")],
    ids=["default", "socket-quoted"],
)
def test_one_attach_line(socket_name: str, line: str) -> None:
    assert shlex.join(tmux.attach_argv(socket_name, "tally-x")[0]) == line


# --- a line typed once its shell reads: shown once -------------------------------------------

LINE = "printf 'ran-%s\\n' ok"  # the same words in bash, zsh, fish and sh
# each shell's rc file, made slow: a line typed at once would land before its editor starts
RC = {"sh": ".profile", "bash": ".profile", "zsh": ".zshrc", "fish": ".config/fish/config.fish"}


def shell_of(name: str, home: Path, monkeypatch: pytest.MonkeyPatch, rc: str = "") -> str:
    """Start the server's windows in shell `name` (its $SHELL), whose rc file ends with
    a pause (and `rc`)."""
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (CI installs it: .ci/run)")
    file = home / RC[name]
    file.parent.mkdir(parents=True, exist_ok=True)
    with file.open("a") as f:
        f.write(f"\nsleep 0.2\n{rc}\n")
    monkeypatch.setenv("SHELL", path)
    return path


def screen(srv: tmux.TmuxServer, target: str) -> list[str]:
    return [ln.rstrip() for ln in srv.cmd("capture-pane", "-p", "-J", "-t", target).stdout]


def ran(srv: tmux.TmuxServer, target: str, times: int = 1) -> list[str]:
    """The pane's screen once the line has run `times` times (its output, not its echo)."""
    has = lambda: sum(ln.endswith("ran-ok") and "printf" not in ln for ln in lines) >= times  # noqa: E731
    lines: list[str] = []

    def shown() -> bool:
        nonlocal lines
        lines = screen(srv, target)
        return has()

    poll(shown)
    return lines


def typed(lines: list[str]) -> int:
    return sum(LINE in ln for ln in lines)


def start_one(srv: tmux.TmuxServer, how: str, run: WindowRun) -> str:
    """Start `run` the way `how` does; the target of its pane."""
    if how == "create":  # add
        tmux.create(srv, "s", [run], {})
    elif how == "create_many":  # resume
        assert tmux.create_many(srv, [("t", [idle("w", run.dir)], {}), ("s", [run], {})]) == []
    elif how == "add_windows":  # a window the user closed
        tmux.create(srv, "s", [idle("other", run.dir)], {})
        tmux.add_windows(srv, "s", [run], {})
    else:  # restart of a window whose shell had died
        tmux.create(srv, "s", [idle(run.name, run.dir)], {})
        srv.cmd("set-option", "-w", "-t", f"=s:={run.name}", "remain-on-exit", "on")
        poll(lambda: [ln for ln in screen(srv, f"=s:={run.name}") if ln])  # its prompt
        tmux.type_line(srv, f"=s:={run.name}", "exit")
        dead = ["list-panes", "-t", f"=s:={run.name}", "-F", "#{pane_dead}"]
        poll(lambda: srv.cmd(*dead).stdout == ["1"])
        srv.cmd("clear-history", "-t", f"=s:={run.name}")
        tmux.respawn(srv, f"=s:={run.name}", run.dir, {}, run.keys)
    return f"=s:={run.name}"


HOW = ["create", "create_many", "add_windows", "respawn"]


@pytest.mark.parametrize("name", ["bash", "zsh", "fish", "sh"])
@pytest.mark.parametrize("how", HOW)
def test_the_pane_shows_the_typed_line_once_and_keeps_it_in_history(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str, how: str
) -> None:
    shell_of(name, isolated_env / "home", monkeypatch)
    srv = tmux.Server()
    target = start_one(srv, how, WindowRun("w", tmp_path, LINE))
    lines = ran(srv, target)
    assert typed(lines) == 1, lines
    if name != "sh":  # a line editor: Up brings the line back, as if the user had typed it
        srv.cmd("send-keys", "-t", target, "Up", ";", "send-keys", "-t", target, "Enter")
        assert typed(ran(srv, target, 2)) == 2


def test_create_many_types_into_the_sessions_made_before_one_failed(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    shell_of("bash", isolated_env / "home", monkeypatch)
    srv = tmux.Server()
    tmux.create(srv, "a", [idle("w", tmp_path)], {})
    line = WindowRun("w", tmp_path, LINE)
    # "a" is running: the one tmux call stops there, "c" is then made on its own
    assert (
        tmux.create_many(
            srv, [("b", [line], {}), ("a", [idle("w", tmp_path)], {}), ("c", [line], {})]
        )
        == []
    )
    for target in ("=b:=w", "=c:=w"):
        assert typed(ran(srv, target)) == 1


def test_a_shell_whose_editor_never_reads_gets_its_line_after_the_wait(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # bash without line editing reads its terminal as it is: in canonical mode, for ever
    shell_of("bash", isolated_env / "home", monkeypatch, rc="set +o emacs +o vi")
    monkeypatch.setattr(tmux, "TYPE_WAIT", 0.5)
    srv = tmux.Server()
    started = time.monotonic()
    tmux.create(srv, "s", [WindowRun("w", tmp_path, LINE)], {})
    took = time.monotonic() - started
    assert 0.5 <= took < 5.0
    assert typed(ran(srv, "=s:=w")) == 1


def test_a_shell_without_a_line_editor_is_typed_into_at_once(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    shell_of("sh", isolated_env / "home", monkeypatch)
    monkeypatch.setattr(tmux, "TYPE_WAIT", 30.0)
    srv = tmux.Server()
    started = time.monotonic()
    tmux.create(srv, "s", [WindowRun("w", tmp_path, LINE)], {})
    assert time.monotonic() - started < 10.0
    assert typed(ran(srv, "=s:=w")) == 1


def test_a_shell_that_ends_at_start_up_is_skipped_and_the_others_typed(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    shell_of("bash", isolated_env / "home", monkeypatch, rc="case $PWD in */gone) exit;; esac")
    monkeypatch.setattr(tmux, "TYPE_WAIT", 30.0)
    (tmp_path / "gone").mkdir()
    srv = tmux.Server()
    runs = [
        WindowRun(w, tmp_path / w if w == "gone" else tmp_path, LINE) for w in "w gone v".split()
    ]
    started = time.monotonic()
    tmux.create(srv, "s", runs, {})
    assert time.monotonic() - started < 10.0
    for target in ("=s:=w", "=s:=v"):
        assert typed(ran(srv, target)) == 1
    poll(lambda: tmux.window_names(srv, "s") == ["w", "v"])


def test_ctrl_c_while_waiting_types_the_lines_left_at_once(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    shell_of("bash", isolated_env / "home", monkeypatch)  # 0.2 s in its rc: still starting
    srv = tmux.Server()

    def ctrl_c(seconds: float) -> None:
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(time, "sleep", ctrl_c)  # the first pause between rounds
        with pytest.raises(KeyboardInterrupt):
            tmux.create_many(srv, [("s", [WindowRun("w", tmp_path, LINE)], {})])
    lines = ran(srv, "=s:=w")  # typed before its shell read it: shown twice, run once
    assert sum(ln.endswith("ran-ok") and "printf" not in ln for ln in lines) == 1
