"""An agent's live state: what its Claude Code hooks record, and how it is read back.

Claude Code runs the hook command on every tool use, so this module is the hook itself:
imported on its own from its folder (``python -I -S -c "...import agent"``: its compiled
copy, not the package), it imports only the standard library (no invoke, no task
collection, no site-packages, not even ``json``), reads the event's
JSON on stdin, and changes one small state file under the repository's git dir. It never
prints on stdout and always exits 0: a broken hook must never fail Claude's tool call.

States: ``idle`` (started, nothing asked of it yet), ``working`` (a prompt or a tool is
being handled), ``waiting`` (the user is needed: its turn is done or failed, a permission
prompt, a question), ``exited`` (the session ended). The state is keyed by the tally session
(its name is in the hook command), never by ``TMUX_PANE``.

Events from a Claude that is not the session's agent are ignored: one working outside
the worktree (``cwd`` in the payload), one run by the agent itself through its Bash tool
(``claude -p`` from inside the session: on Linux its process has another process of the
same name above it, a shell between them), and a sub-agent's end (it only ever says
``working``).
"""

from __future__ import annotations

import os
import sys
import time

TYPE_CHECKING = False  # typing costs the hook milliseconds; mypy reads this as True
if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path
    from typing import Any

STATES = ("working", "waiting", "idle", "exited")
# the events the hooks are installed for, in the order Claude Code fires them
EVENTS = (
    "SessionStart",
    "UserPromptSubmit",
    "PreToolUse",
    "PermissionRequest",
    "PostToolUse",
    "Notification",
    "Stop",
    "StopFailure",
    "SessionEnd",
)
HOOK_FLAG = "--tally-hook"  # marks our entries in .claude/settings.local.json
SHELLS = {"sh", "bash", "dash", "zsh", "fish", "ksh", "mksh", "busybox"}

State = dict  # one flat JSON object: str, float, int, bool and None values


# --- JSON without the json package (it imports re: most of the hook's time) ----------------


class _Context:
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = float
    memo: dict[str, str] = {}


def loads(text: str) -> Any:
    """``json.loads`` through the C scanner ``json`` itself uses, without importing json."""
    try:
        import _json

        scan = _json.make_scanner(_Context())  # type: ignore[arg-type]
    except (ImportError, AttributeError):  # not CPython
        import json

        return json.loads(text)
    start = len(text) - len(text.lstrip())
    try:
        value, end = scan(text, start)
    except StopIteration:
        raise ValueError("not JSON") from None
    if text[end:].strip():
        raise ValueError("extra data after the JSON value")
    return value


def dumps(state: Mapping[str, Any]) -> str:
    """A flat JSON object (the state file's shape)."""
    try:
        from _json import encode_basestring_ascii as quote
    except ImportError:
        import json

        return json.dumps(dict(state))
    parts = []
    for key, value in state.items():
        if value is None or isinstance(value, bool):
            text = {None: "null", True: "true", False: "false"}[value]
        elif isinstance(value, (int, float)):
            text = repr(value) if value == value and abs(value) != float("inf") else "null"
        else:
            text = quote(str(value))
        parts.append(f"{quote(str(key))}: {text}")
    return "{" + ", ".join(parts) + "}"


def state_dir(common_dir: Path) -> Path:
    return common_dir / "tally-agents"


def state_path(common_dir: Path, slug: str) -> Path:
    return state_dir(common_dir) / f"{slug}.json"


def read(path: str | Path) -> State | None:
    """The recorded state, or None (no file, or not one of ours)."""
    try:
        data = loads(slurp(path).decode())
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict) or data.get("state") not in STATES:
        return None
    return data


def _notification(payload: Mapping[str, Any]) -> tuple[str, str] | None:
    kind = str(payload.get("notification_type") or "")
    message = str(payload.get("message") or "")
    if not kind:  # before notification_type existed: Claude Code's own words
        lowered = message.lower()
        if "permission" in lowered:
            kind = "permission_prompt"
        elif "waiting for your input" in lowered:
            kind = "idle_prompt"
    if kind == "permission_prompt":
        return "waiting", "permission"
    if kind == "idle_prompt":
        return "waiting", "input"
    if kind == "elicitation_dialog":
        return "waiting", "question"
    return None  # auth_success and whatever comes next: no change of state


def decide(payload: Mapping[str, Any]) -> tuple[str, str] | None:
    """(state, reason) an event puts the agent in; None when it says nothing about it."""
    event = payload.get("hook_event_name")
    tool = payload.get("tool_name")
    if payload.get("agent_id"):  # a sub-agent at work: its parent is working, no more
        return ("working", "") if event in ("PreToolUse", "PostToolUse") else None
    if event == "SessionStart":
        return "idle", str(payload.get("source") or "startup")
    if event == "UserPromptSubmit":
        return "working", ""
    if event in ("PreToolUse", "PermissionRequest") and tool == "AskUserQuestion":
        return "waiting", "question"
    if event == "PreToolUse" or event == "PostToolUse":
        return "working", ""
    if event == "PermissionRequest":
        return "waiting", "permission"
    if event == "Notification":
        return _notification(payload)
    if event == "Stop":  # the turn is done: the user has its answer to read
        return "waiting", "done"
    if event == "StopFailure":  # the turn failed (an API error, not logged in)
        return "waiting", "error"
    if event == "SessionEnd":
        return "exited", str(payload.get("reason") or "")
    return None


def advance(old: State | None, payload: Mapping[str, Any], now: float) -> State | None:
    """The new state after `payload` (None: nothing to write). `since` stays while the
    state holds; `notified` is True on the first record of a new `waiting` only."""
    decided = decide(payload)
    if decided is None:
        return None
    state, reason = decided
    sid = str(payload.get("session_id") or "")
    ended = old is not None and old.get("state") == "exited" and sid == old.get("session_id")
    if ended and payload.get("hook_event_name") != "SessionStart":
        return None  # late events of a session that already ended
    same = old is not None and old.get("state") == state
    if same and old is not None and state == "waiting" and reason == "input":
        reason = str(old.get("reason") or reason)  # the idle prompt after a done turn
    new: State = {
        "state": state,
        "reason": reason,
        "since": old["since"] if old is not None and same else now,
        "at": now,
        "session_id": sid or (old or {}).get("session_id", ""),
        "event": payload.get("hook_event_name"),
    }
    if payload.get("transcript_path"):
        new["transcript"] = str(payload["transcript_path"])
    if state == "waiting" and payload.get("message"):
        new["message"] = str(payload["message"])[:200]
    new["notify"] = state == "waiting" and not (old and old.get("state") == "waiting")
    return new


# --- processes (Linux /proc; elsewhere these checks are skipped) ----------------------------


def slurp(path: str | Path) -> bytes:
    """The whole file, read without Python's file objects: `list` reads a few hundred small
    files (/proc stats, agents' states), and a file object is most of each read's cost."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def proc_stat(pid: int) -> tuple[str, list[str]] | None:
    """(command name, the fields after it) of /proc/<pid>/stat; None where there is none."""
    try:
        raw = slurp(f"/proc/{pid}/stat").decode(errors="replace")
    except OSError:
        return None
    head, _, rest = raw.rpartition(")")
    return head.partition("(")[2], rest.split()


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(command name, parent pid, start tick) of `pid`."""
    found = proc_stat(pid)
    try:
        return (found[0], int(found[1][1]), int(found[1][19])) if found else None
    except (IndexError, ValueError):
        return None


def agent_process(start: int) -> tuple[int, int | None, bool]:
    """(pid, start tick, nested) of the program that ran this hook: the first ancestor of
    `start` that is not a shell. `nested`: a process of the same name is above it with a
    shell between (an agent's Bash tool running ``claude -p``), so it is not the window's
    agent."""
    pid, seen = start, 0
    info = _stat(pid)
    while info and info[0] in SHELLS and info[1] > 1 and seen < 8:
        pid, seen = info[1], seen + 1
        info = _stat(pid)
    if info is None:
        return start, None, False
    name, parent, started = info
    shell_between = False
    for _ in range(40):
        above = _stat(parent)
        if above is None or parent <= 1:
            break
        if above[0] in SHELLS:
            shell_between = True
        elif above[0] == name and shell_between:
            return pid, started, True
        elif above[0].startswith("tmux"):
            break
        parent = above[1]
    return pid, started, False


def alive(pid: int, started: int | None) -> bool:
    """Is process `pid` (started at tick `started`, when known) still running?"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    if started is None:
        return True
    info = _stat(pid)
    return info is None or info[2] == started


# --- the state file ----------------------------------------------------------------------


def _write(path: str, state: State) -> None:
    # atomic: a temp file beside it, then os.replace (readers never see half a file)
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(dumps(state) + "\n")
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def inside(folder: str, path: str) -> bool:
    """Is `path` `folder` or in it (both as the real paths they are)?"""
    root, real = os.path.realpath(folder), os.path.realpath(path)
    return real == root or real.startswith(root.rstrip(os.sep) + os.sep)


def record(path: str, payload: Mapping[str, Any], worktree: str, now: float) -> State | None:
    """Apply one hook event to the state file; returns the new state (None: ignored)."""
    cwd = str(payload.get("cwd") or "")
    if worktree and cwd and not inside(worktree, cwd):
        return None  # a Claude working elsewhere, run from inside the session
    pid, started, nested = agent_process(os.getppid())
    if nested:
        return None
    import fcntl

    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # two hooks of one event run at once
        new = advance(read(path), payload, now)
        if new is None:
            return None
        new["pid"], new["pid_start"] = pid, started
        _write(path, new)
    finally:
        os.close(fd)
    return new


def _notify(argv: list[str], cwd: str) -> None:
    """Start the attention command (on_waiting, tmux message, bell) detached: Claude
    does not wait for it."""
    import subprocess

    try:
        subprocess.Popen(
            argv,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    except OSError:
        pass


def _args(argv: list[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    it = iter(argv)
    for word in it:
        if word.startswith("--") and word != HOOK_FLAG:
            found[word[2:]] = next(it, "")
    return found


def hook(argv: list[str], stdin: Any) -> None:
    """``agent.py --tally-hook --state FILE --worktree DIR [--main DIR --session NAME]``"""
    args = _args(argv)
    if not args.get("state"):
        return
    try:
        payload = loads(stdin.read() or "{}")
    except ValueError:
        return
    if not isinstance(payload, dict):
        return
    new = record(args["state"], payload, args.get("worktree", ""), time.time())
    if new and new.get("notify") and args.get("main") and args.get("session"):
        python = sys.executable or "python3"
        _notify(
            [python, "-m", "tally_tasks.attention", "--session", args["session"]],
            args["main"],
        )


def resume_args(state: State | None) -> str:
    """What `{claude_resume}` stands for: ``--resume <id>`` of the recorded conversation,
    else ``--continue`` (which, with no conversation in the folder, exits 1 at once, so
    the fallback after ``||`` runs; ``--resume NAME`` with no match would stop at Claude
    Code's session picker instead)."""
    sid = str((state or {}).get("session_id") or "")
    ok = sid and len(sid) <= 100 and all(c.isalnum() or c in "-_" for c in sid)
    return f"--resume {sid}" if ok else "--continue"


def hook_command(state: Path, worktree: Path, main: Path, session: str) -> str:
    """The shell line Claude Code runs for every event: this file's compiled copy imported
    by the interpreter running now, without site-packages or PYTHON* variables (-I -S: the
    least Python can start with), whatever it says ending in status 0."""
    import shlex

    here = os.path.dirname(os.path.abspath(__file__))
    code = f"import sys; sys.path.insert(0, {here!r}); import agent; agent.main()"
    argv = [sys.executable, "-I", "-S", "-c", code, HOOK_FLAG, "--state", str(state)]
    argv += ["--worktree", str(worktree), "--main", str(main), "--session", session]
    return " ".join(shlex.quote(a) for a in argv) + " || true"


def main() -> int:
    # imported from this folder: its modules must not shadow the stdlib's from here on
    here = os.path.dirname(os.path.abspath(__file__))
    if sys.path and sys.path[0] == here:
        del sys.path[0]
    try:
        hook(sys.argv[1:], sys.stdin)
    except Exception:  # noqa: BLE001 - the hook never fails Claude's tool call
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
