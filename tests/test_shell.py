"""The user's shell: lines written for bash, zsh and fish, run by the real shells."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tally_tasks import shell
from tally_tasks.errors import TallyError

SHELLS = ["bash", "zsh", "fish"]


def path_of(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed (CI installs it: .ci/run)")
    return found


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/bin/bash", shell.POSIX),
        ("/usr/bin/zsh", shell.POSIX),
        ("/bin/sh", shell.POSIX),
        ("/bin/dash", shell.POSIX),
        ("/bin/ksh93", shell.POSIX),
        ("-bash", shell.POSIX),
        ("/usr/local/bin/fish", shell.FISH),
    ],
    ids=["bash", "zsh", "sh", "dash", "ksh93", "login-argv0", "fish"],
)
def test_kind_of_a_shell_we_write_lines_for(path: str, kind: str) -> None:
    assert shell.kind(path) == kind


@pytest.mark.parametrize("path", ["/bin/tcsh", "/bin/csh", "/usr/bin/nu", "/usr/bin/xonsh"])
def test_any_other_shell_is_one_line_naming_it_and_the_way_out(path: str) -> None:
    with pytest.raises(TallyError) as e:
        shell.kind(path, "tmux's default-shell")
    message = str(e.value)
    assert "\n" not in message
    assert f"tmux's default-shell is {path}" in message and "SHELL=/bin/bash" in message


def test_login_shell_is_shell_when_it_runs_else_sh(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHELL", "/bin/bash")
    assert shell.login_shell() == "/bin/bash"
    for missing in (str(tmp_path / "nope"), "bash", ""):
        monkeypatch.setenv("SHELL", missing)
        assert shell.login_shell() == "/bin/sh"


AWKWARD = [
    ("plain", "tally-x"),
    ("space", "a b"),
    ("single-quote", "it's"),
    ("backslash-quote", "a\\'b"),
    ("two-backslashes", "a\\\\b"),
    ("trailing-backslash", "a\\"),
    ("dollar", "$HOME"),
    ("parens", "(x)"),
    ("glob", "*"),
    ("newline", "a\nb"),
    ("empty", ""),
]


@pytest.mark.parametrize("value", [v for _, v in AWKWARD], ids=[i for i, _ in AWKWARD])
def test_fish_quote_is_one_word_fish_reads_back_as_given(value: str) -> None:
    fish = path_of("fish")
    out = subprocess.run(
        [fish, "--no-config", "-c", f"printf '%s|' {shell.fish_quote(value)}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out == value + "|"


ACTIVATE_OK = {shell.POSIX: "export ACT=yes", shell.FISH: "set -gx ACT yes"}

# (id, activation: "ok" / a literal line, the POSIX line, status, what it prints)
LINES = [
    ("activated", "ok", 'echo "act=$ACT"', 0, "act=yes"),
    ("or-after-activation", "ok", "(exit 3) || echo fallback", 0, "fallback"),
    ("group-and-subshell", "ok", "( cd / && pwd ) && echo done", 0, "/\ndone"),
    ("posix-words", "ok", 'V=1 sh -c \'echo "$V"\'; echo "$(echo sub)"', 0, "1\nsub"),
    ("line-fails", "ok", "exit 7", 7, ""),
    ("activation-fails", "false", "echo ran", 1, ""),
    ("activation-unparsable", "echo (", "echo ran", None, ""),
    ("no-activation", "", "echo bare", 0, "bare"),
]


@pytest.mark.parametrize("name", SHELLS)
@pytest.mark.parametrize(
    ("activate", "line", "status", "says"), [c[1:] for c in LINES], ids=[c[0] for c in LINES]
)
def test_a_hook_line_runs_after_the_activation_and_exits_with_its_status(
    name: str, activate: str, line: str, status: int | None, says: str
) -> None:
    path = path_of(name)
    kind = shell.kind(path)
    act = ACTIVATE_OK[kind] if activate == "ok" else activate
    proc = subprocess.run(
        shell.command(path, kind, shell.joined(kind, act, line)),
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        timeout=30,
    )
    if status is None:  # a parse error: any failure, never 0 (`fish -c` says 0 for one)
        assert proc.returncode != 0, proc.stderr
    else:
        assert proc.returncode == status, proc.stderr
    assert proc.stdout.strip() == says, proc.stderr


@pytest.mark.parametrize("kind", [shell.POSIX, shell.FISH])
def test_joined_types_nothing_for_an_idle_window(kind: str) -> None:
    assert shell.joined(kind, "workon x", "") == ""


def test_joined_lines_as_typed() -> None:
    assert shell.joined(shell.POSIX, "workon x", "python m.py") == "workon x && python m.py"
    assert shell.joined(shell.POSIX, "workon x", "a || b") == "workon x && ( a || b )"
    assert shell.joined(shell.FISH, "workon x", "a || b") == "workon x; and sh -c 'a || b'"
    assert shell.joined(shell.FISH, "", "python m.py") == "sh -c 'python m.py'"
