"""The `env` step: private copies of `copies` (`.env`) and of what `.worktreeinclude`
names, made when missing (`--force`: `copies` over existing ones)."""

from __future__ import annotations

from .. import envfiles
from ..session import Project, Session
from .base import (
    Checked,
    Context,
    Made,
    Report,
    nothing_to_hold,
    nothing_to_undo,
    require_worktree,
    show,
)

name = "env"
required = False
opens = False


def apply(project: Project, session: Session, force: bool = False) -> None:
    """Copy `copies` (`force`: over existing copies) and what `.worktreeinclude` names
    (never over anything, never in, at or around a linked path)."""
    require_worktree(session)
    copies, included = paths(project)
    outcomes = envfiles.apply(project.main, session.worktree, copies, force)
    outcomes += envfiles.apply(project.main, session.worktree, included, force=False)
    show("env", outcomes)


def paths(project: Project) -> tuple[list[str], list[str]]:
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


def run(ctx: Context) -> Made | None:
    apply(ctx.project, ctx.session, ctx.force)
    return None  # they go with the worktree


hold = nothing_to_hold
undo = nothing_to_undo


def plan(ctx: Context) -> list[str]:
    """`apply`'s choice, file by file (never over an existing file but with --force)."""
    project, session = ctx.project, ctx.session
    copies, included = paths(project)
    planned = [(rel, ctx.force, "") for rel in copies]
    planned += [(rel, False, ", from .worktreeinclude") for rel in included]
    lines = []
    for rel, over, source in planned:
        if not (project.main / rel).exists():
            state = "missing in main, would skip"
        elif (session.worktree / rel).exists() and not over:
            state = "exists, would keep"
        else:
            state = "copy"
        lines.append(f"{rel}  ({state}{source})")
    return lines


def check(ctx: Context, report: Report) -> Checked:
    """Each copy present; one that differs from main's is noted, never changed."""
    project, session = ctx.project, ctx.session
    missing = []
    for rel in project.settings.copies:
        src, dest = project.main / rel, session.worktree / rel
        if not src.exists():
            continue
        if not dest.exists():
            report.bad(session.name, f"copy {rel} is missing")
            missing.append(rel)
        elif src.is_file() and dest.is_file() and src.read_bytes() != dest.read_bytes():
            report.note(session.name, f"{rel} differs from main's (noted, not changed)")
    return Checked(mend=tuple(missing))


def fix(ctx: Context, report: Report, mend: tuple[str, ...]) -> None:
    apply(ctx.project, ctx.session)
    report.mended(ctx.session.name, "copied " + ", ".join(mend))
