"""JSON as Node's ``JSON.stringify(value, null, 2)`` writes it: Claude Code's files.

Claude Code rewrites ``~/.claude.json`` and ``.claude/settings.local.json`` itself, so
what this tool writes back must be what Node would have written: the parts it did not
change stay byte for byte the same. Python's ``json.dumps`` differs in two ways that
matter: a lone surrogate (``"\\ud83d"``, half an emoji cut off in a history line, which
Node escapes) cannot be encoded as UTF-8 at all, and floats are spelled another way
(Python ``1.2e-05``, Node ``0.000012``).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

_SURROGATE = re.compile("[\ud800-\udfff]")


def stringify(value: Any, newline: bool = False) -> str:
    """``JSON.stringify(value, null, 2)`` (plus a final newline when `newline`)."""
    return _value(value, 0) + ("\n" if newline else "")


def _value(value: Any, depth: int) -> str:
    if isinstance(value, dict):
        items = [f"{_string(str(k))}: {_value(v, depth + 1)}" for k, v in value.items()]
        return _block("{", items, "}", depth)
    if isinstance(value, (list, tuple)):
        return _block("[", [_value(v, depth + 1) for v in value], "]", depth)
    if isinstance(value, str):
        return _string(value)
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return number(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def _block(start: str, items: list[str], end: str, depth: int) -> str:
    if not items:
        return start + end
    inner = "  " * (depth + 1)
    return f"{start}\n{inner}" + f",\n{inner}".join(items) + f"\n{'  ' * depth}{end}"


def _string(text: str) -> str:
    # json.dumps escapes what Node escapes (quote, backslash, control characters, in
    # the same lowercase \u00xx form); a lone surrogate Node writes as \udxxx
    quoted = json.dumps(text, ensure_ascii=False)
    if not _SURROGATE.search(quoted):
        return quoted
    # two halves side by side are one character to Node (json.loads joins them too)
    joined = quoted.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", joined)


def number(x: float) -> str:
    """A float as ECMAScript's Number::toString spells it (the shortest digits that
    round-trip, as Python's repr finds them, placed by JavaScript's rules)."""
    if not math.isfinite(x):
        return "null"
    if x == 0:
        return "0"
    from decimal import Decimal  # here: most of ~/.claude.json is no float

    sign = "-" if x < 0 else ""
    _, digit_tuple, exponent = Decimal(repr(abs(x))).as_tuple()
    digits = "".join(map(str, digit_tuple)).rstrip("0")
    k = len(digits)
    n = int(exponent) + len(digit_tuple)  # the value is 0.<digits> * 10**n
    if k <= n <= 21:
        return sign + digits + "0" * (n - k)
    if 0 < n <= 21:
        return sign + digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return sign + "0." + "0" * -n + digits
    e = n - 1
    mantissa = digits if k == 1 else digits[0] + "." + digits[1:]
    return f"{sign}{mantissa}e{'+' if e >= 0 else '-'}{abs(e)}"
