"""The report periods: local days (a day is not always 24 hours), the period before, 环比."""

from __future__ import annotations

import datetime as dt
import itertools
from fractions import Fraction
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from bot.rules import reports
from bot.rules.reports import Period


def test_a_period_ends_today_and_the_one_before_has_the_same_length():
    period = reports.ending(dt.date(2026, 3, 18), 7)
    assert (period.first, period.last) == (dt.date(2026, 3, 12), dt.date(2026, 3, 18))
    before = period.before()
    assert (before.first, before.last, before.days) == (dt.date(2026, 3, 5),
                                                         dt.date(2026, 3, 11), 7)


def test_days_start_at_local_midnight_even_when_the_clocks_change():
    new_york = ZoneInfo("America/New_York")  # 2026-03-08: 23 hours long
    edges = reports.day_edges(dt.date(2026, 3, 7), 3, new_york)
    assert [b - a for a, b in itertools.pairwise(edges)] == [
        dt.timedelta(hours=24), dt.timedelta(hours=23), dt.timedelta(hours=24)]
    shanghai = Period(dt.date(2026, 3, 18), 1).bounds(ZoneInfo("Asia/Shanghai"))
    assert shanghai == (dt.datetime(2026, 3, 17, 16, tzinfo=dt.UTC),
                        dt.datetime(2026, 3, 18, 16, tzinfo=dt.UTC))


def test_the_change_against_nothing_is_unknown_not_infinite():
    assert reports.change(150, 60) == 1.5
    assert reports.change(0, 60) == -1.0
    assert reports.change(5, 0) is None and reports.change(None, 3) is None


@given(st.integers(0, 10**9), st.integers(1, 10**6))
def test_an_average_in_fen_is_the_nearest_whole_fen_halves_up(total, count):
    exact = Fraction(total, count)
    average = reports.per(total, count)
    assert -Fraction(1, 2) < average - exact <= Fraction(1, 2)
    assert reports.per(total, 0) is None
