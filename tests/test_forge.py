"""`pr` and the pull requests `list --json` shows, with a stand-in `gh` on PATH that logs its
argv and answers as gh does; a bare origin to push to."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import libtmux
import pytest
from conftest import Sample, add_origin, commit, git, run_cli

from tally_tasks import forge, sessions
from tally_tasks.errors import TallyError
from tally_tasks.operations import add as add_op

NO_TMUX = ["ports", "worktree", "links", "env", "claude_perms"]

# gh's answers: `auth status` fails when logged out; `pr view B` fails when B has none;
# `pr create` prints the new pull request's URL; `pr list --json` prints a JSON list.
GH = """#!{py}
import json, os, sys
state = {state!r}
with open(os.path.join(state, "calls.jsonl"), "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\\n")
args = sys.argv[1:]
prs = os.path.join(state, "prs.json")
known = json.load(open(prs)) if os.path.exists(prs) else []
if args[:2] == ["auth", "status"]:
    if os.path.exists(os.path.join(state, "logged-out")):
        sys.exit("You are not logged into any GitHub hosts. To log in, run: gh auth login")
    print("github.com: Logged in to github.com account tally")
elif args[:2] == ["pr", "view"]:
    mine = [p for p in known if p["headRefName"] == args[2]]
    if not mine:
        sys.exit('no pull requests found for branch "%s"' % args[2])
    print(json.dumps({{k: mine[0][k] for k in ("number", "url", "state")}}))
elif args[:2] == ["pr", "create"]:
    head = args[args.index("--head") + 1]
    number = 7 + len(known)
    url = "https://github.com/example/tally/pull/%d" % number
    known.insert(0, {{"number": number, "state": "OPEN", "url": url, "headRefName": head}})
    json.dump(known, open(prs, "w"))
    print(url)
elif args[:2] == ["pr", "list"]:
    print(json.dumps(known))
else:
    sys.exit("unknown command " + " ".join(args))
"""


def install_gh(root: Path) -> Path:
    """The stand-in gh (in the test's bin folder, first on PATH); returns its state folder."""
    state = root / "gh-state"
    state.mkdir()
    script = root / "bin" / "gh"
    script.write_text(GH.format(py=sys.executable, state=str(state)))
    script.chmod(0o755)
    return state


@pytest.fixture
def gh(isolated_env: Path) -> Path:
    return install_gh(isolated_env)


def calls(state: Path) -> list[list[str]]:
    log = state / "calls.jsonl"
    return [json.loads(ln) for ln in log.read_text().splitlines()] if log.exists() else []


def session_with_work(sample: Sample, srv: libtmux.Server) -> Path:
    add_op.run(sample.project(add_steps=NO_TMUX), "x", srv)
    wt = sample.main.parent / "tally-x"
    commit(wt, "a.txt", "a\n", "add a")
    return wt


def pr(sample: Sample, draft: bool = False) -> None:
    project = sample.project()
    forge.pr(project, sessions.get(project, "x"), draft)


@pytest.mark.parametrize("draft", [False, True], ids=["ready", "draft"])
def test_pr_pushes_and_opens_a_pull_request(
    sample: Sample, srv: libtmux.Server, gh: Path, capsys: pytest.CaptureFixture[str], draft: bool
) -> None:
    bare = add_origin(sample.main)
    wt = session_with_work(sample, srv)
    pr(sample, draft)
    assert git(bare, "rev-parse", "x") == git(wt, "rev-parse", "HEAD")
    assert git(sample.main, "rev-parse", "--abbrev-ref", "x@{upstream}").strip() == "origin/x"
    create = ["pr", "create", "--head", "x", "--base", "main", "--fill"]
    assert calls(gh)[-1] == create + (["--draft"] if draft else [])
    out = capsys.readouterr().out
    assert "push         x → origin" in out
    assert "opened https://github.com/example/tally/pull/7" in out


def test_pr_again_says_the_open_one_was_updated(
    sample: Sample, srv: libtmux.Server, gh: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bare = add_origin(sample.main)
    wt = session_with_work(sample, srv)
    pr(sample)
    commit(wt, "b.txt", "b\n", "add b")
    capsys.readouterr()
    pr(sample)
    assert git(bare, "rev-parse", "x") == git(wt, "rev-parse", "HEAD")
    assert sum(c[:2] == ["pr", "create"] for c in calls(gh)) == 1
    assert "#7 is open already, the push updated it" in capsys.readouterr().out


@pytest.mark.parametrize("installed", [False, True], ids=["no-gh", "gh-logged-out"])
def test_without_gh_pr_pushes_and_says_so_in_one_line(
    sample: Sample,
    srv: libtmux.Server,
    isolated_env: Path,
    capsys: pytest.CaptureFixture[str],
    installed: bool,
) -> None:
    bare = add_origin(sample.main)
    session_with_work(sample, srv)
    if installed:
        (install_gh(isolated_env) / "logged-out").touch()
    pr(sample)
    assert git(bare, "rev-parse", "x") == git(sample.main, "rev-parse", "x")
    said = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("!")]
    want = "gh is not logged in: run gh auth login" if installed else "gh is not installed"
    assert len(said) == 1 and want in said[0]


def test_pr_without_a_remote_names_the_fix(sample: Sample, srv: libtmux.Server, gh: Path) -> None:
    session_with_work(sample, srv)
    with pytest.raises(TallyError, match="no remote to push to; add one with: git remote add"):
        pr(sample)
    assert calls(gh) == []


def test_a_rejected_push_says_how_to_force_it(
    sample: Sample, srv: libtmux.Server, gh: Path
) -> None:
    add_origin(sample.main)
    wt = session_with_work(sample, srv)
    pr(sample)
    git(wt, "commit", "-q", "--amend", "-m", "add a, reworded")
    with pytest.raises(TallyError, match=r"push it yourself with: git push --force-with-lease"):
        pr(sample)


# --- list --json ----------------------------------------------------------------------------


def test_list_json_has_each_branchs_pull_request_asking_gh_once(
    sample: Sample, srv: libtmux.Server, gh: Path
) -> None:
    add_origin(sample.main)
    session_with_work(sample, srv)
    add_op.run(sample.project(add_steps=NO_TMUX), "y", srv)
    pr(sample)
    rows: dict[str, Any] = {}
    for _ in range(3):
        r = run_cli(["inv", "session.list", "--json"], sample.main)
        assert r.returncode == 0, r.stderr
        rows = {row["name"]: row for row in json.loads(r.stdout)}
    assert rows["x"]["pr"] == {
        "number": 7,
        "state": "OPEN",
        "url": "https://github.com/example/tally/pull/7",
    }
    assert "pr" not in rows["y"]
    assert sum(c[:2] == ["pr", "list"] for c in calls(gh)) == 1  # then from the cache
    brief = run_cli(["inv", "session.list", "--json", "--brief"], sample.main)
    assert "pr" not in json.loads(brief.stdout)[0]


def test_the_cache_is_asked_again_when_old_and_a_failure_is_cached_too(
    sample: Sample, gh: Path
) -> None:
    project = sample.project()
    (gh / "prs.json").write_text(
        json.dumps([{"number": 3, "state": "MERGED", "url": "u", "headRefName": "x"}])
    )
    assert forge.pull_requests(project) == {"x": {"number": 3, "state": "MERGED", "url": "u"}}
    assert forge.pull_requests(project, max_age=0) == {
        "x": {"number": 3, "state": "MERGED", "url": "u"}
    }
    assert sum(c[:2] == ["pr", "list"] for c in calls(gh)) == 2
    (gh / "prs.json").write_text("not json")  # gh fails: nothing known, and kept so
    assert forge.pull_requests(project, max_age=0) == {}
    assert forge.pull_requests(project) == {}
    assert sum(c[:2] == ["pr", "list"] for c in calls(gh)) == 3
