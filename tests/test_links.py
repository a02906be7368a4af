"""Shared paths from the main checkout (links.py and the links step), on real files and git.

Each mode is checked by what the filesystem says: a symlink's target, a hard link's inode
(shared with main's), a copy's inode (its own). Removing a session must never reach
through any of them into main's `node_modules` or database.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import libtmux
import pytest
from conftest import Sample, git, leftovers, run_cli

from tally_tasks import links, sessions
from tally_tasks.config import DEFAULTS, Link
from tally_tasks.errors import TallyError
from tally_tasks.operations import add as add_op
from tally_tasks.operations import remove as remove_op
from tally_tasks.session import Project, Session
from tally_tasks.steps import links as links_step

NM = "frontend/node_modules"
DB = "backend/db.sqlite3"
COPYING = ["hardlink", "reflink", "copy"]
MODES = ["symlink", *COPYING, "auto"]
BARE = ["ports", "worktree"]  # a session with no links or copies yet
NO_TMUX = ["ports", "worktree", "links", "env", "claude_perms"]


def modal(mode: str, *paths: str) -> list[dict[str, str]]:
    return [{"path": p, "mode": mode} for p in paths]


def grow_node_modules(main: Path) -> None:
    """Nested folders, a relative symlink (like `.bin/`) and a file in main's node_modules."""
    nm = main / NM
    (nm / "pkg" / "lib" / "deep").mkdir(parents=True)
    (nm / "pkg" / "lib" / "deep" / "x.js").write_text("deep\n")
    (nm / ".bin").mkdir()
    (nm / ".bin" / "tool").symlink_to("../pkg/index.js")


def tree(root: Path) -> dict[str, str]:
    """Every path under `root`: 'dir', 'file' or 'link -> target' (never followed)."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            if p.is_symlink():
                found[rel] = f"link -> {os.readlink(p)}"
            else:
                found[rel] = "dir" if p.is_dir() else "file"
    return found


def files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and not p.is_symlink()]


def db_rows(path: Path) -> int:
    with sqlite3.connect(path) as db:
        count: int = db.execute("select count(*) from t").fetchone()[0]
    return count


def main_intact(main: Path) -> None:
    assert (main / NM / "pkg" / "index.js").read_text() == "module.exports = 1\n"
    assert not (main / NM).is_symlink()
    assert db_rows(main / DB) == 0


@pytest.fixture
def made(sample: Sample, srv: libtmux.Server) -> tuple[Project, Session]:
    """A session with a worktree but no links or copies yet."""
    project = sample.project(add_steps=BARE)
    add_op.run(project, "x", srv)
    return project, sessions.get(project, "x")


def relink(sample: Sample, session: Session, links_config: Any) -> None:
    links_step.apply(sample.project(links=links_config), session)


# --- symlink mode ------------------------------------------------------------------------------


def test_symlink_is_made_then_ok_then_a_wrong_one_relinked(
    sample: Sample, made: tuple[Project, Session]
) -> None:
    _, session = made
    wt = session.worktree
    want = [Link(NM), Link(DB)]
    first = links.apply(sample.main, wt, want)
    assert [(o.ok, o.detail) for o in first] == [
        (True, f"{NM} → main"),
        (True, f"{DB} → main"),
    ]
    for rel in (NM, DB):
        assert os.readlink(wt / rel) == str(sample.main / rel)
    assert (wt / NM / "pkg" / "index.js").read_text() == "module.exports = 1\n"

    again = links.apply(sample.main, wt, want)
    assert [o.detail for o in again] == [f"{NM} ok", f"{DB} ok"]

    elsewhere = sample.root / "elsewhere"
    elsewhere.mkdir()
    (wt / DB).unlink()
    (wt / DB).symlink_to(elsewhere)
    fixed = links.apply(sample.main, wt, want)
    assert [o.detail for o in fixed] == [f"{NM} ok", f"{DB} relinked"]
    assert os.readlink(wt / DB) == str(sample.main / DB)
    assert os.listdir(elsewhere) == []
    assert leftovers(wt / DB) == [] and leftovers(wt / NM) == []
    main_intact(sample.main)


@pytest.mark.parametrize("mode", MODES)
def test_a_source_missing_in_main_is_skipped_with_a_warning(
    sample: Sample, made: tuple[Project, Session], capsys: pytest.CaptureFixture[str], mode: str
) -> None:
    _, session = made
    relink(sample, session, [*modal(mode, "frontend/.cache"), NM])
    out = capsys.readouterr().out
    assert "! links" in out
    assert "frontend/.cache missing in main, skipped" in out
    assert f"✓ links        {NM} → main" in out  # the other entry is still made
    assert not (session.worktree / "frontend" / ".cache").exists()
    assert not (session.worktree / "frontend" / ".cache").is_symlink()


@pytest.mark.parametrize("kind", ["file", "folder"])
def test_a_real_file_or_folder_in_a_symlinks_place_is_left_alone(
    sample: Sample, made: tuple[Project, Session], capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    _, session = made
    rel = DB if kind == "file" else NM
    mine = session.worktree / rel
    if kind == "file":
        mine.write_text("my own database\n")
    else:
        mine.mkdir()
        (mine / "mine.js").write_text("mine\n")
    relink(sample, session, [rel])
    assert f"{rel} exists and is not a link, left alone" in capsys.readouterr().out
    assert not mine.is_symlink()
    if kind == "file":
        assert mine.read_text() == "my own database\n"
    else:
        assert tree(mine) == {"mine.js": "file"}
    main_intact(sample.main)


@pytest.mark.parametrize("mode", MODES)
def test_a_parent_that_is_a_symlink_out_of_the_worktree_is_refused(
    sample: Sample, made: tuple[Project, Session], capsys: pytest.CaptureFixture[str], mode: str
) -> None:
    _, session = made
    (sample.main / "vendor" / "cache").mkdir(parents=True)
    (sample.main / "vendor" / "cache" / "blob").write_text("shared\n")
    outside = sample.root / "outside"
    outside.mkdir()
    (session.worktree / "vendor").symlink_to(outside)
    relink(sample, session, modal(mode, "vendor/cache"))
    assert "vendor/cache lies behind a link out of the worktree, skipped" in capsys.readouterr().out
    assert os.listdir(outside) == []
    assert (sample.main / "vendor" / "cache" / "blob").read_text() == "shared\n"


def test_a_parent_symlink_that_stays_inside_the_worktree_is_followed(
    sample: Sample, made: tuple[Project, Session]
) -> None:
    _, session = made
    (session.worktree / "web").mkdir()
    (session.worktree / "frontend").rename(session.worktree / "web" / "frontend")
    (session.worktree / "frontend").symlink_to("web/frontend")
    [outcome] = links.apply(sample.main, session.worktree, [Link(NM)])
    assert outcome.ok, outcome.detail
    assert os.readlink(session.worktree / "web" / NM) == str(sample.main / NM)


# --- hardlink mode -----------------------------------------------------------------------------


def test_hardlink_builds_a_tree_sharing_mains_inodes_and_keeps_symlinks(
    sample: Sample, made: tuple[Project, Session]
) -> None:
    _, session = made
    grow_node_modules(sample.main)
    src, dest = sample.main / NM, session.worktree / NM
    [outcome] = links.apply(sample.main, session.worktree, [Link(NM, "hardlink")])
    assert (outcome.ok, outcome.detail) == (True, f"{NM} (hardlink of main)")

    assert not dest.is_symlink() and dest.is_dir()
    assert tree(dest) == tree(src)
    assert tree(dest)[".bin/tool"] == "link -> ../pkg/index.js"
    assert (dest / ".bin" / "tool").read_text() == "module.exports = 1\n"  # inside the tree
    for f in files(src):
        twin = dest / f.relative_to(src)
        assert twin.stat().st_ino == f.stat().st_ino, f
        assert f.stat().st_nlink == 2
    for d in [src, *(p for p in src.rglob("*") if p.is_dir() and not p.is_symlink())]:
        assert (dest / d.relative_to(src)).stat().st_ino != d.stat().st_ino  # own folders
    assert leftovers(dest) == []


def test_the_hard_linked_tree_is_what_copytree_made(tmp_path: Path) -> None:
    """`links._hardlink_tree` writes out ``shutil.copytree(symlinks=True, copy_function=link,
    ignore=the caches)``: the same names, folders with their modes and times, symlinks
    (relative, absolute, dangling) as symlinks, files sharing the source's inodes, the
    caches left out of every node_modules (nested ones too)."""
    src = tmp_path / "node_modules"
    for folder in ("pkg/lib", "pkg/node_modules/.cache", ".vite/deps", ".cache", "empty"):
        (src / folder).mkdir(parents=True)
    for rel in ("pkg/index.js", "pkg/lib/x.js", "pkg/node_modules/.cache/c", ".vite/deps/d.js"):
        (src / rel).write_text(rel)
    (src / "pkg" / "lib" / "x.js").chmod(0o755)
    (src / "pkg" / "lib").chmod(0o750)
    (src / ".bin").mkdir()
    (src / ".bin" / "tool").symlink_to("../pkg/index.js")
    (src / "abs").symlink_to(src / "pkg")
    (src / "gone").symlink_to("nowhere")
    os.utime(src / "pkg", ns=(1_000_000_000, 2_000_000_000))

    def link(a: str, b: str) -> None:
        os.link(a, b, follow_symlinks=False)

    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    links._hardlink_tree(src, ours)
    shutil.copytree(src, theirs, symlinks=True, copy_function=link, ignore=links._caches)

    def described(root: Path) -> dict[str, tuple[object, ...]]:
        found: dict[str, tuple[object, ...]] = {}
        for path in sorted(root.rglob("*")):
            st = path.lstat()
            if path.is_symlink():
                found[str(path.relative_to(root))] = ("link", os.readlink(path))
            elif path.is_dir():
                found[str(path.relative_to(root))] = ("dir", st.st_mode, st.st_mtime_ns)
            else:
                found[str(path.relative_to(root))] = ("file", st.st_ino, st.st_mode)
        return found

    assert described(ours) == described(theirs)
    assert "pkg/node_modules/.cache" not in described(ours) and ".vite" not in described(ours)
    assert (ours / "pkg" / "index.js").stat().st_ino == (src / "pkg" / "index.js").stat().st_ino


def test_hardlink_again_is_a_no_op(sample: Sample, made: tuple[Project, Session]) -> None:
    _, session = made
    grow_node_modules(sample.main)
    dest = session.worktree / NM
    links.apply(sample.main, session.worktree, [Link(NM, "hardlink")])
    before = {rel: (dest / rel).lstat().st_ino for rel in tree(dest)}
    [outcome] = links.apply(sample.main, session.worktree, [Link(NM, "hardlink")])
    assert (outcome.ok, outcome.detail) == (True, f"{NM} ok (hardlink)")
    assert {rel: (dest / rel).lstat().st_ino for rel in tree(dest)} == before
    assert all(f.stat().st_nlink == 2 for f in files(sample.main / NM))
    assert leftovers(dest) == []


def test_hardlink_of_a_single_file_shares_the_database(
    sample: Sample, made: tuple[Project, Session]
) -> None:
    _, session = made
    links.apply(sample.main, session.worktree, [Link(DB, "hardlink")])
    dest = session.worktree / DB
    assert not dest.is_symlink()
    assert dest.stat().st_ino == (sample.main / DB).stat().st_ino
    with sqlite3.connect(dest) as db:
        db.execute("insert into t values (1)")
    assert db_rows(sample.main / DB) == 1  # one file, two names


# --- reflink and copy modes --------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["reflink", "copy"])
def test_reflink_and_copy_are_independent_of_main(
    sample: Sample, made: tuple[Project, Session], mode: str
) -> None:
    _, session = made
    grow_node_modules(sample.main)
    wt = session.worktree
    outcomes = links.apply(sample.main, wt, [Link(NM, mode), Link(DB, mode)])
    assert [o.detail for o in outcomes] == [f"{NM} ({mode} of main)", f"{DB} ({mode} of main)"]
    assert tree(wt / NM) == tree(sample.main / NM)  # symlinks inside stay symlinks
    for f in [*files(sample.main / NM), sample.main / DB]:
        twin = wt / f.relative_to(sample.main)
        assert not twin.is_symlink()
        assert twin.stat().st_ino != f.stat().st_ino
        assert twin.read_bytes() == f.read_bytes()

    (wt / NM / "pkg" / "index.js").write_text("module.exports = 2\n")
    (wt / NM / "pkg" / "lib" / "deep" / "x.js").unlink()
    with sqlite3.connect(wt / DB) as db:
        db.execute("insert into t values (1)")
    assert (sample.main / NM / "pkg" / "lib" / "deep" / "x.js").read_text() == "deep\n"
    main_intact(sample.main)
    assert leftovers(wt / NM) == [] and leftovers(wt / DB) == []

    again = links.apply(sample.main, wt, [Link(NM, mode)])
    assert [o.detail for o in again] == [f"{NM} ok ({mode})"]
    assert (wt / NM / "pkg" / "index.js").read_text() == "module.exports = 2\n"


# --- changing mode, staging --------------------------------------------------------------------


@pytest.mark.parametrize("mode", COPYING)
def test_moving_an_entry_from_symlink_to_another_mode_replaces_the_symlink(
    sample: Sample, made: tuple[Project, Session], capsys: pytest.CaptureFixture[str], mode: str
) -> None:
    _, session = made
    grow_node_modules(sample.main)
    wt = session.worktree
    relink(sample, session, [NM, DB])
    assert (wt / NM).is_symlink() and (wt / DB).is_symlink()
    capsys.readouterr()
    relink(sample, session, modal(mode, NM, DB))
    assert f"{NM} ({mode} of main) · {DB} ({mode} of main)" in capsys.readouterr().out
    for rel in (NM, DB):
        assert not (wt / rel).is_symlink()
        assert leftovers(wt / rel) == []
    assert tree(wt / NM) == tree(sample.main / NM)
    shared = (wt / DB).stat().st_ino == (sample.main / DB).stat().st_ino
    assert shared == (mode == "hardlink")
    main_intact(sample.main)


def test_a_copy_that_fails_midway_leaves_no_staging_behind(
    sample: Sample, made: tuple[Project, Session]
) -> None:
    """A named pipe cannot be copied, by root or anyone: copytree fails after other files."""
    _, session = made
    grow_node_modules(sample.main)
    os.mkfifo(sample.main / NM / "pkg" / "lib" / "pipe")
    with pytest.raises(TallyError, match=r"^cannot copy .*node_modules: .*is a named pipe") as err:
        links.apply(sample.main, session.worktree, [Link(NM, "copy")])
    assert "None" not in str(err.value) and "\n" not in str(err.value)
    assert not (session.worktree / NM).exists()
    assert leftovers(session.worktree / NM) == []


@pytest.fixture
def other_filesystem(tmp_path: Path) -> Iterator[Path]:
    """A folder on another filesystem than tmp_path (tmpfs /dev/shm), or skip."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("no second filesystem (/dev/shm) to hard-link across")
    path = Path(tempfile.mkdtemp(prefix="tally-test-", dir=shm))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_hardlink_across_filesystems_fails_clearly_and_leaves_nothing(
    other_filesystem: Path, tmp_path: Path
) -> None:
    main, wt = other_filesystem / "main", tmp_path / "wt"
    (main / "node_modules" / "a" / "b").mkdir(parents=True)
    for i in range(5):
        (main / "node_modules" / "a" / "b" / f"f{i}.js").write_text(f"{i}\n")
    wt.mkdir()
    with pytest.raises(TallyError) as err:
        links.apply(main, wt, [Link("node_modules", "hardlink")])
    message = str(err.value)
    assert message.startswith(f"cannot hard-link {main / 'node_modules'}")
    assert "Invalid cross-device link" in message
    assert message.endswith("hard links need one filesystem: use mode reflink or copy")
    assert "\n" not in message
    assert os.listdir(wt) == []
    [outcome] = links.apply(main, wt, [Link("node_modules", "copy")])  # the suggested fix works
    assert outcome.ok and tree(wt / "node_modules") == tree(main / "node_modules")


# --- auto mode (the default for frontend/node_modules) and the caches no tree shares ------------


def add_caches(main: Path) -> None:
    """What a Vite run and babel-loader leave in main's node_modules."""
    for cache in (".vite/deps", ".cache/babel-loader"):
        (main / NM / cache).mkdir(parents=True)
        (main / NM / cache / "_metadata.json").write_text('{"hash": "main"}\n')


def test_auto_is_the_default_a_hard_linked_tree_without_mains_caches(
    sample: Sample, srv: libtmux.Server
) -> None:
    grow_node_modules(sample.main)
    add_caches(sample.main)
    project = sample.project(add_steps=[*BARE, "links"], links=DEFAULTS["links"])
    session = add_op.run(project, "x", srv)
    src, dest = sample.main / NM, session.worktree / NM
    assert not dest.is_symlink() and dest.is_dir()
    want = {rel: kind for rel, kind in tree(src).items() if not rel.startswith((".vite", ".cache"))}
    assert tree(dest) == want
    for f in files(dest):
        assert f.stat().st_ino == (src / f.relative_to(dest)).stat().st_ino, f
    # each session's Vite writes its own cache; main's is untouched by it
    (dest / ".vite" / "deps").mkdir(parents=True)
    (dest / ".vite" / "deps" / "_metadata.json").write_text('{"hash": "session"}\n')
    assert (src / ".vite" / "deps" / "_metadata.json").read_text() == '{"hash": "main"}\n'
    [again] = links.apply(sample.main, session.worktree, project.settings.links[:1])
    assert (again.ok, again.detail) == (True, f"{NM} ok (auto)")  # caches are not "behind"
    assert leftovers(dest) == []
    main_intact(sample.main)


@pytest.mark.parametrize("mode", [*COPYING, "auto"])
def test_no_tree_takes_mains_vite_or_cache_folder(
    sample: Sample, made: tuple[Project, Session], mode: str
) -> None:
    _, session = made
    add_caches(sample.main)
    [outcome] = links.apply(sample.main, session.worktree, [Link(NM, mode)])
    assert outcome.ok, outcome.detail
    assert sorted(os.listdir(session.worktree / NM)) == ["pkg"]


def test_auto_across_filesystems_is_a_symlink_with_a_warning_saying_why(
    other_filesystem: Path, tmp_path: Path
) -> None:
    main, wt = other_filesystem / "main", tmp_path / "wt"
    (main / "node_modules" / "a").mkdir(parents=True)
    (main / "node_modules" / "a" / "f.js").write_text("1\n")
    wt.mkdir()
    for reason in ("Invalid cross-device link", "main is on another filesystem"):
        [outcome] = links.apply(main, wt, [Link("node_modules", "auto")])
        assert not outcome.ok
        assert outcome.detail.startswith("node_modules → main as a symlink: neither hard links")
        assert f"({reason}); Vite refuses files behind it (fonts, images: 403)" in outcome.detail
        assert os.readlink(wt / "node_modules") == str(main / "node_modules")
        assert sorted(os.listdir(wt)) == ["node_modules"]  # no staging left


def test_auto_is_a_hard_link_for_a_single_file(
    sample: Sample, made: tuple[Project, Session]
) -> None:
    _, session = made
    [outcome] = links.apply(sample.main, session.worktree, [Link(DB, "auto")])
    assert (outcome.ok, outcome.detail) == (True, f"{DB} (hardlink of main)")
    assert (session.worktree / DB).stat().st_ino == (sample.main / DB).stat().st_ino


def test_auto_refresh_builds_the_tree_again(sample: Sample, made: tuple[Project, Session]) -> None:
    _, session = made
    relink(sample, session, modal("auto", NM))
    (sample.main / NM / "newpkg").mkdir()
    (sample.main / NM / "newpkg" / "index.js").write_text("new\n")
    [behind] = links.apply(sample.main, session.worktree, [Link(NM, "auto")])
    assert not behind.ok and "lacks newpkg that main has now" in behind.detail
    [outcome] = links.apply(sample.main, session.worktree, [Link(NM, "auto")], refresh=True)
    assert (outcome.ok, outcome.detail) == (True, f"{NM} (hardlink of main)")
    new = session.worktree / NM / "newpkg" / "index.js"
    assert new.stat().st_ino == (sample.main / NM / "newpkg" / "index.js").stat().st_ino
    assert leftovers(session.worktree / NM) == []


@pytest.mark.parametrize("mode", COPYING)
def test_an_unreadable_folder_fails_the_step_and_leaves_no_staging_behind(
    sample: Sample, made: tuple[Project, Session], mode: str
) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads any folder: an unreadable folder cannot make the copy fail")
    _, session = made
    grow_node_modules(sample.main)
    locked = sample.main / NM / "pkg" / "lib"
    locked.chmod(0)
    try:
        if mode == "hardlink":
            with pytest.raises(TallyError, match="^cannot hard-link"):
                links.apply(sample.main, session.worktree, [Link(NM, mode)])
        else:
            with pytest.raises(TallyError, match="^cannot copy .*Permission denied"):
                links.apply(sample.main, session.worktree, [Link(NM, mode)])
    finally:
        locked.chmod(0o755)
    assert not (session.worktree / NM).exists()
    assert leftovers(session.worktree / NM) == []


# --- remove never reaches through a link -------------------------------------------------------


@pytest.mark.parametrize("force", [False, True], ids=["plain", "force"])
@pytest.mark.parametrize("mode", MODES)
def test_remove_never_deletes_through_a_link(
    sample: Sample, srv: libtmux.Server, mode: str, force: bool
) -> None:
    grow_node_modules(sample.main)
    project = sample.project(add_steps=NO_TMUX, links=modal(mode, NM, DB))
    session = add_op.run(project, "x", srv)
    wt = session.worktree
    assert (wt / NM).is_symlink() == (mode == "symlink")
    before = tree(sample.main / NM)
    remove_op.run(project, "x", srv, force=force)  # hard links and copies are not work
    assert not wt.exists()
    assert tree(sample.main / NM) == before
    main_intact(sample.main)
    assert all(f.stat().st_nlink == 1 for f in [*files(sample.main / NM), sample.main / DB])
    assert "x" not in sample.registry()


@pytest.mark.parametrize("mode", MODES)
def test_a_user_file_next_to_the_links_still_blocks_remove(
    sample: Sample, srv: libtmux.Server, mode: str
) -> None:
    project = sample.project(add_steps=NO_TMUX, links=modal(mode, NM, DB))
    session = add_op.run(project, "x", srv)
    (session.worktree / "frontend" / "notes.txt").write_text("mine\n")
    with pytest.raises(TallyError, match="work that would be lost") as err:
        remove_op.run(project, "x", srv)
    assert "?? frontend/notes.txt" in str(err.value)
    assert "node_modules" not in str(err.value)
    assert "db.sqlite3" not in str(err.value)
    assert (session.worktree / "frontend" / "notes.txt").read_text() == "mine\n"
    assert "x" in sample.registry()
    main_intact(sample.main)


# --- the task, as typed ------------------------------------------------------------------------


def test_links_task_and_its_relink_alias_mend_and_change_mode(sample: Sample) -> None:
    sample.write_config(add_steps=NO_TMUX, links=[NM, DB])
    r = run_cli(["inv", "session.add", "x"], sample.main)
    assert r.returncode == 0, r.stderr
    wt = sample.main.parent / "tally-x"
    (wt / NM).unlink()

    r = run_cli(["inv", "session.relink", "x"], wt / "backend")  # from inside the worktree
    assert r.returncode == 0, r.stderr
    assert f"{NM} → main · {DB} ok" in r.stdout
    assert os.readlink(wt / NM) == str(sample.main / NM)

    sample.write_config(add_steps=NO_TMUX, links=[{"path": NM, "mode": "hardlink"}, DB])
    r = run_cli(["inv", "session.links", "--name", "x"], sample.main)
    assert r.returncode == 0, r.stderr
    assert f"{NM} (hardlink of main)" in r.stdout
    index = "pkg/index.js"
    assert (wt / NM / index).stat().st_ino == (sample.main / NM / index).stat().st_ino
    assert git(wt, "status", "--porcelain") == ""

    r = run_cli(["inv", "session.relink", "nope"], sample.main)
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and "no session named 'nope'" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("mode", COPYING)
def test_a_tree_behind_mains_says_so_and_refresh_builds_it_again(
    sample: Sample, made: tuple[Project, Session], capsys: pytest.CaptureFixture[str], mode: str
) -> None:
    _, session = made
    relink(sample, session, modal(mode, NM))
    (sample.main / NM / "newpkg").mkdir()
    (sample.main / NM / "newpkg" / "index.js").write_text("new\n")
    capsys.readouterr()
    relink(sample, session, modal(mode, NM))
    out = capsys.readouterr().out
    assert "lacks newpkg that main has now" in out
    assert "inv session.links --name x --refresh" in out
    assert not (session.worktree / NM / "newpkg").exists()  # nothing changed without it

    sample.write_config(links=modal(mode, NM))
    r = run_cli(["inv", "session.doctor", "--name", "x"], sample.main)
    assert "frontend/node_modules" not in r.stderr  # not a failure: noted
    assert f"{NM} ({mode}) lacks newpkg" in r.stdout

    links_step.apply(sample.project(links=modal(mode, NM)), session, refresh=True)
    new = session.worktree / NM / "newpkg" / "index.js"
    assert new.read_text() == "new\n"
    shared = os.stat(new).st_ino == os.stat(sample.main / NM / "newpkg" / "index.js").st_ino
    assert shared is (mode == "hardlink")
    assert leftovers(session.worktree / NM) == []
    main_intact(sample.main)


# --- refresh: only trees behind main's, never the session's own changes ------------------------


def add_row(db: Path) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute("insert into t values (1)")


def install_in_main(main: Path, name: str = "newpkg") -> None:
    (main / NM / name).mkdir()
    (main / NM / name / "index.js").write_text("new\n")


def test_refresh_never_resets_a_database_copy_and_rebuilds_only_what_lacks_mains(
    sample: Sample, made: tuple[Project, Session]
) -> None:
    """The issue's case: db.sqlite3 in copy mode, node_modules hard-linked; the session
    writes to its database, main installs a package; refresh rebuilds node_modules only."""
    _, wt = sample.main, made[1].worktree
    config = [Link(DB, "copy"), Link(NM, "hardlink")]
    assert all(o.ok for o in links.apply(sample.main, wt, config))
    add_row(wt / DB)
    add_row(sample.main / DB)  # main's database moves on too: still not the session's
    add_row(sample.main / DB)
    install_in_main(sample.main)
    plan = links.refresh_plan(sample.main, wt, config)
    assert [o.detail for o in plan] == [
        f"{DB} (copy) up to date, kept",
        f"{NM} (hardlink) would be rebuilt from main's",
    ]
    outcomes = links.apply(sample.main, wt, config, refresh=True)
    assert [o.ok for o in outcomes] == [True, True]
    assert db_rows(wt / DB) == 1  # the session's row, not main's two
    assert (wt / NM / "newpkg" / "index.js").read_text() == "new\n"


CHANGES = [
    ("installed", lambda nm: (nm / "mine").mkdir()),
    ("edited", lambda nm: (nm / "pkg" / "index.js").write_text("patched\n")),
    ("deleted", lambda nm: shutil.rmtree(nm / "pkg")),
]


@pytest.mark.parametrize("mode", COPYING)
@pytest.mark.parametrize("change", [c[1] for c in CHANGES], ids=[c[0] for c in CHANGES])
def test_refresh_keeps_a_tree_the_session_changed_unless_forced(
    sample: Sample, made: tuple[Project, Session], mode: str, change: Any
) -> None:
    wt = made[1].worktree
    config = [Link(NM, mode)]
    links.apply(sample.main, wt, config)
    if mode == "hardlink":  # an edit there replaces the file (as npm does), not main's
        (wt / NM / "pkg" / "index.js").unlink()
    change(wt / NM)
    before = tree(wt / NM)
    install_in_main(sample.main)
    [planned] = links.refresh_plan(sample.main, wt, config)
    assert not planned.ok and "changed since it was built" in planned.detail
    [kept] = links.apply(sample.main, wt, config, refresh=True, force_hint="links --force")
    assert not kept.ok
    assert kept.detail.startswith(f"{NM} ({mode}) lacks newpkg")
    assert kept.detail.endswith(
        "that main has now, but is not rebuilt: it has changed since it was built; "
        "replace it anyway with: links --force"
    )
    assert tree(wt / NM) == before
    [forced] = links.apply(sample.main, wt, config, refresh=True, force=True)
    assert forced.ok and tree(wt / NM) == tree(sample.main / NM)
    main_intact(sample.main)


def test_a_tree_built_without_a_record_is_kept_by_refresh(
    sample: Sample, made: tuple[Project, Session]
) -> None:
    """Built by an older tally-tasks (no record of it): it may hold the session's work."""
    wt = made[1].worktree
    links.apply(sample.main, wt, [Link(NM, "copy")])
    gitdir = Path(git(wt, "rev-parse", "--absolute-git-dir").strip())
    (gitdir / "tally-trees.json").unlink()
    install_in_main(sample.main)
    [kept] = links.apply(sample.main, wt, [Link(NM, "copy")], refresh=True)
    assert not kept.ok and "no record of how it was built" in kept.detail
    assert "delete it to rebuild it" in kept.detail
    assert not (wt / NM / "newpkg").exists()


def test_a_tree_up_to_date_is_not_rebuilt_by_refresh(
    sample: Sample, made: tuple[Project, Session]
) -> None:
    wt = made[1].worktree
    links.apply(sample.main, wt, [Link(NM, "copy")])
    inode = (wt / NM).stat().st_ino
    (wt / NM / "pkg" / "index.js").write_text("the session's\n")
    [outcome] = links.apply(sample.main, wt, [Link(NM, "copy")], refresh=True)
    assert outcome.ok and outcome.detail == f"{NM} ok (copy)"
    assert (wt / NM).stat().st_ino == inode
    assert (wt / NM / "pkg" / "index.js").read_text() == "the session's\n"


# --- out of git's view: info/exclude, and a link git tracks -------------------------------------

BEGIN, END = links.EXCLUDE_BEGIN, links.EXCLUDE_END
EXCLUDES: list[tuple[str, list[str], str]] = [
    ("", [NM, DB], f"{BEGIN}\n/{NM}\n/{DB}\n{END}\n"),
    ("# git's sample\n*.log\n", [NM], f"# git's sample\n*.log\n\n{BEGIN}\n/{NM}\n{END}\n"),
    (
        f"mine\n\n{BEGIN}\n/old\n{END}\nalso-mine\n",
        [NM],
        f"mine\nalso-mine\n\n{BEGIN}\n/{NM}\n{END}\n",
    ),
    (f"mine\n\n{BEGIN}\n/{NM}\n{END}\n", [], "mine\n"),
    (f"{BEGIN}\n/{NM}\nmine\n", [DB], f"mine\n\n{BEGIN}\n/{DB}\n{END}\n"),
    ("", ["a*b/[c]", "d "], f"{BEGIN}\n/a\\*b/\\[c]\n/d\\ \n{END}\n"),
]


@pytest.mark.parametrize(
    "before, paths, after",
    EXCLUDES,
    ids=[
        "new",
        "users-lines-kept",
        "block-rewritten",
        "no-links-no-block",
        "end-marker-lost",
        "escaped",
    ],
)
def test_exclude_writes_only_the_tools_block(
    tmp_path: Path, before: str, paths: list[str], after: str
) -> None:
    (tmp_path / "info").mkdir()
    exclude = tmp_path / "info" / "exclude"
    exclude.write_text(before)
    assert links.exclude(tmp_path, paths) is None
    assert exclude.read_text() == after
    assert links.exclude(tmp_path, paths) is None and exclude.read_text() == after  # again
    assert leftovers(exclude) == []


def test_exclude_makes_the_file_and_never_writes_through_a_symlink(tmp_path: Path) -> None:
    assert links.exclude(tmp_path, []) is None and not (tmp_path / "info").exists()
    assert links.exclude(tmp_path, [NM]) is None
    assert (tmp_path / "info" / "exclude").read_text() == f"{BEGIN}\n/{NM}\n{END}\n"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text("not git's\n")
    (tmp_path / "info" / "exclude").unlink()
    (tmp_path / "info" / "exclude").symlink_to(elsewhere)
    refused = links.exclude(tmp_path, [NM, DB])
    assert refused is not None and not refused.ok
    assert "is a symlink, not written" in refused.detail
    assert elsewhere.read_text() == "not git's\n"


def test_a_new_worktree_is_clean_and_the_last_remove_takes_the_tools_lines_away(
    sample: Sample, srv: libtmux.Server
) -> None:
    exclude = sample.main / ".git" / "info" / "exclude"
    exclude.write_text("# mine\n*.swp\n")
    project = sample.project(add_steps=NO_TMUX)
    for name in ("x", "y"):
        add_op.run(project, name, srv)
        wt = sample.main.parent / f"tally-{name}"
        assert (wt / NM).is_symlink()  # what `node_modules/` in .gitignore does not match
        assert git(wt, "status", "--porcelain", "--untracked-files=all") == ""
    git(wt, "add", "-A")
    assert git(wt, "diff", "--cached", "--name-only") == ""  # `git add -A` takes no link
    local = "/.claude/settings.local.json"
    assert exclude.read_text() == f"# mine\n*.swp\n\n{BEGIN}\n/{NM}\n/{DB}\n{local}\n{END}\n"
    remove_op.run(project, "x", srv)
    assert BEGIN in exclude.read_text()  # y still has its links
    remove_op.run(project, "y", srv)
    assert exclude.read_text() == "# mine\n*.swp\n"


def test_tracked_names_the_links_git_tracks(sample: Sample, made: tuple[Project, Session]) -> None:
    _, session = made
    wt = session.worktree
    relink(sample, session, [NM, *modal("hardlink", "frontend/pkgs"), DB])
    assert links.tracked(wt, [NM, DB]) == []
    git(wt, "add", "-f", NM, DB)
    git(wt, "commit", "-q", "-m", "oops")
    assert links.tracked(wt, [NM, "frontend", DB, "nope"]) == [NM, "frontend", DB]
    assert links.tracked(wt, []) == []


@pytest.mark.parametrize("size", [0, 100, 1 << 16, 1 << 17], ids=["empty", "small", "edge", "big"])
def test_a_trees_digest_is_sha256_whether_openssl_or_pythons_own_makes_it(size: int) -> None:
    """A small tree's fingerprint is made without hashlib (its import loads OpenSSL), a
    big one's with it: the same sha256, so stamps written either way still match."""
    import hashlib

    data = bytes(range(256)) * (size // 256) + b"\xff" * (size % 256)
    assert links._sha256(data) == hashlib.sha256(data).hexdigest()
