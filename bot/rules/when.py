"""The day and time a member types when booking a service: 明天, 周六, 12月3日, 下午3点, 15:00.

Pure: "today" is a parameter and nothing here reads the clock. A reader returns None for anything
it cannot read, so the dialog can simply ask again. Digits are matched as ASCII [0-9] after
full-width digits have been folded (\\d would also match other scripts' digits).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from bot.rules.parsing import normalize_text

# Days counted from today.
RELATIVE_DAYS = {"前天": -2, "昨天": -1, "今天": 0, "明天": 1, "后天": 2, "大后天": 3}

# The character after 周 / 星期 / 礼拜, as an ISO weekday index (Monday = 0).
WEEKDAYS = {"一": 0, "二": 1, "三": 2, "四": 3, "五": 4, "六": 5, "日": 6, "天": 6}

# What a period word does to the hour typed after it: typed hour -> hour on the 24-hour clock, or
# None when it cannot be booked. Hours not listed are kept, so 下午15点 is 15:00, 凌晨3点 03:00.
_PM = {hour: hour + 12 for hour in range(1, 12)}
PERIODS: dict[str, dict[int, int | None]] = {
    "凌晨": {12: 0},
    "早上": {},
    "早晨": {},
    "上午": {},
    "中午": {1: 13, 2: 14},
    "下午": _PM,
    "傍晚": _PM,
    "晚上": {**_PM, 12: None},  # midnight falls on the next day: ask rather than guess
}

_DIGITS = frozenset("0123456789")
_WEEKDAY_RE = re.compile(r"(?:(?P<which>这|本|下)个?)?(?:周|星期|礼拜)(?P<day>[一二三四五六日天])")
_FULL_DATE_RE = re.compile(
    r"(?P<y>[0-9]{4})[-/.年](?P<m>[0-9]{1,2})[-/.月](?P<d>[0-9]{1,2})[日号]?"
)
_MONTH_DAY_RE = re.compile(r"(?P<m>[0-9]{1,2})[-/.月](?P<d>[0-9]{1,2})[日号]?")
_DAY_OF_MONTH_RE = re.compile(r"(?P<d>[0-9]{1,2})[日号]")
_TIME_RE = re.compile(
    rf"(?P<period>{'|'.join(PERIODS)})?"
    r"(?P<h>[0-9]{1,2})"
    r"(?::(?P<m>[0-9]{2})|点(?:(?P<half>半)|(?P<m2>[0-9]{1,2})分?|钟|整)?)"
)


def _clean(text: str) -> str:
    """Full-width digits and colon folded to ASCII, all whitespace (also U+3000) removed."""
    return re.sub(r"\s", "", normalize_text(text)).replace("：", ":")


_CN_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6,
              "七": 7, "八": 8, "九": 9}
_CN_NUMBER = re.compile(r"[零〇一二两三四五六七八九十]+")


def _cn_value(numeral: str) -> int | None:
    """十二 → 12, 二十三 → 23, 三十 → 30, 二零二七 → 2027; None for anything else."""
    if "十" not in numeral:
        return int("".join(str(_CN_DIGITS[c]) for c in numeral))
    tens, _, ones = numeral.partition("十")
    if len(tens) > 1 or len(ones) > 1 or "十" in ones:
        return None
    return (_CN_DIGITS[tens] if tens else 1) * 10 + (_CN_DIGITS[ones] if ones else 0)


def _arabic(text: str) -> str:
    """Chinese numerals as digits (下午三点 → 下午3点, 十二月三日 → 12月3日). Weekday words are
    read before this, so 周三 stays a weekday."""
    def digits(match: re.Match) -> str:
        value = _cn_value(match[0])
        return match[0] if value is None else str(value)
    return _CN_NUMBER.sub(digits, text)


def parse_day(text: str, today: dt.date) -> dt.date | None:
    """The day `text` names, seen from `today`, or None.

    - 今天 明天 后天 大后天, and 昨天 前天 (staff look back: 今日预约 昨天).
    - 周六 / 星期六 / 礼拜六 (also 日, 天): the next such day, today included.
      这周六 / 本周六: that day of the current ISO week, None if already past.
      下周六 / 下星期六: that day of the next ISO week (10 days ahead when typed on a Wednesday).
    - 12月3日, 12月3号, 12-03, 12/3, 12.3: this year, or next year if that date is before today.
    - 2026-12-03, 2026年12月3日, 2026/12/3: as typed, even in the past (the caller decides).
    - 3号, 3日: this month, or next month if before today; None if that month has no such day.
    Numbers may be written in Chinese: 十二月三日, 三号.
    A date that does not exist (2月30日, 2月29日 in a common year) is None.
    """
    try:
        return _read_day(_clean(text), today)
    except (ValueError, OverflowError):  # no such date, or beyond dt.date.max
        return None


def _read_day(text: str, today: dt.date) -> dt.date | None:
    if text in RELATIVE_DAYS:
        return today + dt.timedelta(days=RELATIVE_DAYS[text])
    if match := _WEEKDAY_RE.fullmatch(text):
        weekday = WEEKDAYS[match["day"]]
        if match["which"] is None:
            return today + dt.timedelta(days=(weekday - today.weekday()) % 7)
        monday = today - dt.timedelta(days=today.weekday())
        if match["which"] == "下":
            return monday + dt.timedelta(days=7 + weekday)
        day = monday + dt.timedelta(days=weekday)
        return day if day >= today else None
    text = _arabic(text)
    if match := _FULL_DATE_RE.fullmatch(text):
        return dt.date(int(match["y"]), int(match["m"]), int(match["d"]))
    if match := _MONTH_DAY_RE.fullmatch(text):
        month, day = int(match["m"]), int(match["d"])
        passed = (month, day) < (today.month, today.day)
        return dt.date(today.year + 1 if passed else today.year, month, day)
    if match := _DAY_OF_MONTH_RE.fullmatch(text):
        day = int(match["d"])
        if day >= today.day:
            return today.replace(day=day)
        next_month = (today.replace(day=1) + dt.timedelta(days=31)).replace(day=1)
        return next_month.replace(day=day)
    return None


def parse_time(text: str) -> dt.time | None:
    """The time of day `text` names, or None.

    15:00, 15：00, 9:30, 15点, 15点半, 15点30, 15点30分, 15点钟, 15点整; a bare hour is on the
    24-hour clock (3点 is 03:00, 12点 is 12:00). A period word in front may move it (see PERIODS):
    下午3点 and 晚上3点 are 15:00, 中午1点 is 13:00, 上午/早上/凌晨 keep the hour.
    Four bare digits (1500) are ambiguous and refused, as are 25:00, 15:61 and 晚上12点.
    Numbers may be written in Chinese: 下午三点半, 十点, 两点.
    """
    match = _TIME_RE.fullmatch(_arabic(_clean(text)))
    if not match:
        return None
    hour: int | None = int(match["h"])
    minute = 30 if match["half"] else int(match["m"] or match["m2"] or 0)
    if match["period"]:
        hour = PERIODS[match["period"]].get(hour, hour)
    if hour is None or hour > 23 or minute > 59:
        return None
    return dt.time(hour, minute)


@dataclass(frozen=True)
class When:
    """What split_when found: the day, the time, and the other words in their order."""

    day: dt.date | None
    time: dt.time | None
    rest: list[str]


def split_when(words: list[str], today: dt.date) -> When:
    """Pick the first word that is a day and the first that is a time out of `words` (the
    words after a booking command, e.g. ["洗剪吹", "明天", "15:00"]). While neither has been
    found, one word may hold both, day first: 明天下午3点, 周六10:30, 12月3日15:00.
    The other words go to `rest`, in order."""
    day: dt.date | None = None
    time: dt.time | None = None
    rest: list[str] = []
    for word in words:
        if day is None and (found_day := parse_day(word, today)) is not None:
            day = found_day
        elif time is None and (found_time := parse_time(word)) is not None:
            time = found_time
        elif day is None and time is None and (both := _day_and_time(word, today)):
            day, time = both
        else:
            rest.append(word)
    return When(day, time, rest)


def _day_and_time(word: str, today: dt.date) -> tuple[dt.date, dt.time] | None:
    """A day directly followed by a time in one word. The cut never falls inside a number, so
    12月13点 is not read as 12月1(日) 3点."""
    text = _clean(word)
    for cut in range(1, len(text)):
        if text[cut - 1] in _DIGITS and text[cut] in _DIGITS:
            continue
        day, time = parse_day(text[:cut], today), parse_time(text[cut:])
        if day is not None and time is not None:
            return day, time
    return None
