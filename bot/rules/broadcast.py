"""Reading a manager's `群发 <分群> <模板名或文字>`: which part is the segment, which the message.

A segment expression may hold several conditions separated by spaces and a message may hold
spaces too, so the rule is:

* with a `|` (or `｜`), the segment is what comes before it and the message what follows:
  `群发 tier=金卡会员 last_visit>30d | 好久不见，本周回店送咖啡`;
* without one, the segment is the leading words that are conditions (an ASCII name followed by
  `=`, `!=`, `>`, `>=`, `<`, `<=` or `:`, such as `tier=金卡会员`, or the word `all`), and the
  message is everything from the first other word on: `群发 tier=金卡会员 本周末全场9折`;
* a tier's name as the first word means that tier: `群发 金卡会员 本周末全场9折` is
  `tier:金卡会员` (the form every version of the segment language reads).

Nothing else is guessed: no segment, or no message, is no split (the handler answers with an
example). A message that is one word of letters, digits, `_`, `-` or `.` is a template's name
(`xmas_promo`, the file templates/messages/xmas_promo.j2); anything else is the text itself."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

SEPARATORS = ("|", "｜")
_CONDITION = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:>=|<=|!=|=|>|<|:)\S+")
_TEMPLATE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")
ALL = "all"


@dataclass(frozen=True)
class BroadcastRequest:
    segment: str
    template: str | None  # a template's name (without .j2) …
    text: str | None  # … or the message itself


def is_condition(word: str) -> bool:
    return word == ALL or _CONDITION.fullmatch(word) is not None


def split(rest: str, tier_names: Iterable[str]) -> BroadcastRequest | None:
    """What follows 群发, or None when it does not say both a segment and a message."""
    rest = rest.strip()
    for separator in SEPARATORS:
        if separator in rest:
            segment, _, message = rest.partition(separator)
            return _request(" ".join(segment.split()), message.strip())
    words = rest.split()
    conditions: list[str] = []
    if words and words[0] in set(tier_names):
        conditions.append(f"tier:{words.pop(0)}")
    while words and is_condition(words[0]):
        conditions.append(words.pop(0))
    # The message keeps its own spacing: cut the original text after the segment's words.
    message = rest
    for word in rest.split()[:len(rest.split()) - len(words)]:
        message = message[message.index(word) + len(word):]
    return _request(" ".join(conditions), message.strip())


def _request(segment: str, message: str) -> BroadcastRequest | None:
    if not segment or not message:
        return None
    if _TEMPLATE_NAME.fullmatch(message):
        return BroadcastRequest(segment, message.removesuffix(".j2"), None)
    return BroadcastRequest(segment, None, message)
