"""Merged, really: is a branch's content already in the main branch, and how do we know.

A branch merged on a forge with "Squash and merge" or "Rebase and merge" never looks
merged to git (its commits are not ancestors of main). Three ways to know:

- ``merged``: ordinary ancestry (its tip is in main's history);
- ``rebased``: patch identity (``git cherry``: every commit has an equal one in main);
- ``squashed``: its combined change is in main: merging it into main would change nothing
  (``git merge-tree``), or, when main changed those lines since (the merge conflicts),
  main has one commit with the patch of the branch's combined diff from its merge base (a
  ``git commit-tree`` of the branch's tree on the merge base, ``git cherry`` against it).

One ``git merge-tree`` answers whether anything of the branch is missing from main: a
branch not merged costs that one call per target; one merged, a ``git cherry`` more to
say how.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import repo as repo_


@dataclass
class Landed:
    """How a branch's content is in another branch."""

    how: str  # merged | rebased | squashed
    into: str  # the branch it is in: main, or main's upstream (origin/main)

    def __str__(self) -> str:
        verb = {"merged": "merged", "rebased": "rebase-merged", "squashed": "squash-merged"}
        return f"{verb[self.how]} into {self.into}"


@dataclass
class Target:
    """A branch a session's branch may be merged into."""

    name: str  # main, origin/main
    tree: str  # its tree's id, compared with what a merge into it gives
    commit: str = ""  # its commit, when known already


def targets(repo: repo_.Repo, main_ref: str, refs: repo_.Refs | None = None) -> list[Target]:
    """Where a branch counts as merged: `main_ref`, and its upstream when that has commits
    `main_ref` lacks (merged on the forge, fetched, not pulled yet). `refs`, when given,
    answers for a local branch without an upstream."""
    known, tracks = refs.branches.get(main_ref, ("", "")) if refs else ("", "")
    if known and not tracks:
        return [Target(main_ref, known, refs.commits.get(main_ref, "") if refs else "")]
    up = f"{main_ref}@{{upstream}}"
    # rev-parse reads its arguments in order: --abbrev-ref applies to the last one only
    proc = repo_.git(
        repo, "rev-parse", f"{main_ref}^{{tree}}", f"{up}^{{tree}}", "--abbrev-ref", up
    )
    lines = proc.stdout.split()
    if proc.returncode != 0 or len(lines) != 3:  # no upstream (or it is gone)
        tree = repo_.git(repo, "rev-parse", "--verify", "--quiet", f"{main_ref}^{{tree}}")
        return [Target(main_ref, tree.stdout.strip())] if tree.returncode == 0 else []
    main_tree, up_tree, upstream = lines
    found = [Target(main_ref, main_tree)]
    if up_tree != main_tree and not repo_.ok(repo, "merge-base", "--is-ancestor", up, main_ref):
        found.append(Target(upstream, up_tree))
    return found


def landed(repo: repo_.Repo, branch: str, into: list[Target], tip: str = "") -> Landed | None:
    """How `branch`'s content is in one of `into` (the first that has it), or None.
    `tip`: the branch's commit, when known already (one a target is at is merged there:
    no git call)."""
    for target in into:
        if tip and tip == target.commit:
            return Landed("merged", target.name)
        how = _how(repo, f"refs/heads/{branch}", target)
        if how:
            return Landed(how, target.name)
    return None


def _how(repo: repo_.Repo, ref: str, target: Target) -> str | None:
    merge = repo_.git(repo, "merge-tree", "--write-tree", "--no-messages", target.name, ref)
    if merge.returncode == 0 and merge.stdout.split()[:1] != [target.tree]:
        return None  # merging it would change main: there is something of its own
    # merging changes nothing (or main changed those lines since, or git is older than
    # 2.38): name how, by patch identity
    cherry = repo_.git(repo, "cherry", target.name, ref)
    if cherry.returncode != 0:
        return None
    marks = [line[:1] for line in cherry.stdout.splitlines()]
    if not marks:
        return "merged"
    if all(m == "-" for m in marks):
        return "rebased"
    if merge.returncode == 0:
        return "squashed"
    return "squashed" if _squash_in(repo, ref, target.name) else None


def _squash_in(repo: repo_.Repo, ref: str, target: str) -> bool:
    """Has `target` one commit whose patch is `ref`'s combined diff from the merge base?"""
    base = repo_.git(repo, "merge-base", target, ref).stdout.strip()
    if not base:
        return False
    squash = repo_.git(
        repo, "commit-tree", f"{ref}^{{tree}}", "-p", base, "-m", "squash"
    ).stdout.strip()
    if not squash:
        return False
    return repo_.git(repo, "cherry", target, squash).stdout.startswith("-")


def untouched(common_dir: Path, branch: str) -> bool:
    """Has `branch` never moved since it was created from HEAD (a session with no commit
    yet)? Its reflog says so; without one, say no."""
    log = common_dir / "logs" / "refs" / "heads" / branch
    try:
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return False
    return len(lines) == 1 and lines[0].partition("\t")[2].startswith("branch: Created from HEAD")
