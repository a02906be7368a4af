"""The `links` step: the paths shared with the main checkout (symlinks, or hard-linked,
reflinked or copied trees), made when missing or wrong."""

from __future__ import annotations

import os

from .. import links, output, sessions
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

name = "links"
required = False
opens = False


def apply(project: Project, session: Session, refresh: bool = False, force: bool = False) -> None:
    """`refresh`: build again the trees that lack what main gained (`force`: also one the
    session changed since it was built)."""
    require_worktree(session)
    outcomes = links.apply(
        project.main,
        session.worktree,
        project.settings.links,
        refresh,
        refresh_hint=output.command("links", session.name, "--refresh"),
        force=force,
        force_hint=output.command("links", session.name, "--refresh", "--force"),
    )
    excluded = sessions.exclude_own(project)
    show("links", outcomes + ([excluded] if excluded else []))


def run(ctx: Context) -> Made | None:
    apply(ctx.project, ctx.session, ctx.refresh, ctx.force)
    return None  # they go with the worktree (unlinked first)


hold = nothing_to_hold
undo = nothing_to_undo


def plan(ctx: Context) -> list[str]:
    if ctx.refresh and ctx.session.worktree.is_dir():  # links --refresh --dry-run
        found = links.refresh_plan(
            ctx.project.main, ctx.session.worktree, ctx.project.settings.links, ctx.force
        )
        return [o.detail for o in found] or ["no hard-linked, reflinked or copied trees"]
    lines = []
    for link in ctx.project.settings.links:
        src = ctx.project.main / link.path
        state = f"{link.mode} of main" if src.exists() else "missing in main, would skip"
        lines.append(f"{link.path}  ({state})")
    return lines


def check(ctx: Context, report: Report) -> Checked:
    """Each link present and pointing at main's copy; a rebuilt tree main has outgrown is
    noted (a rebuild is asked for, never done by --fix)."""
    project, session = ctx.project, ctx.session
    broken = []
    for rel in links.tracked(session.worktree, [lk.path for lk in project.settings.links]):
        report.bad(
            session.name,
            f"git tracks {rel} (a link committed on this branch?): untrack it with "
            f"`git rm -r --cached {rel}` in the worktree, then commit",
        )
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
        elif missing := links.behind(src, dest):
            report.note(
                session.name,
                f"{link.path} ({link.mode}) lacks {', '.join(missing[:3])} that main has now; "
                "build it again with: " + output.command("links", session.name, "--refresh"),
            )
    return Checked(mend=tuple(broken))


def fix(ctx: Context, report: Report, mend: tuple[str, ...]) -> None:
    apply(ctx.project, ctx.session)
    report.mended(ctx.session.name, "relinked " + ", ".join(mend))
