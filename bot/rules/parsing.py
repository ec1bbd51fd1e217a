"""Pure parsers for what people type: phone numbers, birthdays, codes. No I/O here."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

_PHONE_RE = re.compile(r"1[3-9][0-9]{9}")  # ASCII only: \d also matches ٠-٩ etc.
_PHONE_NOISE = re.compile(r"[\s\-()（）]")
# Full-width digits and punctuation, as Chinese input methods produce them.
_FULL_WIDTH = str.maketrans("０１２３４５６７８９＋－／．", "0123456789+-/.")


def normalize_text(text: str) -> str:
    return text.translate(_FULL_WIDTH).strip()


def normalize_phone(text: str) -> str | None:
    """A mainland mobile number as 11 digits, or None. Accepts +86 / 86 / 0086, spaces, dashes."""
    digits = _PHONE_NOISE.sub("", normalize_text(text))
    for prefix in ("+86", "0086", "86"):
        if digits.startswith(prefix) and len(digits) == 11 + len(prefix):
            digits = digits[len(prefix) :]
            break
    return digits if _PHONE_RE.fullmatch(digits) else None


def parse_code(text: str, length: int = 6) -> str | None:
    digits = re.sub(r"\s", "", normalize_text(text))
    return digits if re.fullmatch(rf"[0-9]{{{length}}}", digits) else None


@dataclass(frozen=True)
class Birthday:
    month: int
    day: int
    year: int | None = None

    def __str__(self) -> str:
        if self.year:
            return f"{self.year}年{self.month}月{self.day}日"
        return f"{self.month}月{self.day}日"


_BIRTHDAY_PATTERNS = [
    re.compile(r"(?P<y>\d{4})[-/.年](?P<m>\d{1,2})[-/.月](?P<d>\d{1,2})日?"),
    re.compile(r"(?P<y>\d{4})(?P<m>\d{2})(?P<d>\d{2})"),
    re.compile(r"(?P<m>\d{1,2})[-/.月](?P<d>\d{1,2})日?"),
    re.compile(r"(?P<m>\d{2})(?P<d>\d{2})"),
]


class BadBirthday(ValueError):
    """Why a typed birthday was not taken: the member is told which."""

    FORMAT = "format"  # not a date we can read
    NO_SUCH_DATE = "no_such_date"  # 2月30日, 13月1日
    NOT_PLAUSIBLE = "not_plausible"  # in the future, or more than 120 years ago

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def read_birthday(text: str, today: dt.date) -> Birthday:
    """1990-05-01, 1990/5/1, 19900501, 1990年5月1日, 5月1日, 0501, 05-01; BadBirthday says why
    anything else is refused."""
    cleaned = re.sub(r"\s", "", normalize_text(text))
    for pattern in _BIRTHDAY_PATTERNS:
        match = pattern.fullmatch(cleaned)
        if not match:
            continue
        parts = match.groupdict()
        month, day = int(parts["m"]), int(parts["d"])
        year = int(parts["y"]) if parts.get("y") else None
        # A year-less date is checked against a leap year, so 2月29日 is accepted.
        try:
            dt.date(year or 2000, month, day)
        except ValueError:
            raise BadBirthday(BadBirthday.NO_SUCH_DATE) from None
        if year is not None and not today.year - 120 <= year <= today.year:
            raise BadBirthday(BadBirthday.NOT_PLAUSIBLE)
        if year is not None and dt.date(year, month, day) > today:
            raise BadBirthday(BadBirthday.NOT_PLAUSIBLE)
        return Birthday(month, day, year)
    raise BadBirthday(BadBirthday.FORMAT)


def parse_birthday(text: str, today: dt.date) -> Birthday | None:
    """The same, None if refused."""
    try:
        return read_birthday(text, today)
    except BadBirthday:
        return None


# What a member's name (称呼) may contain: letters of any script, digits among them, and the
# punctuation names use (space, middle dot, hyphen, apostrophe, period).
NAME_MAX = 20
_NAME_CHARS = re.compile(r"[\w\u00b7\u3400-\u9fff· .'-]+")


def name_problem(text: str) -> str | None:
    """None for a usable name, else why not: "length", "digits" (only digits) or "characters"
    (emoji, symbols, markup)."""
    name = normalize_text(text)
    if not 1 <= len(name) <= NAME_MAX:
        return "length"
    if not _NAME_CHARS.fullmatch(name):
        return "characters"
    if name.replace(" ", "").isdigit():
        return "digits"
    return None
