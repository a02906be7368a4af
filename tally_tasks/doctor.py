"""`session.doctor`: find what is broken about sessions and their environment; mend the safe part.

What `--fix` mends: missing or wrong links, missing copies, a tmux session or window that is
gone, a registry entry whose worktree is gone (after ``git worktree prune``, ending its tmux
session), and processes left over in a worktree whose tmux session is gone that still hold
the session's ports. What it never does: kill a process from outside the worktree (a foreign
program on a session's port is reported, with its PID and command).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field

from . import links, output, pipeline, registry, status, tmux, worktree
from . import repo as repo_
from .errors import TallyError
from .session import Project, Session, commands, render


@dataclass
class Report:
    problems: list[str] = field(default_factory=list)
    fixed: list[str] = field(default_factory=list)

    def bad(self, where: str, what: str) -> None:
        self.problems.append(f"{where}: {what}")
        output.warn(where, what)

    def mended(self, where: str, what: str) -> None:
        self.fixed.append(f"{where}: {what}")
        output.step(where, "fixed: " + what)


def check_tools(project: Project, report: Report) -> None:
    for tool in ("git", "tmux"):
        if shutil.which(tool):
            output.step("tools", f"{tool} found")
        else:
            report.bad("tools", f"{tool} is not on PATH; install it")
    have = tmux.version() if shutil.which("tmux") else None
    if have is not None and have < tmux.MIN_VERSION:
        report.bad(
            "tools", f"tmux {have[0]}.{have[1]} is too old; tally-tasks needs tmux 3.2 or newer"
        )
    known = {"project": project.name, "main": str(project.main)}
    programs = []
    for win in project.settings.windows:
        for cmd in (win.cmd, win.resume_cmd):
            for word in commands(render(cmd, known)):
                if "{" not in word and word not in programs:  # `{worktree}/x`: per session
                    programs.append(word)
    for word in programs:
        if _available(word):
            output.step("tools", f"{word} found")
        else:
            hint = (
                "install Claude Code (npm install -g @anthropic-ai/claude-code) or change the "
                "agent window in tally.windows"
                if word == "claude"
                else "install it, or change tally.windows"
            )
            report.bad("tools", f"{word} (a window command) is not on PATH; {hint}")
    word = next(iter(commands(render(project.settings.activate, known))), "")
    if word and not _available(word):
        report.bad(
            "activate",
            f"`{word}` (from tally.activate) is not a command in your login shell; "
            "windows will stop before their command. Fix tally.activate or install it",
        )
    elif word:
        output.step("activate", f"{word} available")


def _available(word: str) -> bool:
    """On PATH, a shell builtin, or a function defined by the user's login shell rc."""
    if word in {".", "source", "export", "cd", "set", "unset", ":", "true", "eval"}:
        return True
    if shutil.which(word):
        return True
    shell = os.environ.get("SHELL") or "/bin/sh"
    try:
        proc = subprocess.run(
            [shell, "-lic", f"command -v {shlex.quote(word)}"],
            capture_output=True,
            stdin=subprocess.DEVNULL,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0


def check_session(
    project: Project,
    session: Session,
    srv: tmux.TmuxServer,
    live: set[str],
    fix: bool,
    report: Report,
) -> None:
    where = session.name
    wt = session.worktree
    with repo_.open_repo(project.main) as repo:
        known = worktree.find(repo, wt)
        if not wt.is_dir():
            report.bad(where, f"worktree {wt} is missing")
            if fix:
                # its windows work in a folder that is gone; left running, they would be
                # stale state of their own once the entry is dropped
                if tmux.kill(srv, session.tmux_name):
                    report.mended(where, f"ended tmux session {session.tmux_name}")
                _stop_orphans(session, report)
                with pipeline.locked_repo(project):
                    repo_.run(repo, "worktree", "prune")
                pipeline.drop_entry(project, session.name)
                report.mended(where, "dropped the registry entry (worktree gone; git pruned)")
            return
        if known is None:
            report.bad(where, f"{wt} exists but git does not know it as a worktree")
            return
        if known.locked == worktree.INITIALIZING:
            report.bad(
                where,
                f"{wt} is half made (a `git worktree add` was stopped); make it again with: "
                + output.command("add", session.name),
            )
            return
        if not repo_.branch_exists(repo, session.branch):
            report.bad(where, f"branch {session.branch} is missing")
        elif known.branch != session.branch:
            report.bad(
                where, f"worktree is on {known.branch or 'a detached HEAD'}, not {session.branch}"
            )
    broken_links = _check_links(project, session, report)
    if broken_links and fix:
        pipeline.step_links(project, session)
        report.mended(where, "relinked " + ", ".join(broken_links))
    missing_copies = _check_copies(project, session, report)
    if missing_copies and fix:
        pipeline.step_env(project, session)
        report.mended(where, "copied " + ", ".join(missing_copies))
    _check_tmux(project, session, srv, live, fix, report)
    _check_ports(session, report)


def _check_links(project: Project, session: Session, report: Report) -> list[str]:
    broken = []
    for link in project.settings.links:
        src, dest = project.main / link.path, session.worktree / link.path
        if not (src.exists() or src.is_symlink()):
            report.bad(session.name, f"{link.path} is missing in the main checkout (link skipped)")
            continue
        if link.mode == "symlink":
            if not dest.is_symlink():
                if dest.exists():
                    report.bad(session.name, f"{link.path} is a real file, not a link to main")
                else:
                    report.bad(session.name, f"link {link.path} is missing")
                    broken.append(link.path)
            elif os.readlink(dest) != str(src):
                report.bad(session.name, f"link {link.path} points at {os.readlink(dest)}")
                broken.append(link.path)
        elif not dest.exists():
            report.bad(session.name, f"{link.path} ({link.mode}) is missing")
            broken.append(link.path)
        elif missing := links.behind(src, dest):  # noted, not fixed: a rebuild is asked for
            output.warn(
                session.name,
                f"{link.path} ({link.mode}) lacks {', '.join(missing[:3])} that main has now; "
                "build it again with: " + output.command("links", session.name, "--refresh"),
            )
    return broken


def _check_copies(project: Project, session: Session, report: Report) -> list[str]:
    missing = []
    for rel in project.settings.copies:
        src, dest = project.main / rel, session.worktree / rel
        if not src.exists():
            continue
        if not dest.exists():
            report.bad(session.name, f"copy {rel} is missing")
            missing.append(rel)
        elif src.is_file() and dest.is_file() and src.read_bytes() != dest.read_bytes():
            output.warn(session.name, f"{rel} differs from main's (noted, not changed)")
    return missing


def _check_tmux(
    project: Project,
    session: Session,
    srv: tmux.TmuxServer,
    live: set[str],
    fix: bool,
    report: Report,
) -> None:
    want = [w.name for w in project.settings.windows]
    if session.tmux_name not in live:
        report.bad(session.name, f"tmux session {session.tmux_name} is not running")
        for h in pipeline.orphans(session):
            report.bad(
                session.name,
                f"{h.describe()} from the worktree still holds a port of this session; "
                "--fix stops it before restarting the windows",
            )
        if fix:
            _stop_orphans(session, report)
            pipeline.step_tmux(project, session, srv, resume=True)
            report.mended(session.name, f"restarted {session.tmux_name}")
            try:  # a session brought back, as resume brings one back
                pipeline.run_hooks(project, session, "post_resume")
            except TallyError as e:
                report.bad(session.name, str(e))
        return
    panes = tmux.windows(srv, session.tmux_name) or {}
    missing = [w for w in want if w not in panes]
    stale = [w for w in tmux.in_deleted_folders(panes) if w in want]
    if missing:
        report.bad(session.name, "tmux windows missing: " + ", ".join(missing))
    if stale:
        report.bad(
            session.name,
            "tmux windows working in a deleted folder (the worktree was made again): "
            + ", ".join(stale),
        )
    if fix and (missing or stale):
        pipeline.step_tmux(project, session, srv, resume=True)
        report.mended(session.name, "restarted windows " + ", ".join(missing + stale))


def _stop_orphans(session: Session, report: Report) -> None:
    for h in pipeline.stop_orphans(session):
        report.mended(session.name, f"stopped {h.describe()}, left over from the worktree")


def _check_ports(session: Session, report: Report) -> None:
    for port, procs in pipeline.foreign_holders(session).items():
        number = session.ports[port]
        who = ", ".join(h.describe() for h in procs) or "a process we cannot see"
        report.bad(
            session.name,
            f"{port} port {number} is held by {who}, not by this session "
            f"({output.on_host(f'lsof -i :{number}')}); stop it yourself, doctor never kills it",
        )


def run(project: Project, srv: tmux.TmuxServer, name: str | None, fix: bool) -> Report:
    report = Report()
    check_tools(project, report)
    entries = pipeline.load(project)
    if name:
        pipeline.get(project, name)
        entries = {name: entries[name]}
    try:
        live = tmux.running(srv)
    except TallyError as e:
        report.bad("tmux", str(e))
        live = set()
    for n, entry in entries.items():
        session = project.session(n, entry)
        pid = pipeline.adder(entry)
        if pid is not None:  # half-made on purpose: checking it now would only mislead
            output.step(n, f"being added right now (pid {pid}); not checked")
            continue
        before = len(report.problems)
        check_session(project, session, srv, live, fix, report)
        if len(report.problems) == before:
            output.step(n, "ok")
    if not name:
        for note in status.stale(project, srv, registry.load(project.registry_path)):
            report.bad("stale", note)
    return report
