"""The segment language: which members a campaign or a bulk coupon is for, in one line of text.

    tier=金卡会员 store=S001 last_visit>30d visits_12m>=3 spend_12m>=1000 tag=瑜伽 birthday_month=5

Conditions are separated by spaces and must all hold; `all` alone is every member, and the older
`tier:<name>` still means `tier=<name>`. Each field takes the operators in FIELDS. `a!=v` is
always exactly the members `a=v` leaves out (a member with no store is in `store!=S001`).

Pure: this parses into an Expression, whose str() is the canonical text (parse(str(e)) == e).
The SQL that evaluates one is in bot/services/segments.py; docs/segments.md has the meanings.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

EQUALITY = ("=", "!=")
ORDERED = ("=", "!=", ">", ">=", "<", "<=")
# Longest first, so ">=" is not read as ">" followed by a value "=…".
_OPERATORS = (">=", "<=", "!=", "=", ">", "<")
# What Chinese input methods type instead of the ASCII operators (one character each, so
# positions in the text stay the same).
_FULL_WIDTH_OPS = str.maketrans("＝！＞＜：", "=!><:")

EXAMPLE = "tier=金卡会员 last_visit>30d"

# RFM class → (recency, frequency, money) scored high (True) or low (False).
RFM_CLASSES: dict[str, tuple[bool, bool, bool]] = {
    "重要价值": (True, True, True),
    "一般价值": (True, True, False),
    "重要保持": (False, True, True),
    "一般保持": (False, True, False),
    "重要发展": (True, False, True),
    "一般发展": (True, False, False),
    "重要挽留": (False, False, True),
    "一般挽留": (False, False, False),
}


class UnknownSegment(ValueError):
    """The text names no segment."""


class SegmentSyntaxError(UnknownSegment):
    """Where the text goes wrong: `position` is the index of the offending character in the
    text (0-based), `example` a text that would have been understood there. `kind` says what
    is wrong, for a message in another language than str()'s English: empty, all_alone,
    unknown_field, no_operator, bad_operator, bad_value, unknown_name; `values` has what the
    kind names (field, text, operators, known, choices)."""

    def __init__(self, problem: str, position: int, example: str, kind: str,
                 **values: Any):
        self.problem = problem
        self.position = position
        self.example = example
        self.kind = kind
        self.values = values
        super().__init__(f"{problem} at column {position + 1} (e.g. {example})")


@dataclass(frozen=True)
class Field:
    operators: tuple[str, ...]
    example: str
    parse: Callable[[str], Any]  # the value a text means, or None if it is none of this field
    show: Callable[[Any], str] = str
    expects: str = ""  # what a value looks like, for the error message
    choices: tuple[str, ...] = ()  # every value there is, when there are few


def _whole(low: int, high: int):
    def parse(text: str) -> int | None:
        if not text.isascii() or not text.isdigit() or len(text) > 9:
            return None
        value = int(text)
        return value if low <= value <= high else None
    return parse


def _days(text: str) -> int | None:
    return _whole(0, 100_000)(text[:-1]) if text.endswith("d") else None


_YUAN = re.compile(r"([0-9]{1,9})(?:\.([0-9]{1,2}))?")


def _yuan(text: str) -> int | None:
    """'1000' → 100000 fen, '99.5' → 9950. Zero is a value here (spend_12m=0)."""
    match = _YUAN.fullmatch(text)
    if match is None:
        return None
    return int(match[1]) * 100 + int((match[2] or "0").ljust(2, "0"))


def _show_yuan(fen: int) -> str:
    return str(fen // 100) if fen % 100 == 0 else f"{fen // 100}.{fen % 100:02d}"


def _name(text: str) -> str | None:
    return text or None


FIELDS: dict[str, Field] = {
    "tier": Field(EQUALITY, "tier=金卡会员", _name, expects="a tier name"),
    "store": Field(EQUALITY, "store=S001", _name, expects="a store code"),
    "tag": Field(EQUALITY, "tag=瑜伽", _name, expects="a tag"),
    "rfm": Field(EQUALITY, "rfm=重要价值", lambda text: text if text in RFM_CLASSES else None,
                 expects="one of " + "、".join(RFM_CLASSES), choices=tuple(RFM_CLASSES)),
    "birthday_month": Field(ORDERED, "birthday_month=5", _whole(1, 12),
                            expects="a month 1-12"),
    "last_visit": Field(ORDERED, "last_visit>30d", _days, lambda days: f"{days}d",
                        expects="days like 30d"),
    "visits_12m": Field(ORDERED, "visits_12m>=3", _whole(0, 1_000_000),
                        expects="a whole number"),
    "spend_12m": Field(ORDERED, "spend_12m>=1000", _yuan, _show_yuan,
                       expects="yuan like 1000 or 99.50"),
}


@dataclass(frozen=True)
class Condition:
    field: str
    op: str
    value: str | int  # int for the numeric fields: days, a count, fen, a month
    position: int = field(default=0, compare=False)  # where it starts in the text parsed

    def __str__(self) -> str:
        return f"{self.field}{self.op}{FIELDS[self.field].show(self.value)}"


@dataclass(frozen=True)
class Expression:
    conditions: tuple[Condition, ...] = ()  # none: every member

    def __str__(self) -> str:
        return " ".join(map(str, self.conditions)) or "all"

    def of(self, name: str) -> tuple[Condition, ...]:
        return tuple(c for c in self.conditions if c.field == name)


def parse(text: str, *, tiers: Collection[str] | None = None,
          stores: Collection[str] | None = None) -> Expression:
    """The expression the text means; SegmentSyntaxError where it means none. Tiers and stores
    are checked against the names given (the config's), when given."""
    tokens = [(m.start(), m[0]) for m in re.finditer(r"\S+", text)]
    if not tokens:
        raise SegmentSyntaxError("empty segment (all: every member)", 0, EXAMPLE, "empty")
    if any(token == "all" for _, token in tokens):
        if len(tokens) == 1:
            return Expression()
        at = next(start for start, token in tokens if token == "all")
        raise SegmentSyntaxError("'all' stands alone", at, "all", "all_alone")
    conditions = tuple(_condition(start, token, tiers, stores) for start, token in tokens)
    return Expression(conditions)


def _condition(start: int, token: str, tiers: Collection[str] | None,
               stores: Collection[str] | None) -> Condition:
    ops = token.translate(_FULL_WIDTH_OPS)
    name = re.match(r"[a-z0-9_]*", ops)[0]
    if name == "tier" and ops[len(name):].startswith(":"):  # the older form, tier:<name>
        op, at = "=", len(name) + 1
    else:
        if name not in FIELDS:
            text = token[:len(name) or None]
            raise SegmentSyntaxError(f"unknown field {text!r} (fields: {', '.join(FIELDS)})",
                                     start, EXAMPLE, "unknown_field", text=text,
                                     known=tuple(FIELDS))
        op = next((o for o in _OPERATORS if ops.startswith(o, len(name))), None)
        if op is None:
            raise SegmentSyntaxError(f"expected an operator after {name!r}",
                                     start + len(name), FIELDS[name].example, "no_operator",
                                     field=name, operators=FIELDS[name].operators)
        at = len(name) + len(op)
    spec = FIELDS[name]
    if op not in spec.operators:
        raise SegmentSyntaxError(f"{name} takes {' or '.join(spec.operators)}, not {op}",
                                 start + len(name), spec.example, "bad_operator", field=name,
                                 text=op, operators=spec.operators)
    raw = token[at:]
    value = spec.parse(raw)
    if value is None:
        raise SegmentSyntaxError(f"{name} needs {spec.expects}" + (f", not {raw!r}" if raw else ""),
                                 start + at, spec.example, "bad_value", field=name, text=raw,
                                 choices=spec.choices)
    known = {"tier": tiers, "store": stores}.get(name)
    if known is not None and value not in known:
        raise SegmentSyntaxError(f"no {name} {raw!r} (known: {', '.join(known)})", start + at,
                                 f"{name}={next(iter(known), raw)}", "unknown_name",
                                 field=name, text=raw, known=tuple(known))
    return Condition(name, op, value, start)
