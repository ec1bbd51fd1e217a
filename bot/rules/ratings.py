"""Pure rules of rating a visit: what a member's answer means, which rating alerts the store."""

from __future__ import annotations

import re

from bot.rules.parsing import normalize_text

STARS = range(1, 6)
_CHINESE = {"一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5}
# "5", "5星", "5分", "五星", "★★★★★"
_STARS_RE = re.compile(r"([1-5一二两三四五])\s*(星|分|颗星)?")
COMMENT_MAX = 500


def parse_stars(text: str) -> int | None:
    """The stars an answer gives (1–5), or None when it is not one."""
    text = normalize_text(text)
    if text and set(text) == {"★"} and len(text) in STARS:
        return len(text)
    found = _STARS_RE.fullmatch(text)
    if found is None:
        return None
    digit = found[1]
    return _CHINESE[digit] if digit in _CHINESE else int(digit)


def alerts(stars: int, at_most: int) -> bool:
    """Whether a rating goes to the store's managers at once ([ratings] alert_at_most)."""
    return stars <= at_most


def clean_comment(text: str) -> str:
    return text.strip()[:COMMENT_MAX]


def visit_key(kind: str, visit_id: int) -> str:
    """"purchase:<id>" or "booking:<id>": what makes a visit rated once."""
    return f"{kind}:{visit_id}"
