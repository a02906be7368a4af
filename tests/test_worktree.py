"""Worktrees against real git: create, inspect, remove, and finding the main checkout."""

from __future__ import annotations

import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Sample, add_submodule, git, init_submodules, obeying_permissions

from tally_tasks import envfiles, links, worktree
from tally_tasks import repo as repo_
from tally_tasks.config import Link
from tally_tasks.errors import TallyError


def head(cwd: Path, ref: str = "HEAD") -> str:
    return git(cwd, "rev-parse", ref).strip()


def branches(main: Path) -> set[str]:
    return set(git(main, "branch", "--format=%(refname:short)").split())


def commit_on_branch(main: Path, branch: str, filename: str) -> str:
    """A branch with one commit main lacks; main stays checked out."""
    git(main, "checkout", "-q", "-b", branch)
    (main / filename).write_text(f"{branch}\n")
    git(main, "add", filename)
    git(main, "commit", "-q", "-m", f"work on {branch}")
    git(main, "checkout", "-q", "main")
    return head(main, branch)


def with_tool_paths(sample: Sample, path: Path) -> None:
    """What the pipeline puts in a worktree: links into main and private copies."""
    settings = sample.project().settings
    links.apply(sample.main, path, settings.links)
    envfiles.apply(sample.main, path, settings.copies)


def main_data_intact(main: Path) -> None:
    index = main / "frontend" / "node_modules" / "pkg" / "index.js"
    assert index.read_text() == "module.exports = 1\n"
    with sqlite3.connect(main / "backend" / "db.sqlite3") as db:
        assert db.execute("select count(*) from t").fetchone() == (0,)


@pytest.fixture
def repo(sample: Sample) -> repo_.Repo:
    return repo_.Repo(sample.main)


@pytest.fixture
def path(sample: Sample) -> Path:
    return sample.main.parent / "tally-x"


# --- create ---------------------------------------------------------------------------------


def test_create_makes_a_new_branch_from_mains_head(
    sample: Sample, repo: repo_.Repo, path: Path
) -> None:
    assert worktree.create(repo, path, "x") == "new branch x from main"
    assert head(sample.main, "refs/heads/x") == head(sample.main)
    assert git(path, "branch", "--show-current").strip() == "x"
    assert (path / "backend" / "manage.py").read_text() == "# django\n"
    assert git(path, "status", "--porcelain") == ""


def test_create_checks_out_an_existing_branch_instead_of_failing(
    sample: Sample, repo: repo_.Repo, path: Path
) -> None:
    tip = commit_on_branch(sample.main, "x", "work.txt")
    assert worktree.create(repo, path, "x") == "existing branch x"
    assert head(path) == tip
    assert (path / "work.txt").read_text() == "x\n"
    assert git(path, "branch", "--show-current").strip() == "x"


def test_create_twice_says_exists_and_changes_nothing(
    sample: Sample, repo: repo_.Repo, path: Path
) -> None:
    worktree.create(repo, path, "x")
    (path / "mine.txt").write_text("keep me\n")
    assert worktree.create(repo, path, "x") == "exists"
    assert (path / "mine.txt").read_text() == "keep me\n"
    assert [w.path for w in worktree.listing(repo)] == [sample.main, path]


def test_create_refuses_a_folder_that_is_not_a_worktree(
    sample: Sample, repo: repo_.Repo, path: Path
) -> None:
    path.mkdir()
    (path / "notes.txt").write_text("not yours\n")
    with pytest.raises(TallyError, match="already exists and is not this session's worktree"):
        worktree.create(repo, path, "x")
    assert [p.name for p in path.iterdir()] == ["notes.txt"]
    assert (path / "notes.txt").read_text() == "not yours\n"
    assert branches(sample.main) == {"main"}
    assert worktree.find(repo, path) is None


def test_create_refuses_a_worktree_on_another_branch(repo: repo_.Repo, path: Path) -> None:
    worktree.create(repo, path, "x")
    with pytest.raises(TallyError, match="is a worktree on x, not y"):
        worktree.create(repo, path, "y")


@pytest.mark.parametrize("where", ["main-checkout", "other-worktree"])
def test_create_refuses_a_branch_checked_out_elsewhere(
    sample: Sample, repo: repo_.Repo, path: Path, where: str
) -> None:
    if where == "main-checkout":
        branch, holder = "main", sample.main
    else:
        branch, holder = "x", sample.main.parent / "elsewhere"
        worktree.create(repo, holder, branch)
    with pytest.raises(TallyError, match=re.escape(f"{branch} is already checked out at {holder}")):
        worktree.create(repo, path, branch)
    assert not path.exists()
    assert worktree.find(repo, path) is None


# --- user_changes ---------------------------------------------------------------------------


def test_user_changes_leaves_out_the_tools_links_and_copies(
    sample: Sample, repo: repo_.Repo, path: Path
) -> None:
    worktree.create(repo, path, "x")
    with_tool_paths(sample, path)
    assert (path / "frontend" / "node_modules").is_symlink()
    # `node_modules/` in .gitignore matches directories only, never a symlink
    assert "?? frontend/node_modules" in worktree.user_changes(path, set())
    assert worktree.user_changes(path, sample.project().own_paths()) == []


def test_user_changes_reports_modified_and_untracked_files(
    sample: Sample, repo: repo_.Repo, path: Path
) -> None:
    worktree.create(repo, path, "x")
    with_tool_paths(sample, path)
    (path / "backend" / "manage.py").write_text("# changed\n")
    (path / "docs").mkdir()
    (path / "docs" / "new notes.md").write_text("mine\n")
    changes = worktree.user_changes(path, sample.project().own_paths())
    assert sorted(changes) == [" M backend/manage.py", "?? docs/new notes.md"]


def test_user_changes_reports_a_staged_rename_once(
    sample: Sample, repo: repo_.Repo, path: Path
) -> None:
    worktree.create(repo, path, "x")
    git(path, "mv", "backend/manage.py", "backend/run.py")
    assert worktree.user_changes(path, set()) == ["R  backend/run.py"]


# --- ignored: what remove deletes besides the user's changes --------------------------------

IGNORE = "__pycache__/\n*.log\n*.sql\n*.dump\nbackups/\ndist/\n"
IGNORED = [
    # (id, files made in the worktree, entries with their file counts, protected)
    ("nothing", [], {}, []),
    ("loose-file", ["debug.log"], {"debug.log": 1}, []),
    (
        "pycache-folders",
        ["backend/app/__pycache__/a.pyc", "backend/app/__pycache__/b.pyc", "x/__pycache__/c.pyc"],
        {"backend/app/__pycache__/": 2, "x/__pycache__/": 1},
        [],
    ),
    ("protected-loose", ["backend/prod.sql"], {"backend/prod.sql": 1}, ["backend/prod.sql"]),
    (
        "protected-inside-an-ignored-folder",
        ["backups/nightly/prod.dump", "backups/notes.txt"],
        {"backups/": 2},
        ["backups/nightly/prod.dump"],
    ),
    ("glob-characters-in-a-name", ["dist/[a]*.sql"], {"dist/": 1}, ["dist/[a]*.sql"]),
    ("untracked-but-not-ignored", ["notes.md"], {}, []),
]


@pytest.mark.parametrize(
    ("made", "entries", "protected"), [c[1:] for c in IGNORED], ids=[c[0] for c in IGNORED]
)
def test_ignored_lists_folders_with_their_files_and_what_protect_keeps(
    sample: Sample,
    repo: repo_.Repo,
    path: Path,
    made: list[str],
    entries: dict[str, int],
    protected: list[str],
) -> None:
    (sample.main / ".git" / "info" / "exclude").write_text(IGNORE)
    worktree.create(repo, path, "x")
    with_tool_paths(sample, path)
    for rel in made:
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        (path / rel).write_text("data\n")
    found = worktree.ignored(path, sample.project().own_paths(), ["*.sql", "*.dump"])
    assert (found.entries, found.protected) == (entries, protected)
    assert found.files == sum(entries.values())


@pytest.mark.parametrize(
    ("made", "entries", "calls"),
    [
        ([], {}, 1),  # the tool's settings alone: known without asking git about .claude/
        ([".claude/debug.log"], {".claude/debug.log": 1}, 2),
        ([".claude/sub/x.log"], {".claude/sub/x.log": 1}, 2),
    ],
    ids=["only-ours", "a-file-of-yours-beside", "one-deeper"],
)
def test_a_folder_of_the_tools_own_files_needs_no_more_git_calls(
    sample: Sample,
    repo: repo_.Repo,
    path: Path,
    monkeypatch: pytest.MonkeyPatch,
    made: list[str],
    entries: dict[str, int],
    calls: int,
) -> None:
    (sample.main / ".git" / "info" / "exclude").write_text(IGNORE + ".claude/settings.local.json\n")
    worktree.create(repo, path, "x")
    for rel in [".claude/settings.local.json", *made]:
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        (path / rel).write_text("{}\n")
    asked: list[tuple[str, ...]] = []
    names = repo_.names

    def counted(r: repo_.Repo, *args: str) -> list[str]:
        asked.append(args)
        return names(r, *args)

    monkeypatch.setattr(repo_, "names", counted)
    found = worktree.ignored(path, sample.project().own_paths(), ["*.sql"])
    assert found.entries == entries
    assert len(asked) == calls


@pytest.mark.parametrize("mode", ["symlink", "hardlink", "copy"])
def test_ignored_leaves_out_the_tools_links_and_copies_and_never_looks_inside(
    sample: Sample, repo: repo_.Repo, path: Path, mode: str
) -> None:
    # a database and a dump in main's node_modules: the tree's, the tool's, not the user's
    (sample.main / "frontend" / "node_modules" / "pkg" / "fixture.sql").write_text("x\n")
    project = sample.project(
        links=[
            {"path": "frontend/node_modules", "mode": mode},
            {"path": "backend/db.sqlite3", "mode": mode},
        ]
    )
    worktree.create(repo, path, "x")
    links.apply(sample.main, path, project.settings.links)
    envfiles.apply(sample.main, path, project.settings.copies)
    found = worktree.ignored(path, project.own_paths(), ["*.sql", "*.sqlite3"])
    assert (found.entries, found.protected) == ({}, [])
    # the same files, not the tool's: listed and protected
    found = worktree.ignored(path, set(), ["*.sql", "*.sqlite3"])
    assert "backend/db.sqlite3" in found.protected and "backend/.env" in found.entries


# --- remove ---------------------------------------------------------------------------------


def test_remove_takes_folder_and_record_but_never_follows_links_into_main(
    sample: Sample, repo: repo_.Repo, path: Path
) -> None:
    worktree.create(repo, path, "x")
    with_tool_paths(sample, path)
    (path / "untracked.txt").write_text("gone with the worktree\n")
    assert worktree.remove(repo, path) is True
    assert not path.exists()
    assert worktree.find(repo, path) is None
    assert str(path) not in git(sample.main, "worktree", "list")
    main_data_intact(sample.main)
    assert (sample.main / "backend" / ".env").read_text() == "SECRET_KEY=s3cret\n"
    assert branches(sample.main) == {"main", "x"}  # the branch is the caller's business


def read_only_tree(root: Path) -> list[Path]:
    """Folders as Go's module cache leaves them: read-only, like their files."""
    lib = root / "gomod" / "example.com" / "lib@v1.0.0"
    (lib / "sub").mkdir(parents=True)
    (lib / "lib.go").write_text("package lib\n")
    (lib / "sub" / "sub.go").write_text("package sub\n")
    folders = [root / "gomod", root / "gomod" / "example.com", lib, lib / "sub"]
    for f in [lib / "lib.go", lib / "sub" / "sub.go"]:
        f.chmod(0o444)
    for d in reversed(folders):
        d.chmod(0o555)
    return folders


REMOVE = (
    "import sys; from pathlib import Path; from tally_tasks import repo, worktree; "
    "walked = []; opened = worktree.make_removable; "
    "worktree.make_removable = lambda p: (walked.append(p), opened(p)); "
    "print(worktree.remove(repo.Repo(Path(sys.argv[1])), Path(sys.argv[2])), len(walked))"
)


@pytest.mark.parametrize("mode", ["hardlink", "copy", "reflink"])
def test_remove_takes_a_tree_with_read_only_folders(
    sample: Sample, repo: repo_.Repo, path: Path, mode: str
) -> None:
    """git stops at the first read-only folder and forgets the worktree all the same,
    after which nothing could remove it ("is not a working tree"). Run without root's
    power over permission bits, as a user's remove runs."""
    main_folders = read_only_tree(sample.main)
    worktree.create(repo, path, "x")
    [outcome] = links.apply(sample.main, path, [Link("gomod", mode)])
    assert outcome.ok, outcome.detail
    assert (path / "gomod").stat().st_mode & 0o777 == 0o555
    argv = obeying_permissions([sys.executable, "-c", REMOVE, str(sample.main), str(path)])
    r = subprocess.run(argv, capture_output=True, text=True)
    assert (r.returncode, r.stdout, r.stderr) == (0, "True 1\n", "")  # opened up once
    assert not path.exists()
    assert worktree.find(repo, path) is None
    assert [d.stat().st_mode & 0o777 for d in main_folders] == [0o555] * 4  # main's untouched
    assert (main_folders[2] / "lib.go").read_text() == "package lib\n"


def test_remove_walks_the_tree_only_when_git_could_not_delete_it(
    sample: Sample, repo: repo_.Repo, path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its folders are opened up (a walk of the whole tree, a hard-linked node_modules
    too) only after git stopped at one; a worktree git deletes at once is not walked."""
    worktree.create(repo, path, "x")
    with_tool_paths(sample, path)
    walked: list[Path] = []
    monkeypatch.setattr(worktree, "make_removable", walked.append)
    assert worktree.remove(repo, path) is True
    assert (walked, path.exists(), worktree.find(repo, path)) == ([], False, None)
    main_data_intact(sample.main)


def test_make_removable_opens_folders_inside_and_nothing_else(tmp_path: Path) -> None:
    inside = tmp_path / "wt"
    inside.mkdir()
    folders = read_only_tree(inside)
    outside = tmp_path / "outside"
    outside.mkdir(mode=0o555)
    (inside / "out").symlink_to(outside)
    locked = inside / "locked"
    locked.mkdir(mode=0)
    worktree.make_removable(inside)
    assert [d.stat().st_mode & 0o777 for d in [*folders, locked]] == [0o755] * 4 + [0o700]
    assert (folders[2] / "lib.go").stat().st_mode & 0o777 == 0o444  # files: main's, if linked
    assert outside.stat().st_mode & 0o777 == 0o555
    outside.chmod(0o755)


def test_remove_refuses_the_main_checkout(sample: Sample, repo: repo_.Repo) -> None:
    with pytest.raises(TallyError, match="is the main checkout"):
        worktree.remove(repo, sample.main)
    assert (sample.main / ".git").is_dir()


def test_remove_leaves_a_folder_git_does_not_know(
    sample: Sample, repo: repo_.Repo, path: Path
) -> None:
    path.mkdir()
    (path / "notes.txt").write_text("not yours\n")
    assert worktree.remove(repo, path) is False
    assert (path / "notes.txt").read_text() == "not yours\n"


def test_remove_of_a_deleted_folder_forgets_the_record(repo: repo_.Repo, path: Path) -> None:
    worktree.create(repo, path, "x")
    shutil.rmtree(path)
    assert worktree.find(repo, path) is not None
    assert worktree.remove(repo, path) is True
    assert worktree.find(repo, path) is None


def test_unlink_ours_only_takes_symlinks(sample: Sample, repo: repo_.Repo, path: Path) -> None:
    worktree.create(repo, path, "x")
    with_tool_paths(sample, path)
    worktree.unlink_ours(path, ["frontend/node_modules", "backend/.env", "missing/thing"])
    assert not (path / "frontend" / "node_modules").exists()
    assert (path / "backend" / ".env").read_text() == "SECRET_KEY=s3cret\n"  # a copy, kept
    main_data_intact(sample.main)


# --- listing and find_main ------------------------------------------------------------------


def test_listing_has_main_first_then_worktrees_with_branches(
    sample: Sample, repo: repo_.Repo, path: Path
) -> None:
    worktree.create(repo, path, "x")
    detached = sample.main.parent / "tally-detached"
    git(sample.main, "worktree", "add", "-q", "--detach", str(detached))
    got = worktree.listing(repo)
    assert got[0] == worktree.Worktree(sample.main, "main")
    assert sorted(got[1:], key=str) == sorted(
        [worktree.Worktree(path, "x"), worktree.Worktree(detached, None)], key=str
    )
    shutil.rmtree(detached)
    assert worktree.find(repo, detached) == worktree.Worktree(detached, None, prunable=True)
    assert worktree.find(repo, path / ".." / "tally-x") == worktree.Worktree(path, "x")


@pytest.mark.parametrize(
    ("inside", "sub"),
    [
        ("main", "."),
        ("main", "backend"),
        ("worktree", "."),
        ("worktree", "frontend"),
        ("worktree", "backend"),
    ],
    ids=["main", "main-subfolder", "worktree", "worktree-subfolder", "worktree-beside-db-link"],
)
def test_find_main_from_anywhere_inside(
    sample: Sample, repo: repo_.Repo, path: Path, inside: str, sub: str
) -> None:
    worktree.create(repo, path, "x")
    with_tool_paths(sample, path)
    main, common = repo_.find_main((sample.main if inside == "main" else path) / sub)
    assert main == sample.main.resolve()
    assert common == sample.main.resolve() / ".git"


def test_find_main_outside_any_repository(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    with pytest.raises(TallyError, match="is not in a git repository"):
        repo_.find_main(outside)


@pytest.mark.parametrize(
    ("have", "want", "clash"),
    [
        ("feat", "feat/y", "while branch feat exists"),
        ("feat/y", "feat", "while branch feat/y exists"),
        ("other", "feat/y", ""),
    ],
    ids=["prefix-exists", "longer-exists", "no-clash"],
)
def test_a_branch_git_cannot_make_beside_another_is_said_plainly(
    sample: Sample, repo: repo_.Repo, have: str, want: str, clash: str
) -> None:
    git(sample.main, "branch", have)
    got = repo_.refs(repo).clash(want)
    assert clash in got if clash else got == ""
    if clash:
        with pytest.raises(TallyError, match="pick another name"):
            worktree.create(repo, sample.main.parent / "tally-x", want)
        assert want not in branches(sample.main)


def test_a_repository_without_a_commit_says_to_make_one(tmp_path: Path) -> None:
    main = tmp_path / "empty"
    main.mkdir()
    git(main, "init", "-q")
    with pytest.raises(TallyError, match="make a first commit"):
        worktree.create(repo_.open_repo(main), tmp_path / "empty-x", "x")
    assert not (tmp_path / "empty-x").exists()


def test_a_worktree_left_initializing_by_a_killed_add_is_made_again(
    sample: Sample, repo: repo_.Repo, path: Path
) -> None:
    """A `git worktree add` killed mid-checkout leaves its worktree locked "initializing",
    half checked out; no git is making it any more, so create clears it and starts over."""
    worktree.create(repo, path, "x")
    (path / "backend" / "manage.py").unlink()  # half checked out
    admin = sample.main / ".git" / "worktrees" / path.name
    (admin / "locked").write_text("initializing")
    assert worktree.find(repo, path).locked == "initializing"  # type: ignore[union-attr]
    what = worktree.create(repo, path, "x")
    assert what == "existing branch x"
    assert (path / "backend" / "manage.py").exists()
    assert worktree.find(repo, path).locked is None  # type: ignore[union-attr]


def test_unpushed_submodule_commits_are_found(sample: Sample, tmp_path: Path) -> None:
    add_submodule(sample.main, tmp_path / "lib")
    wt = sample.main.parent / "tally-s"
    worktree.create(repo_.open_repo(sample.main), wt, "s")
    init_submodules(wt)
    assert worktree.submodule_commits(wt) == {}  # all of it is on its remote
    (wt / "lib" / "b.txt").write_text("b\n")
    git(wt / "lib", "add", "b.txt")
    git(wt / "lib", "commit", "-q", "-m", "only here")
    found = worktree.submodule_commits(wt)
    assert list(found) == ["lib"] and found["lib"][0].endswith("only here")
