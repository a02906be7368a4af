"""`inv session.list` and `status`: columns, git state, JSON, ports, stale notes, tmux calls."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import libtmux
import pytest
from conftest import Sample, add_origin, commit, forge_merge, git, poll, run_cli

from tally_tasks import status, tmux
from tally_tasks.operations import add as add_op
from tally_tasks.session import Session

# Windows whose programs run without serving: a port is up only when a test serves it
IDLE = [
    {"name": "backend", "dir": "backend", "cmd": "sleep 600 # {backend_port}"},
    {"name": "frontend", "dir": "frontend", "cmd": "sleep 600 # {frontend_port}"},
    {"name": "claude", "dir": "", "cmd": "claude -n {session}"},
]


def add(sample: Sample, srv: libtmux.Server, name: str) -> Session:
    sample.write_config(windows=IDLE)
    return add_op.run(sample.project(windows=IDLE), name, srv)


def list_(
    sample: Sample, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    r = run_cli(["inv", "session.list", *args], sample.main, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    return r


def table(stdout: str) -> tuple[list[str], dict[str, dict[str, str]]]:
    """(header, NAME -> {column: cell}) from the aligned table; cells may hold spaces."""
    lines = [ln for ln in stdout.splitlines() if ln and not ln.startswith("!")]
    header = lines[0].split()
    starts = [lines[0].index(col) for col in header]
    rows = {}
    for line in lines[1:]:
        cells = [
            line[a:b].strip() for a, b in zip(starts, [*starts[1:], len(line) + 1], strict=True)
        ]
        rows[cells[0]] = dict(zip(header, cells, strict=True))
    return header, rows


def json_rows(sample: Sample, *args: str) -> dict[str, dict[str, Any]]:
    r = list_(sample, "--json", *args)
    return {row["name"]: row for row in json.loads(r.stdout)}


# --- the table ------------------------------------------------------------------------------


def test_table_columns(sample: Sample, srv: libtmux.Server) -> None:
    session = add(sample, srv, "x")
    backend, frontend = session.ports["backend"], session.ports["frontend"]
    header, rows = table(list_(sample).stdout)
    assert header == [
        *["NAME", "BRANCH", "RUNNING", "STATUS", "BACKEND", "FRONTEND", "AGE", "WORKTREE"]
    ]
    row = rows["x"]
    assert row["BRANCH"] == "x" and row["RUNNING"] == "yes"
    assert (row["BACKEND"], row["FRONTEND"]) == (f"{backend} (down)", f"{frontend} (down)")
    assert row["AGE"][-1] in "sm" and row["AGE"][:-1].isdigit()
    assert row["WORKTREE"] == str(session.worktree)

    header, _ = table(list_(sample, "--git").stdout)
    assert header == [
        *["NAME", "BRANCH", "RUNNING", "STATUS", "BACKEND", "FRONTEND"],
        *["AHEAD", "BEHIND", "MERGED", "DIRTY", "AGE", "WORKTREE"],
    ]


def test_no_sessions_says_how_to_make_one(sample: Sample) -> None:
    r = list_(sample)
    assert r.stdout.strip() == "no sessions; create one with: inv session.add --name NAME"
    assert json.loads(list_(sample, "--json").stdout) == []


def test_git_state_ahead_behind_dirty(sample: Sample, srv: libtmux.Server) -> None:
    wts = {n: add(sample, srv, n).worktree for n in ("clean", "ahead", "dirty", "changed")}
    (wts["ahead"] / "feature.txt").write_text("work\n")
    git(wts["ahead"], "add", "feature.txt")
    git(wts["ahead"], "commit", "-q", "-m", "work")
    (wts["dirty"] / "notes.txt").write_text("mine\n")
    (wts["changed"] / "backend" / "manage.py").write_text("# changed\n")
    (sample.main / "main.txt").write_text("on main\n")
    git(sample.main, "add", "main.txt")
    git(sample.main, "commit", "-q", "-m", "on main")
    want = {  # name: (ahead, behind, dirty); "clean" has the tool's links and copies only
        "clean": (0, 1, False),
        "ahead": (1, 1, False),
        "dirty": (0, 1, True),
        "changed": (0, 1, True),
    }
    _, rows = table(list_(sample, "--git").stdout)
    got = {n: (r["AHEAD"], r["BEHIND"], r["DIRTY"]) for n, r in rows.items()}
    yes_no = {True: "yes", False: "no"}
    assert got == {n: (str(a), str(b), yes_no[d]) for n, (a, b, d) in want.items()}
    # no commit yet: nothing to merge; commits of its own: not merged
    assert {n: r["MERGED"] for n, r in rows.items()} == {
        "clean": "-",
        "ahead": "no",
        "dirty": "-",
        "changed": "-",
    }
    data = json_rows(sample)
    assert {n: (r["ahead"], r["behind"], r["dirty"]) for n, r in data.items()} == want
    assert {r["merged"] for r in data.values()} == {None}


@pytest.mark.parametrize("how", ["squash", "rebase"])
def test_git_state_sees_a_branch_merged_on_the_forge(
    sample: Sample, srv: libtmux.Server, how: str
) -> None:
    bare = add_origin(sample.main)
    wts = {n: add(sample, srv, n).worktree for n in ("done", "wip")}
    for name, wt in wts.items():
        commit(wt, f"{name}-1.txt", "1\n", f"{name} one")
        commit(wt, f"{name}-2.txt", "2\n", f"{name} two")
    git(wts["done"], "push", "-q", "-u", "origin", "done")
    forge_merge(bare, "done", how)
    git(sample.main, "fetch", "-q", "--prune")
    _, rows = table(list_(sample, "--git").stdout)
    want = {"squash": "squashed", "rebase": "rebased"}[how]
    assert {n: (r["AHEAD"], r["MERGED"]) for n, r in rows.items()} == {
        "done": ("2", want),
        "wip": ("2", "no"),
    }
    assert {n: r["merged"] for n, r in json_rows(sample).items()} == {"done": want, "wip": None}


# --- JSON -----------------------------------------------------------------------------------

KEYS = {
    "name": str,
    "branch": str,
    "worktree": str,
    "running": bool,
    "tmux": str,
    "backend_port": int,
    "frontend_port": int,
    "listening": dict,
    "created": str,
    "worktree_exists": bool,
    "status": str,
    "agent": dict,
    "windows": dict,
}
GIT_KEYS = {"dirty": bool, "ahead": int, "behind": int, "merged": type(None)}


@pytest.mark.parametrize(
    ("args", "keys"),
    [([], {**KEYS, **GIT_KEYS}), (["--brief"], KEYS)],
    ids=["full", "brief"],
)
def test_json_keys_and_types(
    sample: Sample, srv: libtmux.Server, args: list[str], keys: dict[str, type]
) -> None:
    session = add(sample, srv, "x")
    [row] = json_rows(sample, *args).values()
    assert set(row) == set(keys)
    for key, kind in keys.items():
        assert type(row[key]) is kind, (key, row[key])
    assert row["running"] is True and row["tmux"] == "tally-x"
    assert row["backend_port"] == session.ports["backend"]
    assert row["listening"] == {"backend": False, "frontend": False}
    assert set(row["windows"]) == {"backend", "frontend", "claude"}
    assert set(row["agent"]) == {"state", "since", "reason", "session_id"}
    created = datetime.strptime(row["created"], "%Y-%m-%dT%H:%M:%S%z")
    assert abs(created.timestamp() - time.time()) < 600


def test_json_stays_valid_with_stale_warnings_on_stderr(
    sample: Sample, srv: libtmux.Server
) -> None:
    add(sample, srv, "x")
    stray = sample.main.parent / "tally-stray"
    git(sample.main, "worktree", "add", "-q", "-b", "stray", str(stray))
    for args in ([], ["--brief"]):
        r = list_(sample, "--json", *args)
        assert [row["name"] for row in json.loads(r.stdout)] == ["x"]
        assert f"worktree {stray} is not in .tally-sessions" in r.stderr
        assert "stale" in r.stderr


# --- ports ----------------------------------------------------------------------------------


def test_a_port_something_listens_on_is_not_down(
    sample: Sample, srv: libtmux.Server, serve: Callable[[int, Path], subprocess.Popen[bytes]]
) -> None:
    session = add(sample, srv, "x")
    backend, frontend = session.ports["backend"], session.ports["frontend"]
    serve(backend, session.worktree / "backend")
    _, rows = table(list_(sample).stdout)
    assert (rows["x"]["BACKEND"], rows["x"]["FRONTEND"]) == (str(backend), f"{frontend} (down)")
    assert json_rows(sample, "--brief")["x"]["listening"] == {"backend": True, "frontend": False}


# --- sessions that do not add up -------------------------------------------------------------


def test_a_missing_worktree_is_marked_with_the_fix(sample: Sample, srv: libtmux.Server) -> None:
    add(sample, srv, "x")
    add(sample, srv, "ok")
    tmux.kill(srv, "tally-x")
    wt = sample.main.parent / "tally-x"
    shutil.rmtree(wt)
    r = list_(sample, "--git")
    _, rows = table(r.stdout)
    assert rows["x"]["WORKTREE"] == f"{wt} (missing)"
    assert rows["x"]["DIRTY"] == "?" and rows["ok"]["DIRTY"] == "no"
    assert rows["ok"]["WORKTREE"] == str(sample.main.parent / "tally-ok")
    [note] = [ln for ln in r.stdout.splitlines() if ln.startswith("!")]
    assert note.split()[1] == "stale"
    assert (
        f"worktree {wt} is gone" in note
        and "inv session.remove --name x" in note
        and "--force" not in note
    )
    row = json_rows(sample)["x"]
    assert (row["worktree_exists"], row["dirty"], row["running"]) == (False, None, False)


def unfinished(sample: Sample, name: str) -> None:
    """What an add killed after its ports step leaves: an entry marked creating, by a pid
    that is gone."""
    r = run_cli(["inv", "session.ports", "--name", name], sample.main)
    assert r.returncode == 0, r.stderr
    reg = sample.registry()
    reg[name].update(state="creating", pid=2**22 + 1)  # above Linux's pid_max default
    (sample.main / ".tally-sessions").write_text(json.dumps(reg))


def test_a_session_made_step_by_step_is_not_unfinished(sample: Sample) -> None:
    for step in ("ports", "worktree", "links", "env", "tmux"):
        r = run_cli(["inv", f"session.{step}", "--name", "z"], sample.main)
        assert r.returncode == 0, (step, r.stderr)
    r = list_(sample)
    _, rows = table(r.stdout)
    assert rows["z"]["RUNNING"] == "yes" and "unfinished" not in r.stdout + r.stderr
    r = run_cli(["inv", "session.add", "z"], sample.main)
    assert r.returncode == 1 and "already exists" in r.stderr


def test_an_unfinished_add_is_marked(sample: Sample) -> None:
    unfinished(sample, "y")
    _, rows = table(list_(sample).stdout)
    assert rows["y"]["RUNNING"] == "no (unfinished)"
    assert rows["y"]["WORKTREE"].endswith("tally-y (missing)")
    assert json_rows(sample)["y"]["state"] == "creating"


def test_a_tmux_session_of_ours_without_an_entry_is_a_stale_note(
    sample: Sample, srv: libtmux.Server
) -> None:
    add(sample, srv, "ghost")
    (sample.main / ".tally-sessions").write_text("{}\n")
    r = list_(sample)
    assert "tmux session tally-ghost has no registry entry" in r.stdout
    assert "tmux kill-session -t =tally-ghost" in r.stdout


def test_a_sibling_projects_tmux_session_is_not_stale(sample: Sample, srv: libtmux.Server) -> None:
    """`Dev/tally-mobile` is another repository with its own tmux session `tally-mobile`."""
    sibling = sample.main.parent / "tally-mobile"
    sibling.mkdir()
    git(sibling, "init", "-q")
    srv.cmd("new-session", "-d", "-s", "tally-mobile", "-c", str(sibling))
    poll(lambda: tmux.pane_paths(srv).get("tally-mobile") == {str(sibling)})
    add(sample, srv, "x")
    r = list_(sample)
    assert "stale" not in r.stdout + r.stderr
    assert status.stale(sample.project(), srv, sample.registry()) == []


# --- one tmux call --------------------------------------------------------------------------


@pytest.mark.parametrize("sessions", [1, 3], ids=["one-session", "three-sessions"])
@pytest.mark.parametrize("args", [[], ["--git"], ["--json"]], ids=["table", "git", "json"])
def test_list_runs_tmux_once_whatever_the_number_of_sessions(
    sample: Sample, srv: libtmux.Server, sessions: int, args: list[str]
) -> None:
    """One `list-panes` for the rows and the stale check alike; none per row."""
    for i in range(sessions):
        add(sample, srv, f"s{i}")
    real = shutil.which("tmux")
    assert real
    wrap = sample.root / "wrap"
    wrap.mkdir()
    log = sample.root / "tmux.log"
    (wrap / "tmux").write_text(
        f'#!/bin/sh\necho "$*" >> {shlex.quote(str(log))}\nexec {shlex.quote(real)} "$@"\n'
    )
    (wrap / "tmux").chmod(0o755)
    r = list_(sample, *args, env={"PATH": f"{wrap}:{os.environ['PATH']}"})
    assert f"s{sessions - 1}" in r.stdout
    calls = log.read_text().splitlines()
    assert len(calls) == 1, calls
    assert calls[0].startswith("-u -Ldefault list-panes -a")  # its own server, named


# --- age ------------------------------------------------------------------------------------

NOW = 1_700_000_000.0


def local(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(t))


def zoned(t: float, hours: int) -> str:
    return datetime.fromtimestamp(t, timezone(timedelta(hours=hours))).strftime(
        "%Y-%m-%dT%H:%M:%S%z"
    )


AGE_CASES = [
    ("none", None, "-"),
    ("empty", "", "-"),
    ("garbage", "yesterday", "-"),
    ("just-now", local(NOW), "0s"),
    ("seconds", local(NOW - 59), "59s"),
    ("one-minute", local(NOW - 60), "1m"),
    ("minutes", local(NOW - 3599), "59m"),
    ("one-hour", local(NOW - 3600), "1h"),
    ("hours", local(NOW - 86399), "23h"),
    ("one-day", local(NOW - 86400), "1d"),
    ("days", local(NOW - 10 * 86400 - 5), "10d"),
    ("future-clock-skew", local(NOW + 120), "0s"),
    ("as-add-writes-it", time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(NOW - 7200)), "2h"),
    ("another-zone", zoned(NOW - 5400, 14), "1h"),
    ("west-zone", zoned(NOW - 300, -11), "5m"),
    ("utc-z", zoned(NOW - 300, 0).removesuffix("+0000") + "Z", "5m"),
    ("fraction", local(NOW - 90) + ".123456", "1m"),
    ("colon-offset", zoned(NOW - 300, 2)[:-2] + ":" + zoned(NOW - 300, 2)[-2:], "5m"),
    ("no-such-day", "2023-02-30T10:00:00+0200", "-"),
    ("no-such-offset", local(NOW - 300) + "+0260", "5m"),  # as strptime: the time, local
]


@pytest.mark.parametrize(
    ("created", "want"), [c[1:] for c in AGE_CASES], ids=[c[0] for c in AGE_CASES]
)
def test_age(created: str | None, want: str) -> None:
    assert status.age(created, now=NOW) == want


def test_an_unfinished_session_says_how_to_finish_or_drop_it(sample: Sample) -> None:
    unfinished(sample, "y")
    r = list_(sample)
    [note] = [ln for ln in r.stdout.splitlines() if ln.startswith("!")]
    assert "session y is unfinished" in note
    assert (
        "inv session.add --name y" in note
        and "inv session.remove --name y" in note
        and "--force" not in note
    )
    assert "is gone" not in note


def test_a_port_another_program_holds_is_not_shown_as_the_sessions(
    sample: Sample, srv: libtmux.Server, serve: Callable[[int, Path], subprocess.Popen[bytes]]
) -> None:
    session = add(sample, srv, "x")
    srv.cmd("kill-session", "-t", "=tally-x")
    serve(session.ports["frontend"], sample.root)  # not the session's: outside its worktree
    _, rows = table(list_(sample).stdout)
    assert rows["x"]["FRONTEND"] == f"{session.ports['frontend']} (other)"
    row = json_rows(sample, "--brief")["x"]
    assert row["listening"]["frontend"] is False and row["foreign"] == ["frontend"]


def test_file_names_that_are_not_utf8_do_not_end_the_listing(
    sample: Sample, srv: libtmux.Server
) -> None:
    session = add(sample, srv, "x")
    with open(os.fsencode(session.worktree) + b"/caf\xe9.txt", "wb"):
        pass
    assert json_rows(sample)["x"]["dirty"] is True
    assert "yes" in table(list_(sample, "--git").stdout)[1]["x"]["DIRTY"]


def test_a_running_sessions_port_held_by_another_program_is_marked(
    sample: Sample, srv: libtmux.Server, serve: Callable[[int, Path], subprocess.Popen[bytes]]
) -> None:
    """After a reboot, say: the session runs, but its server could not bind its port."""
    session = add(sample, srv, "x")
    serve(session.ports["backend"], sample.root)
    _, rows = table(list_(sample).stdout)
    assert rows["x"]["RUNNING"] == "yes"
    assert rows["x"]["BACKEND"] == f"{session.ports['backend']} (other)"


def test_the_sessions_own_server_is_plain(
    sample: Sample, srv: libtmux.Server, serve: Callable[[int, Path], subprocess.Popen[bytes]]
) -> None:
    session = add(sample, srv, "x")
    serve(session.ports["backend"], session.worktree / "backend")
    _, rows = table(list_(sample).stdout)
    assert rows["x"]["BACKEND"] == str(session.ports["backend"])
    assert json_rows(sample, "--brief")["x"]["listening"]["backend"] is True
