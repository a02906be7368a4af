"""JSON written back as Node's JSON.stringify(value, null, 2) writes it, checked against
the real Node where it is installed (Claude Code's files are written by Node)."""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tally_tasks.nodejson import number, stringify

NODE = shutil.which("node")
needs_node = pytest.mark.skipif(NODE is None, reason="node is not installed")


def node_stringify(values: list[Any]) -> list[str]:
    """What Node writes for each value (given as JSON Python wrote, surrogates escaped)."""
    script = (
        "let s='';process.stdin.on('data',d=>s+=d).on('end',()=>{"
        "process.stdout.write(JSON.stringify(JSON.parse(s).map(v=>JSON.stringify(v,null,2))))})"
    )
    proc = subprocess.run(
        [str(NODE), "-e", script], input=json.dumps(values), capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    said: list[str] = json.loads(proc.stdout)
    return said


CASES = [
    ("lone-high-surrogate", {"display": "cut \ud83d"}),
    ("lone-low-surrogate", ["\udc00 alone"]),
    ("escaped-pair", "\ud83d\ude00"),
    ("emoji-and-accents", {"é": "😀 ü"}),
    ("control-characters", "\x00\x01\b\f\n\r\t\x1f\x7f"),
    ("line-separators", "a\u2028b\u2029c"),
    ("quotes-and-backslashes", 'say "hi" \\ / '),
    ("empty-containers", {"a": {}, "b": [], "c": [{}, []]}),
    ("nesting", {"projects": {"/x": {"allowedTools": ["Bash(ls)"], "n": None, "t": True}}}),
    ("integers", [0, -1, 2**53, 1761234567890]),
    ("floats", [0.1, -0.5, 1.5, 100.0, 1e21, 1e-7, 0.000012, 123.456, 1.5e300, 5e-324]),
    ("more-floats", [1e20, 1.2345e21, 0.000001, 0.0000001, 2.5e-5, 1 / 3, -1e-10]),
]


def test_a_lone_surrogate_is_written_as_node_writes_it() -> None:
    """No Node needed: the one byte sequence Claude Code's history holds that Python's
    json cannot write back as UTF-8."""
    raw = '{\n  "history": [\n    {\n      "display": "cut \\ud83d"\n    }\n  ]\n}'
    assert stringify(json.loads(raw)) == raw
    assert stringify(json.loads(raw)).encode("utf-8")  # encodable at all


@needs_node
@pytest.mark.parametrize("value", [c[1] for c in CASES], ids=[c[0] for c in CASES])
def test_stringify_writes_what_node_writes(value: Any) -> None:
    [expected] = node_stringify([value])
    assert stringify(value) == expected
    assert stringify(json.loads(expected)) == expected  # read back, written back: the same


@needs_node
@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.floats(allow_nan=False, allow_infinity=False),
            st.text(alphabet=st.characters(codec=None, min_codepoint=0), max_size=8),
        ),
        min_size=1,
        max_size=20,
    )
)
def test_numbers_and_strings_match_node(values: list[Any]) -> None:
    expected = node_stringify([values])[0]
    assert stringify(values) == expected


@pytest.mark.parametrize(
    ("x", "spelled"),
    [(0.000012, "0.000012"), (1e-7, "1e-7"), (1e21, "1e+21"), (100.0, "100"), (-0.0, "0")],
    ids=["small", "tiny", "huge", "integral", "negative-zero"],
)
def test_number_follows_javascripts_rules(x: float, spelled: str) -> None:
    assert number(x) == spelled
