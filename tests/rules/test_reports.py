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


def test_a_point_is_worth_the_most_it_takes_off_at_exchange_else_what_earned_it():
    # 满200减30 for 300 points, 减20 for 500: a point takes off at most ¥0.10.
    value = reports.point_value([(3000, 300), (2000, 500)], Fraction(1))
    assert (value.fen, value.basis) == (Fraction(10), "exchange")
    assert reports.points_fen(1239, value.fen) == 12390
    # No coupon with a fixed amount off: a point stands for the yuan spent to earn it.
    earning = reports.point_value([], Fraction(2))  # 2 points a yuan
    assert (earning.fen, earning.basis) == (Fraction(50), "earning")
    assert reports.point_value([(0, 300), (1000, 0)], Fraction(0)).fen == 0


@given(st.integers(0, 10**9), st.fractions(0, 1000))
def test_points_in_fen_are_the_nearest_whole_fen(points, fen_per_point):
    exact = points * fen_per_point
    assert -Fraction(1, 2) < reports.points_fen(points, fen_per_point) - exact <= Fraction(1, 2)


def test_tiers_are_listed_in_the_configured_order_then_the_names_no_longer_configured():
    counts = {"金卡": 3, "普通": 10, "旧卡": 2, "空": 0}
    assert reports.in_tier_order(["普通", "银卡", "金卡"], counts) == [
        ("普通", 10), ("银卡", 0), ("金卡", 3), ("旧卡", 2)]


def test_the_closed_windows_are_each_periods_days_before_today_and_the_periods_before():
    today = dt.date(2026, 3, 18)
    windows = reports.closed_windows(today)
    assert (dt.date(2026, 3, 17), dt.date(2026, 3, 17)) in windows  # yesterday: 1 day before
    assert (dt.date(2026, 3, 12), dt.date(2026, 3, 17)) in windows  # this week's closed days
    assert (dt.date(2026, 3, 5), dt.date(2026, 3, 11)) in windows  # the week before
    assert (dt.date(2026, 2, 17), dt.date(2026, 3, 17)) in windows
    assert (dt.date(2026, 1, 18), dt.date(2026, 2, 16)) in windows
    assert len(windows) == 5 and all(b < today for _, b in windows)
    assert reports.rate(3, 4) == 0.75 and reports.rate(3, 0) is None
