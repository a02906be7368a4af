"""The session pipeline: each step on its own, and add / remove / resume built on them.

Every function takes a `Project` (paths and settings) and, for tmux, a server (a
``libtmux.Server`` or `tmux.Server`): no invoke Context, so tests drive them directly
against real git and tmux.
"""

from __future__ import annotations

import functools
import os
import re
import shlex
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import claude, config, envfiles, links, output, registry, tmux, worktree
from . import ports as ports_
from . import repo as repo_
from .errors import TallyError
from .session import Project, Session, check_name, programs, render, slugify

CREATING = "creating"
_FAULT_ENV = "TALLY_TEST_FAULT"  # tests: "pause:<step>" / "fail:<step>" to hit a boundary


def _fault(step: str) -> None:
    """Test hook: pause or fail at a step boundary, so kill/rollback tests are exact."""
    spec = os.environ.get(_FAULT_ENV, "")
    if not spec:
        return
    action, _, where = spec.partition(":")
    if where != step:
        return
    if action == "fail":
        raise TallyError(f"injected failure after {step}")
    if action == "pause":
        marker = os.environ.get("TALLY_TEST_FAULT_MARK")
        if marker:
            Path(marker).write_text(step)
        time.sleep(3600)


def _editing(project: Project) -> Any:
    return registry.editing(project.registry_path, project.lock_path, project.settings.lock_timeout)


def locked_repo(project: Project) -> Any:
    return registry.locked(
        project.lock_path, project.settings.lock_timeout, project.registry_path.name
    )


def load(project: Project) -> registry.Registry:
    return registry.load(project.registry_path)


def get(project: Project, name: str) -> Session:
    """A registered session, or a clear error."""
    entries = load(project)
    if name not in entries:
        known = ", ".join(sorted(entries)) or "none yet"
        raise TallyError(
            f"no session named {name!r} (sessions: {known}); "
            "create it with: " + output.command("add", name)
        )
    return project.session(name, entries[name])


def check_slug(project: Project, entries: registry.Registry, name: str) -> None:
    """Refuse a name whose folder and tmux name another session already has."""
    slug = slugify(name)
    for other in entries:
        if other != name and slugify(other) == slug:
            raise TallyError(
                f"session name {name!r} clashes with existing session {other!r} "
                f"(both become {project.tmux_name(name)}); pick another name"
            )


# --- steps ------------------------------------------------------------------------------


def step_ports(project: Project, name: str, create: bool = False) -> Session:
    """Give the session its ports (creating its registry entry when `create`)."""
    return _ports(project, name, create)[0]


def _ports(project: Project, name: str, create: bool, claim: bool = False) -> tuple[Session, bool]:
    """The ports step; also (for `add`, `claim`) decides under the lock whether this run
    owns the session: a new entry, or an unfinished one whose adder is gone. Returns the
    session and whether this run created its entry."""
    if not claim:
        check_name(name)  # add checked it first
    bases = project.settings.ports
    created = False
    with _editing(project) as entries:
        entry = entries.get(name)
        if entry is None:
            if not create:
                raise TallyError(
                    f"no session named {name!r}; create it with: " + output.command("add", name)
                )
            check_slug(project, entries, name)
            fresh = project.new_session(name)
            entry = {"worktree": str(fresh.worktree), "branch": fresh.branch}
            entry["created"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
            entries[name] = entry
            created = True
        elif claim:
            check_claim(name, entry, project.new_session(name).worktree, project.main)
        if claim:  # unfinished until add's last step: a killed add is seen as such
            entry["state"] = CREATING
            entry["pid"] = os.getpid()
            entry["pid_start"] = ports_.process_start(os.getpid())
        have = registry.ports_of(entry)
        taken = {
            p
            for other, e in entries.items()
            if other != name
            for p in registry.ports_of(e).values()
        }
        found = ports_.allocate(bases, {k: v for k, v in have.items() if k in bases}, taken)
        # the old script's key order: ports, worktree, branch; then our extra keys
        ordered = {f"{port}_port": number for port, number in found.items()}
        ordered.update({k: v for k, v in entry.items() if k not in ordered})
        entries[name] = ordered
        session = project.session(name, ordered)
    shown = " · ".join(f"{p} {n}" for p, n in found.items()) or "none configured"
    output.step("ports", shown)
    return session, created


def check_claim(name: str, entry: registry.Entry, fresh: Path, main: Path) -> None:
    """May this `add` take over the entry? One that is unfinished (a killed add; or made
    step by step, its worktree not yet, or only half, made at the usual place `fresh`) and
    that no running add is working on."""
    recorded = Path(entry["worktree"]) if entry.get("worktree") else fresh
    started = recorded == fresh and (
        not recorded.is_dir() or worktree.half_made(repo_.Repo(main), recorded)
    )
    if entry.get("state") != CREATING and not started:
        raise TallyError(
            f"session {name!r} already exists; restart its windows with "
            + output.command("resume", name)
            + ", or remove it first"
        )
    pid = adder(entry)
    if pid is not None and pid != os.getpid():
        raise TallyError(
            f"another tally-session (pid {pid}) is adding {name!r} right now; "
            "wait for it to finish, or stop it and run add again"
        )


def adder(entry: registry.Entry) -> int | None:
    """The pid of the `add` still working on this entry, if it is running."""
    pid = entry.get("pid")
    if entry.get("state") != CREATING or not isinstance(pid, int) or not ports_.is_alive(pid):
        return None
    started, now = entry.get("pid_start"), ports_.process_start(pid)
    if started and now and started != now:
        return None  # the pid was reused (a reboot, a long time): that add is gone
    return pid


def step_worktree(project: Project, session: Session) -> str:
    with repo_.open_repo(project.main) as repo, locked_repo(project):
        what = worktree.create(repo, session.worktree, session.branch)
    output.step("worktree", f"{_short(project, session.worktree)}  ({what})")
    return what


def _require_worktree(session: Session) -> None:
    if not session.worktree.is_dir():
        raise TallyError(
            f"worktree {session.worktree} is missing; "
            "run: " + output.command("worktree", session.name)
        )


def step_links(project: Project, session: Session, refresh: bool = False) -> None:
    _require_worktree(session)
    hint = output.command("links", session.name, "--refresh")
    outcomes = links.apply(
        project.main, session.worktree, project.settings.links, refresh, refresh_hint=hint
    )
    _report("links", outcomes)


def step_env(project: Project, session: Session, force: bool = False) -> None:
    """Copy `copies` (`force`: over existing copies) and what `.worktreeinclude` names
    (never over anything, never in, at or around a linked path)."""
    _require_worktree(session)
    copies, included = env_paths(project)
    outcomes = envfiles.apply(project.main, session.worktree, copies, force)
    outcomes += envfiles.apply(project.main, session.worktree, included, force=False)
    _report("env", outcomes)


def env_paths(project: Project) -> tuple[list[str], list[str]]:
    """(the configured copies, the `.worktreeinclude` paths that are neither a copy nor
    in, at or around a linked path)."""
    copies = list(project.settings.copies)
    linked = [lk.path for lk in project.settings.links]

    def near_link(rel: str) -> bool:
        return any(rel == p or rel.startswith(p + "/") or p.startswith(rel + "/") for p in linked)

    included = [
        rel
        for rel in envfiles.worktree_include(project.main)
        if rel not in copies and not near_link(rel)
    ]
    return copies, included


def uses_claude(project: Project) -> bool:
    """True when a window starts Claude Code (else claude-perms has nothing to do)."""
    return any(
        "claude" in programs(w.cmd) or "claude" in programs(w.resume_cmd)
        for w in project.settings.windows
    )


def step_claude(project: Project, session: Session) -> None:
    _require_worktree(session)
    if not uses_claude(project):
        output.step("claude-perms", "no window runs Claude Code, nothing to do")
        return
    s = project.settings
    config = claude.config_path(s.claude_config)
    result = claude.inherit(
        config, project.main, session.worktree, s.claude_trust, s.claude_lock_stale
    )
    outcomes = [result]
    local = claude.copy_local_settings(project.main, session.worktree)
    if local is not None:
        outcomes.append(local)
    _report("claude-perms", outcomes)


def window_runs(project: Project, session: Session, resume: bool = False) -> list[tmux.WindowRun]:
    s = project.settings
    values = session.values(project)
    activate = render(s.activate, values).strip()
    runs = []
    for i, win in enumerate(s.windows):
        folder = session.worktree / win.dir if win.dir else session.worktree
        if session.worktree.is_dir():  # a dry run's plan comes before the worktree
            folder = config.window_folder(session.worktree, i, win, project.main)
        cmd = (win.resume_cmd if resume and win.resume_cmd else win.cmd).strip()
        line = render(cmd, values)
        if activate and line:
            # `act && a || b` would run b when act fails: group what follows the activation
            grouped = f"( {line} )" if re.search(r"[;&|]", line) else line
            line = f"{activate} && {grouped}"
        runs.append(tmux.WindowRun(win.name, folder, line))
    return runs


def step_tmux(
    project: Project, session: Session, srv: tmux.TmuxServer, resume: bool = False
) -> str:
    """Start the session's tmux session, or add the windows it is missing (and those left
    working in a deleted folder, when the worktree was made again)."""
    _require_worktree(session)
    name = session.tmux_name
    ours = {w.name for w in project.settings.windows}
    panes = tmux.windows(srv, name)  # None: no such session
    in_deleted = tmux.in_deleted_folders(panes or {})
    stale = [w for w in in_deleted if w in ours]
    for other in (w for w in in_deleted if w not in ours):  # yours: an editor, say
        output.warn("tmux", f"window {other} works in a deleted folder; not ours, left alone")
    if stale:
        output.warn("tmux", f"{', '.join(stale)}: working in a deleted folder, restarting")
        tmux.kill_windows(srv, name, stale)
        if panes is not None and set(panes) <= set(stale):
            panes = None  # its last window gone, the session is too: made anew below
    if panes is not None:
        have = set(panes) - set(stale)
        # a window the session had before comes back with its resume command
        missing = [r for r in window_runs(project, session, resume=True) if r.name not in have]
        if not missing:
            output.step("tmux", f"{name} running")
            return "running"
        tmux.add_windows(srv, name, missing, session.env())
        output.step("tmux", f"{name}: restarted " + ", ".join(r.name for r in missing))
        return "mended"
    runs = window_runs(project, session, resume or bool(stale))
    warn_foreign_ports(session)
    tmux.create(srv, name, runs, session.env())
    output.step("tmux", f"{name}  ({', '.join(r.name for r in runs)})")
    return "started"


def foreign_holders(session: Session) -> dict[str, list[ports_.Holder]]:
    """Port name -> processes outside the worktree holding that port of the session."""
    held = ports_.holders(session.ports.values())
    found: dict[str, list[ports_.Holder]] = {}
    for port, number in session.ports.items():
        if number not in held:
            continue
        others = [h for h in held[number] if not works_in(session, h.cwd)]
        if others or not held[number]:
            found[port] = others
    return found


def warn_foreign_ports(session: Session) -> None:
    """Before starting windows: say which recorded ports another program holds."""
    for port, procs in foreign_holders(session).items():
        number = session.ports[port]
        who = ", ".join(h.describe() for h in procs) or "another program"
        output.warn(
            "ports",
            f"{port} port {number} is held by {who}; its window will fail to bind. "
            f"Stop it (see: {output.on_host(f'lsof -i :{number}')}) or give it new ports with: "
            + output.command("remove", session.name)
            + " and add again",
        )


def works_in(session: Session, cwd: str | None) -> bool:
    """Is a process working in `cwd` one of the session's (its folder may be deleted)?"""
    if not cwd:
        return False
    cwd = cwd.removesuffix(" (deleted)")  # how Linux shows a folder removed under it
    inside = str(session.worktree)
    return cwd == inside or cwd.startswith(inside + os.sep)


def orphans(session: Session) -> list[ports_.Holder]:
    """Processes working in the worktree that hold one of the session's ports."""
    found: dict[int, ports_.Holder] = {}
    for procs in ports_.holders(session.ports.values()).values():
        for h in procs:
            if works_in(session, h.cwd):
                found.setdefault(h.pid, h)
    return list(found.values())


def stop_orphans(session: Session) -> list[ports_.Holder]:
    """End processes left in the worktree that still hold the session's ports."""
    found = orphans(session)
    if found:
        ports_.stop(h.pid for h in found)
    return found


# What bash -i says on stderr when it has no terminal: not the hook's output.
_NO_TTY_NOISE = (
    "cannot set terminal process group",
    "no job control in this shell",
    "can't access tty",
)


def _end_group(proc: subprocess.Popen[str]) -> None:
    """SIGTERM the process group `proc` leads, SIGKILL it if it lingers."""
    for sig, wait in ((signal.SIGTERM, 3.0), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def run_hooks(project: Project, session: Session, point: str) -> None:
    """Run the hooks of `point` in the worktree, as a window runs its command: in the
    user's login shell, after the activation command, with the TALLY_* variables."""
    cmds = project.settings.hooks.get(point, ())
    if not cmds:
        return
    step = point.replace("_", "-")
    if not session.worktree.is_dir():
        # never in the main checkout instead: `rm -rf node_modules` there is shared data
        output.warn(step, f"worktree {session.worktree} is gone; hooks not run")
        return
    values = session.values(project)
    env = {**os.environ, **session.env()}
    activate = render(project.settings.activate, values).strip()
    shell = os.environ.get("SHELL") or "/bin/sh"
    if not os.access(shell, os.X_OK):  # as tmux does with a SHELL that is not there
        shell = "/bin/sh"
    for template in cmds:
        line = render(template, values)
        full = f"{activate} && ( {line} )" if activate else line
        # Its own session: an interactive shell with our terminal would take it over
        # (job control); on Ctrl-C here, its whole group is ended.
        proc = subprocess.Popen(
            [shell, "-lic", full],
            cwd=session.worktree,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            start_new_session=True,
        )
        try:
            out, err = proc.communicate()
        except BaseException:
            _end_group(proc)
            raise
        if proc.returncode != 0:
            said = (out + err).strip().splitlines()
            tail = [ln for ln in said if not any(n in ln for n in _NO_TTY_NOISE)][-5:]
            raise TallyError(
                f"hook {point} `{line}` failed with status {proc.returncode}"
                + (": " + " | ".join(tail) if tail else "")
            )
        output.step(step, line)


def _report(step: str, outcomes: list[links.Outcome]) -> None:
    if not outcomes:
        output.step(step, "nothing configured")
        return
    good = [o.detail for o in outcomes if o.ok]
    for o in outcomes:
        if not o.ok:
            output.warn(step, o.detail)
    if good:
        output.step(step, " · ".join(good))


def _short(project: Project, path: Path) -> str:
    try:
        return os.path.relpath(path, Path.cwd()) if len(str(path)) > 40 else str(path)
    except (ValueError, OSError):
        return str(path)


# --- add ----------------------------------------------------------------------------------


@dataclass
class _Undo:
    actions: list[tuple[str, Callable[[], None]]] = field(default_factory=list)

    def push(self, what: str, action: Callable[[], None]) -> None:
        self.actions.append((what, action))

    def run(self) -> list[str]:
        done = []
        for what, action in reversed(self.actions):
            try:
                action()
                done.append(what)
            except Exception as e:  # noqa: BLE001 - undo what we can, report the rest
                output.warn("undo", f"could not undo {what}: {e}")
        return done


def add(project: Project, name: str, srv: tmux.TmuxServer, force: bool = False) -> Session:
    """The whole pipeline. On failure, undoes what this run created (see README: Safety)."""
    check_name(name)
    steps = project.settings.add_steps
    for needed in ("ports", "worktree"):
        if needed not in steps:
            raise TallyError(f"tally.add_steps must include {needed!r} (it has {list(steps)})")
    entries = load(project)
    existing = entries.get(name)
    if existing is None:
        check_slug(project, entries, name)
    else:
        fresh = project.new_session(name).worktree
        check_claim(name, existing, fresh, project.main)  # again, locked, in ports
    if existing is None and tmux.exists(srv, project.tmux_name(name)):
        raise TallyError(
            f"a tmux session {project.tmux_name(name)} already runs but no session {name!r} is "
            "registered; end it with: "
            + output.on_host(f"tmux kill-session -t ={project.tmux_name(name)}")
            + ", or pick another name"
        )
    undo = _Undo()
    created_worktree = False
    session = None
    current = "ports"
    try:
        for current in steps:
            if current == "ports":
                session, created = _ports(project, name, create=True, claim=True)
                if created:
                    undo.push("registry entry", lambda: drop_entry(project, name))
            elif session is None:
                raise TallyError("tally.add_steps must start with 'ports'")
            elif current == "worktree":
                what = step_worktree(project, session)
                created_worktree = what != "exists"
                if created_worktree:
                    had_branch = not what.startswith("new branch")
                    undo.push("worktree", _undo_worktree(project, session, had_branch))
            elif current == "links":
                step_links(project, session)
            elif current == "env":
                step_env(project, session, force)
            elif current == "claude_perms":
                step_claude(project, session)
                if created_worktree:
                    undo.push(
                        "Claude Code entry", functools.partial(_forget_claude, project, session)
                    )
            elif current == "tmux":
                state = step_tmux(project, session, srv)
                if state == "started":
                    undo.push("tmux session", functools.partial(_kill, srv, session.tmux_name))
            _fault(current)
        if session is None:
            raise TallyError("tally.add_steps must start with 'ports'")
        current = "post_add"
        run_hooks(project, session, "post_add")
        with _editing(project) as entries:
            if name not in entries:  # a `remove --force` took it away meanwhile
                raise TallyError(f"session {name!r} was removed while it was being added")
            for key in ("state", "pid", "pid_start"):
                entries[name].pop(key, None)
    except BaseException as e:
        undone = undo.run()
        if isinstance(e, TallyError):
            tail = f" (undone: {', '.join(undone)})" if undone else ""
            raise TallyError(f"{current.replace('_', '-')} step failed: {e}{tail}") from None
        raise
    return session


def drop_entry(project: Project, name: str) -> None:
    with _editing(project) as entries:
        entries.pop(name, None)


def _forget_claude(project: Project, session: Session) -> None:
    s = project.settings
    claude.forget(claude.config_path(s.claude_config), [session.worktree], s.claude_lock_stale)


def _kill(srv: tmux.TmuxServer, name: str) -> None:
    tmux.kill(srv, name)


def _undo_worktree(project: Project, session: Session, had_branch: bool) -> Callable[[], None]:
    def action() -> None:
        with repo_.open_repo(project.main) as repo, locked_repo(project):
            worktree.unlink_ours(session.worktree, [lk.path for lk in project.settings.links])
            worktree.remove(repo, session.worktree)
            if not had_branch and repo_.branch_exists(repo, session.branch):
                repo_.run(repo, "branch", "-D", session.branch)

    return action


def summary(project: Project, session: Session) -> None:
    output.info()
    output.info(output.bold(f"Session {session.name} is ready"))
    output.info(f"  worktree  {session.worktree}")
    output.info(f"  branch    {session.branch}")
    remote = output.via()
    where = f"{remote[1]}'s localhost" if remote else "localhost"
    for port, number in session.ports.items():
        output.info(
            f"  {port:<9} http://localhost:{number}" + (f"  (on {where})" if remote else "")
        )
    if remote:  # run over SSH by --host: say what works from the laptop
        output.info(f"  forward   {output.command('forward', session.name)}")
        output.info(f"  attach    {output.command('attach', session.name)}")
    else:
        output.info(f"  attach    {attach_line(project, session)}")


def attach_line(project: Project, session: Session) -> str:
    sock = project.settings.tmux_socket
    prefix = f"tmux -L {sock}" if sock else "tmux"
    return f"{prefix} attach -t ={session.tmux_name}"


# --- remove ---------------------------------------------------------------------------


def _stashes(repo: Any, branch: str) -> list[str]:
    """Stashes made on `branch` (git's own "WIP on b:" / "On b:" prefix, not the message)."""
    out = repo_.run(repo, "stash", "list", "--format=%gd %gs")
    found = []
    for line in out.splitlines():
        ref, _, subject = line.partition(" ")
        # a branch name cannot contain ":", so the prefix is exact
        if subject.startswith((f"WIP on {branch}: ", f"On {branch}: ")):
            found.append(f"{ref}: {subject}")
    return found


def _unmerged(repo: Any, branch: str) -> tuple[str, list[str]]:
    """(main branch, one-line commits on `branch` not in it)."""
    main_ref = repo_.current_branch(repo) or "HEAD"
    out = repo_.run(repo, "log", "--format=%h %s", f"{main_ref}..refs/heads/{branch}")
    return main_ref, out.splitlines()


def _unpushed(repo: Any, branch: str) -> list[str]:
    if not repo_.ok(repo, "rev-parse", "--verify", "--quiet", f"{branch}@{{upstream}}"):
        return []
    out = repo_.run(repo, "log", "--format=%h %s", f"{branch}@{{upstream}}..refs/heads/{branch}")
    return out.splitlines()


def at_risk(project: Project, repo: repo_.Repo, session: Session, half: bool = False) -> list[str]:
    """What removing the session would destroy: the user's changes and the branch's stashes
    (a `half` made worktree is git's unfinished checkout: no one's changes)."""
    problems: list[str] = []
    if session.worktree.is_dir() and not half:
        # a real file where a symlink belongs is not ours (links leave it alone): the
        # user's own database, say, which git ignores
        replaced = [
            lk.path
            for lk in project.settings.links
            if lk.mode == "symlink"
            and not (session.worktree / lk.path).is_symlink()
            and (session.worktree / lk.path).exists()
            and not _tracked(session.worktree, lk.path)
        ]
        if replaced:
            problems.append(
                "your own file(s) where the tool's links belong: " + ", ".join(replaced)
            )
        changes = worktree.user_changes(session.worktree, project.own_paths())
        if changes:
            shown = ", ".join(changes[:8]) + (" …" if len(changes) > 8 else "")
            problems.append(f"{len(changes)} uncommitted or untracked change(s): {shown}")
        for sub, commits in worktree.submodule_commits(session.worktree).items():
            problems.append(
                f"submodule {sub}: {len(commits)} commit(s) on no remote ({commits[0]}), "
                "kept only in this worktree"
            )
        orphaned = worktree.detached_commits(session.worktree)
        if orphaned:
            problems.append(
                f"{len(orphaned)} commit(s) on a detached HEAD, on no branch ({orphaned[0]})"
            )
    if repo_.branch_exists(repo, session.branch):
        stashes = _stashes(repo, session.branch)
        if stashes:
            problems.append(f"stash(es) of {session.branch}: " + ", ".join(stashes[:5]))
    return problems


def _tracked(folder: Path, rel: str) -> bool:
    with repo_.open_repo(folder) as r:
        return repo_.ok(r, "ls-files", "--error-unmatch", "--", rel)


def remove_refusal(project: Project, session: Session, known: worktree.Worktree | None) -> str:
    """Why `remove` must not touch the worktree even with --force ("" when it may)."""
    wt, name = session.worktree, session.name
    others = [
        n for n, e in load(project).items() if n != name and project.session(n, e).worktree == wt
    ]
    if others:
        return (
            f"{wt} is the worktree of session {others[0]!r} too; nothing removed. Fix the entry "
            f"of {name!r} in {project.registry_path}"
        )
    if wt.is_dir() and known is None:
        return (
            f"{wt} is not a git worktree of {project.main}; it is left alone. Move it away, "
            "then run: " + output.command("remove", name)
        )
    return ""


def remove_problems(
    project: Project, repo: repo_.Repo, session: Session, known: worktree.Worktree | None
) -> list[str]:
    """What makes `remove` refuse without --force: a locked worktree, one on another
    branch, and the user's work at risk."""
    problems = []
    pid = adder(load(project).get(session.name, {}))
    if pid is not None:
        problems.append(f"an add of it is still running (pid {pid}): wait for it to finish")
    half = pid is None and worktree.half_made(repo, session.worktree)
    if known is not None and known.locked is not None and not half:
        why = f" ({known.locked})" if known.locked else ""
        unlock = output.on_host(f"git worktree unlock {shlex.quote(str(session.worktree))}")
        problems.append(f"the worktree is locked{why}: unlock it first with: {unlock}")
    if known is not None and known.branch != session.branch:
        problems.append(
            f"the worktree is on {known.branch or 'a detached HEAD'}, not {session.branch}"
        )
    return problems + at_risk(project, repo, session, half)


def branch_fate(repo: repo_.Repo, branch: str, force: bool, keep: bool) -> tuple[bool, str]:
    """(delete it?, why) for the session's branch on remove."""
    if not repo_.branch_exists(repo, branch):
        return False, ""
    if keep:
        return False, f"kept {branch} (--keep-branch)"
    main_ref, commits = _unmerged(repo, branch)
    unpushed = _unpushed(repo, branch)
    if (commits or unpushed) and not force:
        lost = commits or unpushed
        what = f"not merged into {main_ref}" if commits else "not pushed"
        more = " …" if len(lost) > 1 else ""
        return False, (
            f"kept {branch}: {len(lost)} commit(s) {what} ({lost[0]}{more}); "
            "delete it with: " + output.on_host(f"git branch -D {branch}")
        )
    return True, f"deleted {branch}"


def remove(
    project: Project,
    name: str,
    srv: tmux.TmuxServer,
    force: bool = False,
    keep_branch: bool = False,
) -> None:
    """Take the session away; never the user's work unless `force` (README: Safety)."""
    session = get(project, name)
    wt = session.worktree
    # Every `git worktree` call holds the repository lock: git reads all worktrees'
    # records, and another process's half-made one makes it fail.
    with repo_.open_repo(project.main) as repo:
        with locked_repo(project):
            known = worktree.find(repo, wt)
        refusal = remove_refusal(project, session, known)
        if refusal:
            raise TallyError(refusal)
        if not force:
            problems = remove_problems(project, repo, session, known)
            if problems:
                raise TallyError(
                    f"session {name} has work that would be lost: "
                    + "; ".join(problems)
                    + ". Commit or move what you want to keep (a stash: pop or drop it), "
                    "or run: " + output.command("remove", name, "--force")
                )
        registry.check_writable(project.registry_path)  # before anything is taken away
        try:
            run_hooks(project, session, "pre_remove")
        except TallyError as e:
            if not force:
                raise TallyError(
                    f"{e}; fix the hook, or remove anyway with: "
                    + output.command("remove", name, "--force")
                ) from None
            output.warn("pre-remove", f"{e}; removing anyway (--force)")
        # Run from one of the session's own windows, killing tmux first would hang up on
        # this very process halfway: then tmux goes last, and the hang-up is ignored.
        inside = tmux.current_session(srv) == session.tmux_name
        if inside:
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
        elif tmux.kill(srv, session.tmux_name):
            output.step("tmux", f"killed {session.tmux_name}")
        for h in stop_orphans(session):
            output.step("processes", f"stopped {h.describe()}, still holding a session port")
        with locked_repo(project):
            if wt.exists() or known is not None:
                worktree.unlink_ours(wt, [lk.path for lk in project.settings.links])
                worktree.remove(repo, wt)
                output.step("worktree", f"removed {wt}")
            _remove_branch(repo, session.branch, force, keep_branch)
    config = claude.config_path(project.settings.claude_config)
    try:
        if claude.forget(config, [wt], project.settings.claude_lock_stale) == "corrupt":
            output.warn("claude", f"{config} is not valid JSON, left untouched")
    except TallyError as e:  # the worktree is gone already: the record must go too
        output.warn("claude", f"{e}; drop the entry later with: " + output.command("claude_prune"))
    drop_entry(project, name)
    output.step("registry", f"dropped {name} (ports freed)")
    if inside:
        output.step("tmux", f"killing {session.tmux_name}, this window with it")
        tmux.kill(srv, session.tmux_name)


def _remove_branch(repo: repo_.Repo, branch: str, force: bool, keep: bool) -> None:
    delete, why = branch_fate(repo, branch, force, keep)
    if delete:
        for w in worktree.listing(repo):
            if w.branch == branch:
                output.warn("branch", f"kept {branch}: checked out at {w.path}")
                return
        repo_.run(repo, "branch", "-D", branch)
        output.step("branch", why)
    elif why.startswith(f"kept {branch}:"):
        output.warn("branch", why)
    elif why:
        output.step("branch", why)


# --- resume and list ---------------------------------------------------------------------


def resume(project: Project, srv: tmux.TmuxServer, name: str | None = None) -> list[str]:
    """Recreate the tmux session of every registered session (or one); returns those started.

    All sessions start in one tmux call (the bare script's twenty `tmux` runs cost more
    than our whole start-up).
    """
    entries = load(project)
    if name:
        get(project, name)
        entries = {name: entries[name]}
    if not entries:
        output.info("no sessions to resume")
        return []
    live = tmux.running(srv)
    todo: list[Session] = []
    for n, entry in entries.items():
        session = project.session(n, entry)
        if session.tmux_name in live:
            output.step("resume", f"{n}: already running")
        elif not session.worktree.is_dir():
            output.warn(
                "resume",
                f"{n}: worktree {session.worktree} is gone; drop it with: "
                + output.command("remove", n),
            )
        else:
            todo.append(session)
    busy = ports_.listening(p for s in todo for p in s.ports.values())
    for session in todo:
        if busy.intersection(session.ports.values()):
            warn_foreign_ports(session)
    failed = set(
        tmux.create_many(
            srv,
            [(s.tmux_name, window_runs(project, s, resume=True), s.env()) for s in todo],
        )
    )
    started = []
    hooks_failed = []
    for session in todo:
        if session.tmux_name in failed:
            output.warn("resume", f"{session.name}: tmux could not start {session.tmux_name}")
            continue
        output.step("resume", f"{session.name}: started {session.tmux_name}")
        started.append(session.name)
        try:
            run_hooks(project, session, "post_resume")
        except TallyError as e:  # one session's hook does not stop the others'
            output.warn("post-resume", f"{session.name}: {e}")
            hooks_failed.append(session.name)
    if failed:
        raise TallyError(f"{len(failed)} session(s) did not start: " + ", ".join(sorted(failed)))
    if hooks_failed:
        raise TallyError(
            "post_resume hooks failed for " + ", ".join(hooks_failed) + " (their sessions run)"
        )
    return started
