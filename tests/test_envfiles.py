"""Private copies (envfiles.py, the env step) and `.worktreeinclude`, on real files and git.

A copy keeps its source's mode and is never readable by others, not even while it is
being written under `umask 0`; `.worktreeinclude` copies what it matches and git ignores,
never a tracked file, never over a file already there, never a linked path.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import libtmux
import pytest
from conftest import Sample, git, leftovers, poll, run_cli

from tally_tasks import envfiles, sessions
from tally_tasks.errors import TallyError
from tally_tasks.operations import add as add_op
from tally_tasks.session import Project, Session
from tally_tasks.steps import env as env_step
from tally_tasks.steps import links as links_step

ENV = "backend/.env"
DB = "backend/db.sqlite3"
NM = "frontend/node_modules"
BARE = ["ports", "worktree"]  # a session with no links or copies yet
NO_TMUX = ["ports", "worktree", "links", "env", "claude_perms"]


@contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def db_rows(path: Path) -> int:
    with sqlite3.connect(path) as db:
        count: int = db.execute("select count(*) from t").fetchone()[0]
    return count


@pytest.fixture
def made(sample: Sample, srv: libtmux.Server) -> tuple[Project, Session]:
    """A session with a worktree but no links or copies yet."""
    project = sample.project(add_steps=BARE)
    add_op.run(project, "x", srv)
    return project, sessions.get(project, "x")


# --- copies ------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o400, 0o755], ids=oct)
def test_a_copy_keeps_its_sources_mode_under_umask_0(
    sample: Sample, made: tuple[Project, Session], mode: int
) -> None:
    _, session = made
    (sample.main / ENV).chmod(mode)
    os.utime(sample.main / ENV, ns=(1_000_000_000, 2_000_000_000))
    with umask(0):
        outcomes = envfiles.apply(sample.main, session.worktree, [ENV])
    assert [(o.ok, o.detail) for o in outcomes] == [(True, f"{ENV} copied")]
    copy = session.worktree / ENV
    assert copy.read_text() == "SECRET_KEY=s3cret\n"
    assert mode_of(copy) == mode
    assert copy.stat().st_mtime_ns == 2_000_000_000  # its times too, as cp -p
    assert leftovers(copy) == []


def test_a_copy_is_never_readable_by_others_while_it_is_written(tmp_path: Path) -> None:
    """The source is a named pipe the test feeds, so the copy can be caught half-written."""
    main, wt = tmp_path / "m", tmp_path / "w"
    main.mkdir()
    wt.mkdir()
    os.mkfifo(main / ".env", 0o600)
    done: list[object] = []

    def copy() -> None:
        try:
            done.append(envfiles.copy_one(main, wt, ".env"))
        except BaseException as e:  # noqa: BLE001 - handed to the test thread
            done.append(e)

    def writer() -> int | None:
        try:
            return os.open(main / ".env", os.O_WRONLY | os.O_NONBLOCK)
        except OSError as e:
            if e.errno != errno.ENXIO:  # no reader yet
                raise
            return None

    with umask(0):
        worker = threading.Thread(target=copy, daemon=True)
        worker.start()
        fd = poll(writer)
        try:
            os.write(fd, b"SECRET_KEY=half")
            [temp] = poll(lambda: leftovers(wt / ".env"))  # the temp file, half written
            assert not (wt / ".env").exists()
            assert (wt / temp).read_bytes() in (b"", b"SECRET_KEY=half")
            assert mode_of(wt / temp) & 0o077 == 0, oct(mode_of(wt / temp))
            os.write(fd, b"\n")
        finally:
            os.close(fd)
        worker.join(10)
    assert not worker.is_alive()
    [outcome] = done
    assert not isinstance(outcome, BaseException), outcome
    assert (wt / ".env").read_text() == "SECRET_KEY=half\n"
    assert mode_of(wt / ".env") == 0o600
    assert leftovers(wt / ".env") == []


@pytest.mark.parametrize(
    ("force", "want", "says"),
    [
        (False, "SECRET_KEY=mine\n", f"{ENV} kept (exists; --force to overwrite)"),
        (True, "SECRET_KEY=s3cret\n", f"{ENV} copied"),
    ],
    ids=["kept", "force"],
)
def test_an_existing_copy_is_kept_unless_forced(
    sample: Sample, made: tuple[Project, Session], force: bool, want: str, says: str
) -> None:
    _, session = made
    copy = session.worktree / ENV
    copy.write_text("SECRET_KEY=mine\n")
    copy.chmod(0o644)
    [outcome] = envfiles.apply(sample.main, session.worktree, [ENV], force=force)
    assert (outcome.ok, outcome.detail) == (True, says)
    assert copy.read_text() == want
    assert mode_of(copy) == (0o600 if force else 0o644)
    assert (sample.main / ENV).read_text() == "SECRET_KEY=s3cret\n"


def test_a_path_moved_from_links_to_copies_becomes_a_private_snapshot(
    sample: Sample, made: tuple[Project, Session], capsys: pytest.CaptureFixture[str]
) -> None:
    project, session = made
    wt = session.worktree
    links_step.apply(project, session)
    assert (wt / DB).is_symlink()
    before = (sample.main / DB).read_bytes()

    moved = sample.project(links=[NM], copies=[ENV, DB])
    env_step.apply(moved, session)
    assert f"{DB} copied" in capsys.readouterr().out
    assert not (wt / DB).is_symlink()
    assert (wt / DB).stat().st_ino != (sample.main / DB).stat().st_ino
    with sqlite3.connect(wt / DB) as db:
        db.execute("insert into t values (1)")
    assert db_rows(wt / DB) == 1
    assert db_rows(sample.main / DB) == 0
    assert (sample.main / DB).read_bytes() == before
    assert (wt / NM).is_symlink()  # still linked


def test_a_folder_is_copied_whole_with_its_modes_and_symlinks(
    sample: Sample, made: tuple[Project, Session]
) -> None:
    _, session = made
    media = sample.main / "backend" / "media"
    (media / "private").mkdir(parents=True)
    (media / "private" / "key.pem").write_text("KEY\n")
    (media / "private" / "key.pem").chmod(0o600)
    (media / "private").chmod(0o700)
    (media / "current").symlink_to("private/key.pem")
    rel = "backend/media"
    copy = session.worktree / rel
    with umask(0):
        [outcome] = envfiles.apply(sample.main, session.worktree, [rel])
    assert outcome.detail == f"{rel} copied"
    assert (copy / "private" / "key.pem").read_text() == "KEY\n"
    assert mode_of(copy / "private") == 0o700
    assert mode_of(copy / "private" / "key.pem") == 0o600
    assert os.readlink(copy / "current") == "private/key.pem"
    key = copy / "private" / "key.pem"
    assert key.stat().st_ino != (media / "private" / "key.pem").stat().st_ino
    assert leftovers(copy) == []

    key.write_text("MINE\n")
    (copy / "extra").write_text("only here\n")
    [kept] = envfiles.apply(sample.main, session.worktree, [rel])
    assert kept.detail.startswith(f"{rel} kept")
    assert (copy / "extra").exists()
    envfiles.apply(sample.main, session.worktree, [rel], force=True)
    assert key.read_text() == "KEY\n"
    assert not (copy / "extra").exists()
    assert (media / "private" / "key.pem").read_text() == "KEY\n"
    assert leftovers(copy) == []


def test_a_folder_that_cannot_be_copied_fails_in_one_line_and_leaves_nothing(
    sample: Sample, made: tuple[Project, Session]
) -> None:
    """A named pipe cannot be copied even by root."""
    _, session = made
    (sample.main / "backend" / "media").mkdir()
    (sample.main / "backend" / "media" / "a.txt").write_text("a\n")
    os.mkfifo(sample.main / "backend" / "media" / "pipe")
    with pytest.raises(TallyError) as err:
        envfiles.apply(sample.main, session.worktree, ["backend/media"])
    message = str(err.value)
    assert message.startswith(f"cannot copy {sample.main / 'backend' / 'media'}: ")
    assert "is a named pipe" in message and "None" not in message and "\n" not in message
    assert not (session.worktree / "backend" / "media").exists()
    assert leftovers(session.worktree / "backend" / "media") == []


def test_an_unreadable_source_fails_in_one_line_naming_the_fix(
    sample: Sample, made: tuple[Project, Session]
) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads any file: an unreadable .env cannot make the copy fail")
    _, session = made
    (sample.main / ENV).chmod(0)
    with pytest.raises(TallyError) as err:
        envfiles.apply(sample.main, session.worktree, [ENV])
    assert str(err.value) == (
        f"cannot copy {sample.main / ENV}: Permission denied; fix its permissions"
    )
    assert os.listdir(session.worktree / "backend") == ["manage.py"]


def test_a_missing_source_is_skipped_with_a_warning(
    sample: Sample, made: tuple[Project, Session], capsys: pytest.CaptureFixture[str]
) -> None:
    project, session = made
    (sample.main / "frontend" / ".env").unlink()
    env_step.apply(project, session)
    out = capsys.readouterr().out
    assert "! env" in out and "frontend/.env missing in main, skipped" in out
    assert f"✓ env          {ENV} copied" in out
    assert not (session.worktree / "frontend" / ".env").exists()


def test_a_copy_behind_a_link_out_of_the_worktree_is_skipped(
    sample: Sample, made: tuple[Project, Session]
) -> None:
    _, session = made
    (sample.main / "conf").mkdir()
    (sample.main / "conf" / ".env").write_text("X=1\n")
    outside = sample.root / "outside"
    outside.mkdir()
    (session.worktree / "conf").symlink_to(outside)
    [outcome] = envfiles.apply(sample.main, session.worktree, ["conf/.env"], force=True)
    assert (outcome.ok, outcome.detail) == (
        False,
        "conf/.env lies behind a link out of the worktree, skipped",
    )
    assert os.listdir(outside) == []


# --- .worktreeinclude: which paths -------------------------------------------------------------


def repo_with(root: Path, ignore: str, include: str | None, make: dict[str, str]) -> Path:
    """A git repo with a tracked .gitignore, `include` as .worktreeinclude and files `make`.

    A value "tracked" in `make` commits that file (forced past .gitignore).
    """
    main = root / "repo"
    main.mkdir()
    git(main, "init", "-q", "-b", "main")
    (main / ".gitignore").write_text(ignore)
    (main / "README").write_text("r\n")
    tracked = [".gitignore", "README"]
    for rel, what in make.items():
        (main / rel).parent.mkdir(parents=True, exist_ok=True)
        (main / rel).write_text(rel)
        if what == "tracked":
            tracked.append(rel)
    if include is not None:
        (main / ".worktreeinclude").write_text(include)
    git(main, "add", "-f", *tracked)
    git(main, "commit", "-q", "-m", "init")
    return main


INCLUDE_CASES = [
    # .gitignore, .worktreeinclude, files ("tracked": committed), expected
    pytest.param(
        "*.local\n",
        "*.local\n",
        {"app.local": "", "sub/b.local": "", "sub/keep.py": "tracked"},
        ["app.local", "sub/b.local"],
        id="glob",
    ),
    pytest.param(
        "config/secrets/\n",
        "config/secrets/\n",
        {"config/secrets/a.key": "", "config/secrets/deep/b": "", "config/app.py": "tracked"},
        ["config/secrets"],
        id="folder-ignored-whole",
    ),
    pytest.param(
        "*.local\n",
        "*.local\n",
        {"tracked.local": "tracked", "app.local": ""},
        ["app.local"],
        id="tracked-never",
    ),
    pytest.param(
        "*.local\n", "scratch.txt\n*.local\n", {"scratch.txt": ""}, [], id="not-ignored-never"
    ),
    pytest.param(
        "build/\n*.local\n", "*.local\n", {"build/out": ""}, [], id="ignored-but-not-included"
    ),
    pytest.param(
        "secrets/\n",
        "*.key\n",
        {"secrets/a.key": "", "secrets/b.txt": ""},
        ["secrets/a.key"],
        id="file-in-an-ignored-folder",
    ),
    pytest.param(
        "*.log\n",
        "logs/\n",
        {"logs/a.log": "", "logs/notes.txt": ""},
        ["logs/a.log"],
        id="folder-partly-ignored",
    ),
    pytest.param(
        "*.local\n",
        "# private files\n*.local\n!keep.local\n",
        {"a.local": "", "keep.local": ""},
        ["a.local"],
        id="negation-and-comments",
    ),
    pytest.param(
        "node_modules/\n",
        "*.js\n",
        {"node_modules/pkg/index.js": ""},
        ["node_modules"],
        id="a-folder-all-matched-is-listed-once",
    ),
    pytest.param(
        ".worktreeinclude\n*.local\n",
        ".worktreeinclude\n*.local\n",
        {"a.local": ""},
        ["a.local"],
        id="itself-never",
    ),
    pytest.param("*.local\n", None, {"a.local": ""}, [], id="no-file"),
]


@pytest.mark.parametrize(
    ("ignore", "include", "make", "want"),
    INCLUDE_CASES,
)
def test_worktreeinclude_names_what_it_matches_and_git_ignores(
    tmp_path: Path, ignore: str, include: str | None, make: dict[str, str], want: list[str]
) -> None:
    main = repo_with(tmp_path, ignore, include, make)
    assert sorted(envfiles.worktree_include(main)) == want


# --- .worktreeinclude: the env step ------------------------------------------------------------

INCLUDE = "*.local\nconfig/secrets/\nscratch.txt\nfrontend/node_modules/\nbackend/*.sqlite3\n"


@pytest.fixture
def included(sample: Sample) -> Sample:
    """The sample with a committed .worktreeinclude and files it does and does not match."""
    main = sample.main
    with (main / ".gitignore").open("a") as f:
        f.write("*.local\nconfig/secrets/\nbuild/\n")
    (main / ".worktreeinclude").write_text(INCLUDE)
    (main / "config" / "secrets" / "deep").mkdir(parents=True)
    (main / "config" / "settings.py").write_text("DEBUG = True\n")
    (main / "tracked.local").write_text("committed\n")
    git(main, "add", ".gitignore", ".worktreeinclude", "config/settings.py")
    git(main, "add", "-f", "tracked.local")
    git(main, "commit", "-q", "-m", "worktreeinclude")
    (main / "tracked.local").write_text("edited in main, not committed\n")
    (main / "app.local").write_text("APP=1\n")
    (main / "app.local").chmod(0o600)
    (main / "config" / "dev.local").write_text("DEV=1\n")
    (main / "config" / "secrets" / "api.key").write_text("KEY\n")
    (main / "config" / "secrets" / "deep" / "cert.pem").write_text("PEM\n")
    (main / "scratch.txt").write_text("not ignored\n")
    (main / "build").mkdir()
    (main / "build" / "out.bin").write_text("ignored, not included\n")
    return sample


COPIED = {
    "app.local": "APP=1\n",
    "config/dev.local": "DEV=1\n",
    "config/secrets/api.key": "KEY\n",
    "config/secrets/deep/cert.pem": "PEM\n",
}


def test_env_step_copies_what_worktreeinclude_names(
    included: Sample, srv: libtmux.Server, capsys: pytest.CaptureFixture[str]
) -> None:
    project = included.project(add_steps=NO_TMUX)
    session = add_op.run(project, "x", srv)
    wt = session.worktree
    for rel, text in COPIED.items():
        assert (wt / rel).read_text() == text, rel
        assert not (wt / rel).is_symlink()
    assert mode_of(wt / "app.local") == 0o600
    assert (wt / "tracked.local").read_text() == "committed\n"  # the checkout's, not main's
    assert not (wt / "scratch.txt").exists()  # not ignored
    assert not (wt / "build").exists()  # ignored, not included
    assert (wt / ".worktreeinclude").read_text() == INCLUDE  # tracked: from the checkout
    for rel in (NM, DB):  # configured in links: stays a link, never copied
        assert os.readlink(wt / rel) == str(included.main / rel)
    out = capsys.readouterr().out
    assert "app.local copied" in out and "config/secrets copied" in out
    assert "! env" not in out


def test_worktreeinclude_never_overwrites_what_is_there(
    included: Sample, made: tuple[Project, Session]
) -> None:
    _, session = made
    wt = session.worktree
    (wt / "app.local").write_text("APP=mine\n")
    (wt / "config" / "secrets").mkdir(parents=True)
    (wt / "config" / "secrets" / "mine.key").write_text("MINE\n")
    env_step.apply(included.project(), session)
    assert (wt / "app.local").read_text() == "APP=mine\n"
    assert sorted(os.listdir(wt / "config" / "secrets")) == ["mine.key"]
    assert (wt / "config" / "dev.local").read_text() == "DEV=1\n"  # what was missing is made


def test_worktreeinclude_never_overwrites_even_with_force(
    included: Sample, made: tuple[Project, Session]
) -> None:
    _, session = made
    (session.worktree / "app.local").write_text("APP=mine\n")
    env_step.apply(included.project(), session, force=True)
    assert (session.worktree / ENV).read_text() == "SECRET_KEY=s3cret\n"
    assert (session.worktree / "app.local").read_text() == "APP=mine\n"


def test_worktreeinclude_matches_inside_a_linked_folder_are_left_to_the_link(
    sample: Sample, made: tuple[Project, Session], capsys: pytest.CaptureFixture[str]
) -> None:
    project, session = made
    (sample.main / NM / "pkg" / ".env.example").write_text("X=\n")
    (sample.main / ".worktreeinclude").write_text(".env*\n")  # the README's own example
    links_step.apply(project, session)
    env_step.apply(project, session)
    out = capsys.readouterr().out
    assert (session.worktree / NM).is_symlink()
    assert "! env" not in out, out


def test_worktreeinclude_end_to_end_through_inv(included: Sample) -> None:
    included.write_config(add_steps=NO_TMUX)
    r = run_cli(["inv", "session.add", "x"], included.main)
    assert r.returncode == 0, r.stderr
    wt = included.main.parent / "tally-x"
    for rel, text in COPIED.items():
        assert (wt / rel).read_text() == text, rel
    assert (wt / "tracked.local").read_text() == "committed\n"
    assert not (wt / "scratch.txt").exists()
    assert (wt / NM).is_symlink()

    (wt / "app.local").write_text("APP=mine\n")
    r = run_cli(["inv", "session.env", "x"], wt)
    assert r.returncode == 0, r.stderr
    assert "app.local kept" in r.stdout
    assert (wt / "app.local").read_text() == "APP=mine\n"

    r = run_cli(["inv", "session.remove", "x"], included.main)  # the copies are not work
    assert r.returncode == 0, r.stderr
    assert not wt.exists()
    assert (included.main / "app.local").read_text() == "APP=1\n"
    assert (included.main / "config" / "secrets" / "api.key").read_text() == "KEY\n"
    assert (included.main / NM / "pkg" / "index.js").read_text() == "module.exports = 1\n"
