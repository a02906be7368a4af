"""`prune`: remove every session whose work is finished, each with `remove`'s refusals.

Finished: its branch is merged into the main branch (squash and rebase merges on a forge
too, see merged.py), or its upstream branch was deleted on the remote (``--gone``, after
``git fetch --prune``). A session whose branch never moved since `add` made it is not
finished: it has not started.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import merged, output, sessions, tmux, worktree
from .. import repo as repo_
from ..errors import TallyError
from ..session import Project, Session
from ..steps.base import plan_line
from ..steps.project import ProjectTasks
from . import remove as remove_


@dataclass
class Finished:
    session: Session
    why: str  # "x is squash-merged into origin/main", "x's upstream origin/x is gone"


def run(
    project: Project,
    srv: tmux.TmuxServer,
    merged_: bool = True,
    gone: bool = True,
    dry_run: bool = False,
    tasks: ProjectTasks | None = None,
) -> None:
    """Remove the finished sessions; a TallyError names those kept for their work."""
    repo = repo_.Repo(project.main)
    if dry_run:
        output.info(output.bold("Would prune finished sessions (dry run: nothing changed)"))
    if repo_.run(repo, "remote").split():
        if dry_run:
            plan_line("fetch", "would run git fetch --all --prune first (not in a dry run)")
        else:
            _fetch(repo)
    done = finished(project, repo, merged_, gone)
    if not done:
        output.info("nothing to prune")
        return
    current = tmux.current_session(srv)
    done.sort(key=lambda f: f.session.tmux_name == current)  # this very session last
    kept = []
    for f in done:
        name = f.session.name
        with sessions.locked_repo(project):
            known = worktree.find(repo, f.session.worktree)
        refusal = remove_.refusal(project, f.session, known)
        problems = [refusal] if refusal else remove_.problems(project, repo, f.session, known)
        if problems:
            kept.append(name)
            output.warn("keep", f"{name}: {f.why}, but " + "; ".join(problems))
        elif dry_run:
            plan_line("remove", f"{name}: {f.why}")
        else:
            output.step("prune", f"{name}: {f.why}")
            remove_.run(project, name, srv, tasks=tasks)
    if kept:
        raise TallyError(
            f"{len(kept)} finished session(s) kept for work that would be lost: "
            + ", ".join(kept)
            + "; commit or move it, or remove one with: "
            + output.command("remove", kept[0], "--force")
        )


def finished(project: Project, repo: repo_.Repo, merged_: bool, gone: bool) -> list[Finished]:
    """The registered sessions whose branch is merged (`merged_`) or whose upstream is gone."""
    entries = sessions.load(project)
    refs = repo_.refs(repo)  # one git call: the branches, their tips and upstreams, main
    into = merged.targets(repo, refs.main_branch(project.settings.land_into), refs)
    found = []
    for name, entry in entries.items():
        session = project.session(name, entry)
        branch = session.branch
        if branch not in refs:
            continue  # no branch: nothing to say about it (doctor does)
        tip = refs.commits.get(branch, "")
        landed = merged.landed(repo, branch, into, tip) if merged_ else None
        # a branch that never moved since add made it is "merged": a session just begun
        begun = landed is not None and landed.how == "merged"
        if landed is not None and not (begun and merged.untouched(project.common_dir, branch)):
            found.append(Finished(session, f"{branch} is {landed}"))
            continue
        if gone and branch in refs.gone:
            upstream = refs.branches[branch][1].removeprefix("refs/remotes/")
            upstream = upstream.removeprefix("refs/heads/")  # a local branch's
            found.append(Finished(session, f"{branch}'s upstream {upstream} is gone"))
    return found


def _fetch(repo: repo_.Repo) -> None:
    proc = repo_.git(repo, "fetch", "--all", "--prune", "--quiet")
    if proc.returncode != 0:
        said = [ln.strip() for ln in proc.stderr.splitlines() if ln.strip()]
        output.warn(
            "fetch",
            f"git fetch failed ({said[-1] if said else proc.returncode}); "
            "going on with what is known",
        )
    else:
        output.step("fetch", "remotes fetched, deleted branches pruned")
