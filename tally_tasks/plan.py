"""`--dry-run`: what `add` and `remove` would do, computed without changing anything."""

from __future__ import annotations

from . import claude, output, pipeline, tmux, worktree
from . import ports as ports_
from . import repo as repo_
from .errors import TallyError
from .registry import ports_of
from .session import Project, check_name, render


def _line(step: str, detail: str) -> None:
    output.info(f"· {step:<12} {detail}")


def add(project: Project, name: str, srv: tmux.TmuxServer) -> None:
    check_name(name)
    entries = pipeline.load(project)
    existing = entries.get(name)
    if existing is not None and existing.get("state") != pipeline.CREATING:
        raise TallyError(f"session {name!r} already exists")
    if existing is None:
        pipeline.check_slug(project, entries, name)
    session = project.session(name, existing) if existing else project.new_session(name)
    taken = {p for n, e in entries.items() if n != name for p in ports_of(e).values()}
    have = {k: v for k, v in session.ports.items() if k in project.settings.ports}
    found = ports_.allocate(project.settings.ports, have, taken)
    session = type(session)(
        session.name, session.branch, session.worktree, session.tmux_name, found
    )
    output.info(output.bold(f"Would create session {name} (dry run: nothing changed)"))
    steps = project.settings.add_steps
    if "ports" in steps:
        _line("ports", " · ".join(f"{p} {n}" for p, n in found.items()) or "none configured")
    if "worktree" in steps:
        with repo_.open_repo(project.main) as repo:
            if session.worktree.is_dir():
                what = "exists"
            elif session.worktree.exists():
                what = "EXISTS and is not ours: add would fail"
            elif repo_.branch_exists(repo, session.branch):
                what = f"existing branch {session.branch}"
            else:
                base = repo_.current_branch(repo) or "HEAD"
                what = f"new branch {session.branch} from {base}"
        _line("worktree", f"{session.worktree}  ({what})")
    if "links" in steps:
        for link in project.settings.links:
            src = project.main / link.path
            state = f"{link.mode} of main" if src.exists() else "missing in main, would skip"
            _line("links", f"{link.path}  ({state})")
    if "env" in steps:
        for rel in project.settings.copies:
            state = "copy" if (project.main / rel).exists() else "missing in main, would skip"
            _line("env", f"{rel}  ({state})")
    if "claude_perms" in steps:
        config = claude.config_path(project.settings.claude_config)
        _line("claude-perms", f"copy approvals and trust in {config}")
    if "tmux" in steps:
        values = session.values(project)
        activate = render(project.settings.activate, values).strip()
        for win in project.settings.windows:
            line = render(win.cmd, values)
            line = f"{activate} && {line}" if activate and line else line
            folder = session.worktree / win.dir if win.dir else session.worktree
            _line("tmux", f"{session.tmux_name}:{win.name} in {folder}: {line}")
    for hook in project.settings.hooks.get("post_add", ()):
        _line("post-add", render(hook, session.values(project)))


def remove(
    project: Project, name: str, srv: tmux.TmuxServer, force: bool, keep_branch: bool
) -> None:
    session = pipeline.get(project, name)
    output.info(output.bold(f"Would remove session {name} (dry run: nothing changed)"))
    with repo_.open_repo(project.main) as repo:
        if not force:
            problems = pipeline.at_risk(project, repo, session)
            if problems:
                _line("refuse", "work would be lost: " + "; ".join(problems))
                _line("refuse", "nothing would be removed without --force")
                return
        for hook in project.settings.hooks.get("pre_remove", ()):
            _line("pre-remove", render(hook, session.values(project)))
        if tmux.exists(srv, session.tmux_name):
            _line("tmux", f"kill {session.tmux_name}")
        if session.worktree.exists():
            kind = "worktree" if worktree.find(repo, session.worktree) else "NOT a worktree"
            _line("worktree", f"remove {session.worktree} ({kind})")
        delete, why = pipeline.branch_fate(repo, session.branch, force, keep_branch)
        if why:
            _line("branch", why.replace("deleted", "delete", 1))
    _line("claude", f"drop the entry of {session.worktree}")
    _line("registry", f"drop {name} (frees ports {', '.join(map(str, session.ports.values()))})")
