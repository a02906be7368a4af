"""Pull requests: push a session's branch and open one with GitHub's `gh`, when it is
installed and logged in; and each branch's pull request for `list`.

`gh` stays optional: without it `pr` pushes and says so in one line, and `list` shows no
pull requests. What `list` shows is cached in the git dir (`tally-prs.json`), asked of
`gh` at most every `CACHE_SECONDS`, in one call: `list` is never slower by more.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from . import output, registry
from . import repo as repo_
from .errors import TallyError
from .session import Project, Session

CACHE_FILE = "tally-prs.json"
CACHE_SECONDS = 60.0
GH_TIMEOUT = 10.0  # seconds for one gh call in `list`


def push_remote(repo: repo_.Repo, branch: str) -> str:
    """Where `branch` is pushed: its push remote or upstream's, else origin, else the only
    remote."""
    named = repo_.run(
        repo,
        "for-each-ref",
        "--format=%(push:remotename)%00%(upstream:remotename)",
        f"refs/heads/{branch}",
    )
    for remote in named.strip().split("\0"):
        if remote:
            return remote
    remotes = repo_.run(repo, "remote").split()
    if "origin" in remotes:
        return "origin"
    if len(remotes) == 1:
        return remotes[0]
    if not remotes:
        raise TallyError(
            "this repository has no remote to push to; add one with: "
            + output.on_host("git remote add origin URL")
        )
    raise TallyError(
        f"which remote should {branch} go to ({', '.join(remotes)})? set it with: "
        + output.on_host(f"git branch --set-upstream-to REMOTE/{branch} {branch}")
        + " (after a first push there)"
    )


def pr(project: Project, session: Session, draft: bool = False) -> None:
    """Push the session's branch; open its pull request with gh when gh can."""
    repo = repo_.Repo(project.main)
    branch = session.branch
    if not repo_.branch_exists(repo, branch):
        raise TallyError(f"branch {branch} does not exist; nothing to push")
    remote = push_remote(repo, branch)
    proc = repo_.git(
        repo, "push", "--quiet", "-u", remote, f"refs/heads/{branch}:refs/heads/{branch}"
    )
    if proc.returncode != 0:
        said = [ln.strip() for ln in proc.stderr.splitlines() if ln.strip()]
        rejected = any("rejected" in ln for ln in said)
        hint = (
            f"; the remote's {branch} has commits yours lacks (or yours was rebased): push it "
            "yourself with: " + output.on_host(f"git push --force-with-lease {remote} {branch}")
            if rejected
            else ""
        )
        why = said[-1] if said else f"exit status {proc.returncode}"
        raise TallyError(f"git push of {branch} to {remote} failed: {why}{hint}")
    output.step("push", f"{branch} → {remote}")
    gh = shutil.which("gh")
    if gh is None:
        output.warn(
            "pr",
            "gh is not installed: open the pull request on your forge "
            "(or install gh, https://cli.github.com, and run pr again)",
        )
        return
    if _gh(gh, project.main, "auth", "status").returncode != 0:
        output.warn("pr", "gh is not logged in: run gh auth login, then pr again")
        return
    into = repo_.main_branch(repo, project.settings.land_into)
    seen = _gh(gh, project.main, "pr", "view", branch, "--json", "number,url,state")
    if seen.returncode == 0:
        found = _json(seen.stdout)
        if isinstance(found, dict) and found.get("state") == "OPEN":
            output.step(
                "pr",
                f"#{found.get('number')} is open already, the push updated it: {found.get('url')}",
            )
            return
    args = ["pr", "create", "--head", branch, "--base", into, "--fill"]
    made = _gh(gh, project.main, *args, *(["--draft"] if draft else []))
    if made.returncode != 0:
        said = [ln.strip() for ln in made.stderr.splitlines() if ln.strip()]
        raise TallyError(f"gh pr create failed: {said[-1] if said else made.returncode}")
    url = (made.stdout.strip().splitlines() or [""])[-1]
    output.step("pr", f"{'draft ' if draft else ''}opened {url}")
    with contextlib.suppress(OSError):
        (project.common_dir / CACHE_FILE).unlink()  # the next list asks again


def pull_requests(project: Project, max_age: float = CACHE_SECONDS) -> dict[str, dict[str, Any]]:
    """branch -> {number, state, url} of its newest pull request ({} without gh). One gh
    call at most every `max_age` seconds; its answer (a failure too) is kept meanwhile."""
    cache = project.common_dir / CACHE_FILE
    try:
        kept = json.loads(cache.read_text(encoding="utf-8"))
        if time.time() - float(kept["at"]) < max_age and isinstance(kept["prs"], dict):
            return dict(kept["prs"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    gh = shutil.which("gh")
    if gh is None:
        return {}
    fields = "number,state,url,headRefName"
    proc = _gh(
        gh,
        project.main,
        "pr",
        "list",
        "--state",
        "all",
        "--limit",
        "200",
        "--json",
        fields,
        timeout=GH_TIMEOUT,
    )
    prs: dict[str, dict[str, Any]] = {}
    listed = _json(proc.stdout) if proc.returncode == 0 else None
    for item in listed if isinstance(listed, list) else []:
        head = item.get("headRefName") if isinstance(item, dict) else None
        if isinstance(head, str) and head not in prs:  # gh lists the newest first
            prs[head] = {k: item.get(k) for k in ("number", "state", "url")}
    with contextlib.suppress(OSError):
        registry.write_atomic(cache, json.dumps({"at": time.time(), "prs": prs}) + "\n")
    return prs


def _gh(
    gh: str, cwd: Path, *args: str, timeout: float | None = None
) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            [gh, *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            errors="replace",
            stdin=subprocess.DEVNULL,
            timeout=timeout,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return subprocess.CompletedProcess([gh, *args], 1, "", str(e))


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None
