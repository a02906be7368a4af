"""`--dry-run`: what `add` and `remove` would do, computed without changing anything.

Each plan asks the same questions as the real command, through the same functions where
`pipeline` has them, so a refusal of the real command is a ``refuse`` line here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from . import claude, output, pipeline, tmux, worktree
from . import ports as ports_
from . import repo as repo_
from .errors import TallyError
from .registry import ports_of
from .session import Project, Session, check_name, render

T = TypeVar("T")


def _line(step: str, detail: str) -> None:
    output.info(f"· {step:<12} {detail}")


def _refuse(problems: list[str], nothing: str) -> None:
    for problem in problems:
        _line("refuse", problem)
    _line("refuse", nothing)


def _silently(fn: Callable[[], T]) -> T:
    """Run `fn` with its step and warning lines held back (the plan says it its own way)."""
    was = output.is_quiet()
    output.set_quiet(True)
    try:
        return fn()
    finally:
        output.set_quiet(was)


# --- add ----------------------------------------------------------------------------------


def add(project: Project, name: str, srv: tmux.TmuxServer, force: bool = False) -> bool:
    """The plan of `pipeline.add` (`force`: its --force, over existing copies); False when
    the real add would refuse."""
    check_name(name)
    steps = project.settings.add_steps
    for needed in ("ports", "worktree"):
        if needed not in steps:
            raise TallyError(f"tally.add_steps must include {needed!r} (it has {list(steps)})")
    entries = pipeline.load(project)
    existing = entries.get(name)
    if existing is None:
        pipeline.check_slug(project, entries, name)
    else:
        pipeline.check_claim(name, existing, project.new_session(name).worktree, project.main)
    session = project.session(name, existing) if existing else project.new_session(name)
    taken = {p for n, e in entries.items() if n != name for p in ports_of(e).values()}
    have = {k: v for k, v in session.ports.items() if k in project.settings.ports}
    found = ports_.allocate(project.settings.ports, have, taken)
    session = Session(session.name, session.branch, session.worktree, session.tmux_name, found)
    output.info(output.bold(f"Would create session {name} (dry run: nothing changed)"))

    refusals = []
    if existing is None and tmux.exists(srv, session.tmux_name):
        refusals.append(
            f"a tmux session {session.tmux_name} already runs but no session {name!r} is "
            "registered; end it with: "
            + output.on_host(f"tmux kill-session -t ={session.tmux_name}")
        )
    with repo_.open_repo(project.main) as repo:
        what, problem = _worktree_plan(project, repo, session)
        ref = session.branch if repo_.branch_exists(repo, session.branch) else "HEAD"
        tracked = {
            win.dir
            for win in project.settings.windows
            if win.dir and repo_.ok(repo, "cat-file", "-e", f"{ref}:{win.dir.rstrip('/')}")
        }
    if problem:
        refusals.append(problem)
    if "tmux" in steps and not session.worktree.is_dir():
        made = [lk.path for lk in project.settings.links] + list(project.settings.copies)
        for i, win in enumerate(project.settings.windows):
            d = win.dir.rstrip("/")
            if d and d not in tracked and not any(m.startswith(d + "/") for m in made):
                refusals.append(
                    f"config key tally.windows[{i}].dir: {d}/ is not in {ref}; add would fail"
                )
    if refusals:
        _refuse(refusals, "nothing would be created")
        return False

    if "ports" in steps:
        _line("ports", " · ".join(f"{p} {n}" for p, n in found.items()) or "none configured")
    if "worktree" in steps:
        _line("worktree", f"{session.worktree}  ({what})")
    if "links" in steps:
        for link in project.settings.links:
            src = project.main / link.path
            state = f"{link.mode} of main" if src.exists() else "missing in main, would skip"
            _line("links", f"{link.path}  ({state})")
    if "env" in steps:
        _env_plan(project, session, force)
    if "claude_perms" in steps:
        if pipeline.uses_claude(project):
            config = claude.config_path(project.settings.claude_config)
            _line("claude-perms", f"copy approvals and trust in {config}")
        else:
            _line("claude-perms", "no window runs Claude Code, nothing to do")
    if "tmux" in steps:
        _tmux_plan(project, session, srv, tracked)
    for hook in project.settings.hooks.get("post_add", ()):
        _line("post-add", render(hook, session.values(project)))
    return True


def _worktree_plan(project: Project, repo: repo_.Repo, session: Session) -> tuple[str, str]:
    """(what `worktree.create` would do, why it would refuse or ""), in its order."""
    path, branch = session.worktree, session.branch
    known = worktree.find(repo, path)
    if known is not None and not (known.prunable or not path.is_dir()):
        if known.branch != branch:
            on = known.branch or "a detached HEAD"
            return "", f"{path} is a worktree on {on}, not {branch}; add would fail"
        return "exists", ""
    if path.exists() or path.is_symlink():
        return "", (
            f"{path} already exists and is not this session's worktree; add would fail "
            "(move it away or set tally.worktrees to another folder)"
        )
    if repo_.branch_exists(repo, branch):
        pruned = known is not None  # create prunes git's stale records first
        for wt in worktree.listing(repo):
            if wt.branch == branch and not (pruned and wt.prunable):
                return "", f"branch {branch} is already checked out at {wt.path}; add would fail"
        return f"existing branch {branch}", ""
    clash = worktree.branch_clash(repo, branch)
    if clash:
        return "", clash + "; add would fail"
    return f"new branch {branch} from {repo_.current_branch(repo) or 'HEAD'}", ""


def _env_plan(project: Project, session: Session, force: bool) -> None:
    """`pipeline.step_env`'s choice: `copies`, then what `.worktreeinclude` names that is
    neither a copy nor in, at or around a linked path (never over an existing file)."""
    copies, included = pipeline.env_paths(project)
    planned = [(rel, force, "") for rel in copies]
    planned += [(rel, False, ", from .worktreeinclude") for rel in included]
    for rel, over, source in planned:
        if not (project.main / rel).exists():
            state = "missing in main, would skip"
        elif (session.worktree / rel).exists() and not over:
            state = "exists, would keep"
        else:
            state = "copy"
        _line("env", f"{rel}  ({state}{source})")


def _tmux_plan(project: Project, session: Session, srv: tmux.TmuxServer, tracked: set[str]) -> None:
    """The windows exactly as `pipeline.window_runs` types them (a folder the branch lacks
    and no link or copy makes was refused before)."""
    runs = _silently(lambda: pipeline.window_runs(project, session))
    made = [lk.path for lk in project.settings.links] + list(project.settings.copies)
    have = set(tmux.windows(srv, session.tmux_name) or {})
    for win, run in zip(project.settings.windows, runs, strict=True):
        if run.name in have:
            continue
        folder = run.dir
        if not session.worktree.is_dir():
            d = win.dir.rstrip("/")
            present = not d or d in tracked or any(m.startswith(d + "/") for m in made)
            folder = session.worktree / d if present else session.worktree
        where = f"{session.tmux_name}:{run.name} in {folder}"
        _line("tmux", f"{where}: {run.keys}" if run.keys else f"{where} (an idle shell)")
    if have and all(r.name in have for r in runs):
        _line("tmux", f"{session.tmux_name} running")


# --- remove -------------------------------------------------------------------------------


def remove(
    project: Project, name: str, srv: tmux.TmuxServer, force: bool, keep_branch: bool
) -> bool:
    """The plan of `pipeline.remove`: its refusals, in its order, then its steps; False
    when the real remove would refuse."""
    session = pipeline.get(project, name)
    wt = session.worktree
    output.info(output.bold(f"Would remove session {name} (dry run: nothing changed)"))
    with repo_.open_repo(project.main) as repo:
        known = worktree.find(repo, wt)
        refusal = pipeline.remove_refusal(project, session, known)
        if refusal:
            _refuse([refusal + " (--force does not change this)"], "nothing would be removed")
            return False
        if not force:
            problems = pipeline.remove_problems(project, repo, session, known)
            if problems:
                _refuse(
                    ["work would be lost: " + "; ".join(problems)],
                    "nothing would be removed without --force",
                )
                return False
        hooks = project.settings.hooks.get("pre_remove", ())
        if hooks and not wt.is_dir():
            _line("pre-remove", f"not run: worktree {wt} is gone ({len(hooks)} hook(s))")
        else:
            for hook in hooks:
                _line("pre-remove", render(hook, session.values(project)))
        running = tmux.exists(srv, session.tmux_name)
        inside = running and tmux.current_session(srv) == session.tmux_name
        if running and not inside:
            _line("tmux", f"kill {session.tmux_name}")
        when = " if it outlives the tmux session" if running and not inside else ""
        for h in pipeline.orphans(session):
            _line("processes", f"stop {h.describe()}, holding a session port{when}")
        if wt.exists() or known is not None:
            gone = "" if wt.exists() else " (already gone: drop git's record of it)"
            _line("worktree", f"remove {wt}{gone}")
        delete, why = pipeline.branch_fate(repo, session.branch, force, keep_branch)
        elsewhere = [
            w.path
            for w in worktree.listing(repo)
            if w.branch == session.branch and not worktree.same(w.path, wt)
        ]
        if delete and elsewhere:
            _line("branch", f"keep {session.branch}: checked out at {elsewhere[0]}")
        elif why:
            _line("branch", why.replace("deleted", "delete", 1))
    _line("claude", f"drop the entry of {wt}")
    _line("registry", f"drop {name} (frees ports {', '.join(map(str, session.ports.values()))})")
    if inside:
        _line("tmux", f"kill {session.tmux_name} last, this window with it")
    return True
