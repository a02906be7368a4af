"""A stand-in ``claude`` that behaves as Claude Code does towards hooks.

Installed by the tests as ``bin/claude`` (a script whose first line is this Python, so its
process is named ``claude`` as the real one is). At start it reads the hooks from
``.claude/settings.json`` and ``.claude/settings.local.json`` in its folder, fires
``SessionStart`` and then reads commands from its terminal, one a line, firing the
events Claude Code fires for each, with the JSON payloads it documents (``session_id``,
``transcript_path``, ``cwd``, ``hook_event_name``, ...), every hook through ``/bin/sh -c``
with the payload on stdin, in its folder, with ``CLAUDE_PROJECT_DIR`` set:

    prompt           UserPromptSubmit, then PreToolUse and PostToolUse of a Bash call
    ask permission   PreToolUse, PermissionRequest, Notification (permission_prompt)
    question         PreToolUse of AskUserQuestion
    finish           Stop
    idle             Notification (idle_prompt), as Claude Code says after 60 s
    exit             SessionEnd (prompt_input_exit), and the program ends
    nested           runs another stand-in through a shell, as the Bash tool would

After each command it prints ``done <command>``. Like Claude Code: ``--continue`` with no
conversation in the folder says so and exits 1; ``--resume ID`` of an unknown ID exits 1;
the conversations are remembered per folder under ``$HOME/.claude-standin``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

HOME = Path(os.environ.get("HOME", "/tmp"))


def _hooks(folder: Path) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for name in ("settings.json", "settings.local.json"):
        try:
            data = json.loads((folder / ".claude" / name).read_text())
        except (OSError, ValueError):
            continue
        for event, groups in (data.get("hooks") or {}).items():
            found.setdefault(event, []).extend(groups)
    return found


def _matches(matcher: str | None, value: str) -> bool:
    if not matcher or matcher == "*":
        return True
    return re.fullmatch(matcher, value) is not None


class Claude:
    def __init__(self, folder: Path, session_id: str) -> None:
        self.folder = folder
        self.session_id = session_id
        self.hooks = _hooks(folder)
        munged = re.sub(r"[^A-Za-z0-9]", "-", str(folder))
        self.transcript = HOME / ".claude-standin" / munged / f"{session_id}.jsonl"

    def fire(self, event: str, match: str = "", **fields: Any) -> None:
        payload = {
            "session_id": self.session_id,
            "transcript_path": str(self.transcript),
            "cwd": str(self.folder),
            "permission_mode": "default",
            "hook_event_name": event,
            **fields,
        }
        env = {**os.environ, "CLAUDE_PROJECT_DIR": str(self.folder), "CLAUDECODE": "1"}
        for group in self.hooks.get(event, []):
            if not _matches(group.get("matcher"), match):
                continue
            for handler in group.get("hooks", []):
                if handler.get("type") != "command":
                    continue
                try:
                    subprocess.run(
                        ["/bin/sh", "-c", handler["command"]],
                        input=json.dumps(payload),
                        text=True,
                        cwd=self.folder,
                        env=env,
                        timeout=float(handler.get("timeout", 60)),
                        capture_output=True,
                    )
                except subprocess.TimeoutExpired:
                    pass

    def tool(self, name: str, tool_input: dict[str, Any], permission: bool = False) -> None:
        use = {
            "tool_name": name,
            "tool_input": tool_input,
            "tool_use_id": f"toolu_{uuid.uuid4().hex}",
        }
        self.fire("PreToolUse", name, **use)
        if permission:
            self.fire("PermissionRequest", name, **use)
            self.fire(
                "Notification",
                "permission_prompt",
                message=f"Claude needs your permission to use {name}",
                notification_type="permission_prompt",
            )
            return
        if name != "AskUserQuestion":
            self.fire("PostToolUse", name, **use, tool_response={"stdout": "", "stderr": ""})

    def command(self, line: str) -> bool:
        """Fire what `line` stands for; False when the program is to end."""
        if line == "prompt":
            self.fire("UserPromptSubmit", prompt="list the files")
            self.tool("Bash", {"command": "ls"})
        elif line == "ask permission":
            self.tool("Bash", {"command": "rm -rf build"}, permission=True)
        elif line == "question":
            self.tool("AskUserQuestion", {"questions": [{"question": "Which one?"}]})
        elif line == "finish":
            self.fire("Stop", stop_hook_active=False)
        elif line == "idle":
            self.fire(
                "Notification",
                "idle_prompt",
                message="Claude is waiting for your input",
                notification_type="idle_prompt",
            )
        elif line == "nested":
            # the agent's Bash tool running another Claude, in a shell of its own
            subprocess.run(["/bin/sh", "-c", f"{sys.argv[0]} -p hello"], cwd=self.folder)
        elif line == "exit":
            self.fire("SessionEnd", reason="prompt_input_exit")
            return False
        return True


def _last(folder_transcripts: Path) -> str | None:
    files = sorted(folder_transcripts.glob("*.jsonl"), key=lambda p: p.stat().st_mtime)
    return files[-1].stem if files else None


def main(argv: list[str]) -> int:
    folder = Path.cwd()
    munged = re.sub(r"[^A-Za-z0-9]", "-", str(folder))
    store = HOME / ".claude-standin" / munged
    session_id, source = str(uuid.uuid4()), "startup"
    if "--continue" in argv or "-c" in argv:
        last = _last(store) if store.is_dir() else None
        if last is None:
            print("No conversation found to continue", file=sys.stderr)
            return 1
        session_id, source = last, "resume"
    if "--resume" in argv or "-r" in argv:
        flag = "--resume" if "--resume" in argv else "-r"
        at = argv.index(flag)
        wanted = argv[at + 1] if at + 1 < len(argv) else ""
        if not (store / f"{wanted}.jsonl").exists():
            print(f"No conversation found with session ID: {wanted}", file=sys.stderr)
            return 1
        session_id, source = wanted, "resume"
    claude = Claude(folder, session_id)
    store.mkdir(parents=True, exist_ok=True)
    with open(claude.transcript, "a") as f:
        f.write(json.dumps({"argv": argv}) + "\n")
    claude.fire("SessionStart", source, source=source)
    if "-p" in argv:  # print mode: one turn, then gone
        claude.command("prompt")
        claude.command("finish")
        claude.fire("SessionEnd", reason="other")
        return 0
    print(f"standin claude {session_id} ready", flush=True)
    for raw in sys.stdin:
        line = raw.strip()
        if not line:
            continue
        going = claude.command(line)
        print(f"done {line}", flush=True)
        if not going:
            break
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
