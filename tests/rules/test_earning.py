"""The pure earning rules (bot/rules/earning.py) and tier arithmetic (bot/rules/tiers.py),
property-based.

Every expectation here is computed independently of the code under test: exact Fractions for
points, the calendar module for expiry dates, Decimal for amounts."""

from __future__ import annotations

import calendar
import datetime as dt
import math
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from bot.config import TierConfig
from bot.rules import earning, tiers
from bot.rules.earning import (
    EarningRule,
    TopUpBonus,
    expiry_for,
    fen_to_yuan,
    parse_yuan,
    points_for,
    topup_bonus,
)

ROUNDINGS = ("floor", "round", "ceil")
WEEKDAYS = st.integers(1, 7)
AMOUNTS = st.integers(-1000, 10_000_000)  # fen; the services never pass more than ¥100 000
# Multipliers as configs write them (1.2, 1.5, 0.8 …), turned into exact fractions the way the
# services do: Fraction(str(float)).
MULTIPLIERS = st.sampled_from(["0.5", "0.8", "1", "1.1", "1.2", "1.25", "1.5", "2", "3"]).map(
    Fraction)
AT_LEAST_ONE = MULTIPLIERS.filter(lambda m: m >= 1)
PER_YUAN = st.sampled_from(["0", "0.01", "0.1", "0.3", "0.5", "0.7", "1", "1.1", "2.5", "10"]).map(
    Fraction)


@st.composite
def rules(draw, rounding=None, member_day_multiplier=None) -> EarningRule:
    return EarningRule(
        points_per_yuan=draw(PER_YUAN),
        rounding=rounding or draw(st.sampled_from(ROUNDINGS)),
        min_amount_fen=draw(st.sampled_from([0, 1, 100, 1000, 9999])),
        member_day=draw(st.integers(0, 7)),
        member_day_multiplier=member_day_multiplier or draw(MULTIPLIERS),
    )


def rule(per_yuan="1", rounding="floor", min_fen=0, member_day=0, member_day_multiplier="1"):
    return EarningRule(Fraction(per_yuan), rounding, min_fen, member_day,
                       Fraction(member_day_multiplier))


def exact(amount_fen: int, r: EarningRule, tier_multiplier: Fraction, weekday: int) -> Fraction:
    """The unrounded points, written out independently of points_for."""
    day = r.member_day_multiplier if r.member_day and weekday == r.member_day else 1
    return Fraction(amount_fen) / 100 * r.points_per_yuan * tier_multiplier * day


# --- points_for -----------------------------------------------------------------------------

@given(AMOUNTS, rules(), MULTIPLIERS, WEEKDAYS)
def test_points_are_never_negative_and_zero_below_the_minimum(amount, r, mult, weekday):
    points = points_for(amount, r, mult, weekday)
    assert isinstance(points, int)
    assert points >= 0
    if amount < r.min_amount_fen or amount <= 0:
        assert points == 0


@given(AMOUNTS, rules(), MULTIPLIERS, WEEKDAYS)
def test_points_are_the_exact_amount_rounded_as_configured(amount, r, mult, weekday):
    assume(amount > 0 and amount >= r.min_amount_fen)
    raw = exact(amount, r, mult, weekday)
    points = points_for(amount, r, mult, weekday)
    if r.rounding == "floor":
        assert points == math.floor(raw)
    elif r.rounding == "ceil":
        assert points == math.ceil(raw)
    else:  # half up
        assert points - Fraction(1, 2) <= raw < points + Fraction(1, 2)


@given(AMOUNTS, AMOUNTS, rules(), MULTIPLIERS, WEEKDAYS)
def test_points_are_monotonic_in_the_amount(a, b, r, mult, weekday):
    low, high = sorted((a, b))
    assert points_for(low, r, mult, weekday) <= points_for(high, r, mult, weekday)


@given(AMOUNTS, rules(member_day_multiplier=None), WEEKDAYS, st.integers(1, 7))
def test_member_day_multiplies_and_never_earns_less(amount, r, other_day, member_day):
    r = EarningRule(r.points_per_yuan, r.rounding, r.min_amount_fen, member_day,
                    r.member_day_multiplier)
    assume(other_day != member_day)
    normal = points_for(amount, r, Fraction(1), other_day)
    on_member_day = points_for(amount, r, Fraction(1), member_day)
    if r.member_day_multiplier >= 1:
        assert on_member_day >= normal
    # And it is a multiplication of the raw points, not of the rounded ones.
    if amount > 0 and amount >= r.min_amount_fen and r.rounding == "floor":
        assert on_member_day == math.floor(exact(amount, r, Fraction(1), member_day))


@given(AMOUNTS, rules(), AT_LEAST_ONE, WEEKDAYS)
def test_a_tier_multiplier_of_at_least_one_never_earns_less(amount, r, mult, weekday):
    assert points_for(amount, r, mult, weekday) >= points_for(amount, r, Fraction(1), weekday)


@given(AMOUNTS, rules(), MULTIPLIERS, WEEKDAYS)
def test_rounding_modes_bracket_each_other(amount, r, mult, weekday):
    by_mode = {mode: points_for(amount, EarningRule(r.points_per_yuan, mode, r.min_amount_fen,
                                                    r.member_day, r.member_day_multiplier),
                                mult, weekday)
               for mode in ROUNDINGS}
    assert by_mode["floor"] <= by_mode["round"] <= by_mode["ceil"]
    assert by_mode["ceil"] - by_mode["floor"] <= 1


@given(st.integers(0, 10_000_000), WEEKDAYS)
def test_one_point_per_yuan_floor_is_whole_yuan(amount, weekday):
    assert points_for(amount, rule(), Fraction(1), weekday) == amount // 100


@pytest.mark.parametrize(("per_yuan", "amount", "mult", "rounding", "expected"), [
    ("0.1", 300, "1", "floor", 0),     # 0.3
    ("0.1", 300, "1", "round", 0),
    ("0.1", 300, "1", "ceil", 1),
    ("0.1", 3000, "1", "ceil", 3),     # floats: 0.1 × 30 = 3.0000000000000004 → ceil 4
    ("0.7", 1000, "1", "ceil", 7),     # floats: 0.7 × 10 = 7.000000000000001 → ceil 8
    ("1.1", 300, "1", "floor", 3),     # 3.3
    ("1.1", 300, "1", "ceil", 4),
    ("1", 12850, "1.2", "floor", 154),  # ¥128.50 × 1.2 = 154.2
    ("1", 12850, "1.2", "ceil", 155),
    ("0.5", 500, "1", "round", 3),     # 2.5 rounds half up, not to even
    ("0.5", 300, "1", "round", 2),     # 1.5 → 2
    ("1", 99, "1", "ceil", 1),         # 0.99
    ("1", 99, "1", "floor", 0),
    ("1", 14999, "1", "round", 150),   # 149.99
    ("1", 14949, "1", "round", 149),   # 149.49
])
def test_exact_arithmetic(per_yuan, amount, mult, rounding, expected):
    assert points_for(amount, rule(per_yuan, rounding), Fraction(mult), 1) == expected


def test_minimum_amount_and_member_day_examples():
    r = rule(min_fen=1000, member_day=3, member_day_multiplier="2")
    assert points_for(999, r, Fraction(1), 1) == 0
    assert points_for(1000, r, Fraction(1), 1) == 10
    assert points_for(1000, r, Fraction(1), 3) == 20          # Wednesday doubles
    assert points_for(999, r, Fraction(1), 3) == 0            # still below the minimum
    assert points_for(1050, r, Fraction("1.5"), 3) == 31      # 10.5 × 1.5 × 2 = 31.5
    assert points_for(0, rule(min_fen=0), Fraction(1), 1) == 0
    assert points_for(-500, rule(min_fen=0), Fraction(1), 1) == 0


# --- expiry_for -------------------------------------------------------------------------------

DATES = st.dates(dt.date(2000, 1, 1), dt.date(2100, 12, 31))


@given(DATES, st.integers(1, 120))
@example(dt.date(2023, 1, 31), 1)
@example(dt.date(2024, 1, 31), 1)
@example(dt.date(2024, 2, 29), 12)
@example(dt.date(2023, 12, 31), 1)
@example(dt.date(2023, 11, 30), 1)
@example(dt.date(2100, 12, 31), 120)
def test_months_is_the_same_day_n_calendar_months_later_clamped(earned, months):
    expires = expiry_for(earned, "months", months)
    assert isinstance(expires, dt.date)
    assert expires > earned
    assert (expires.year * 12 + expires.month) - (earned.year * 12 + earned.month) == months
    last_day = calendar.monthrange(expires.year, expires.month)[1]
    assert expires.day == min(earned.day, last_day)


@pytest.mark.parametrize(("earned", "months", "expected"), [
    (dt.date(2023, 1, 31), 1, dt.date(2023, 2, 28)),
    (dt.date(2024, 1, 31), 1, dt.date(2024, 2, 29)),
    (dt.date(2024, 2, 29), 12, dt.date(2025, 2, 28)),
    (dt.date(2024, 3, 31), 1, dt.date(2024, 4, 30)),
    (dt.date(2023, 12, 15), 1, dt.date(2024, 1, 15)),
    (dt.date(2023, 11, 30), 2, dt.date(2024, 1, 30)),
    (dt.date(2024, 5, 20), 12, dt.date(2025, 5, 20)),
    (dt.date(2024, 8, 31), 18, dt.date(2026, 2, 28)),
])
def test_months_examples(earned, months, expected):
    assert expiry_for(earned, "months", months) == expected


@given(DATES, st.integers(0, 120))
def test_year_end_and_never(earned, months):
    assert expiry_for(earned, "year_end", months) == dt.date(earned.year, 12, 31)
    assert expiry_for(earned, "year_end", months) >= earned
    assert expiry_for(earned, "never", months) is None


# --- topup_bonus ------------------------------------------------------------------------------

BONUS_TABLES = st.lists(
    st.builds(TopUpBonus, st.integers(1, 2_000_000), st.integers(0, 500_000)), max_size=5)
CONFIGURED = [TopUpBonus(50_000, 5_000), TopUpBonus(100_000, 12_000)]  # 充500送50, 充1000送120


@given(st.integers(0, 5_000_000), BONUS_TABLES)
def test_bonus_is_that_of_the_biggest_reached_tier(amount, table):
    bonus = topup_bonus(amount, table)
    reached = [b for b in table if amount >= b.min_fen]
    if not reached:
        assert bonus == 0
    else:
        assert bonus == max(b.bonus_fen for b in reached)
    if table and amount < min(b.min_fen for b in table):
        assert bonus == 0


@given(st.integers(0, 5_000_000), st.integers(0, 5_000_000), BONUS_TABLES)
def test_bonus_is_monotonic_in_the_amount(a, b, table):
    low, high = sorted((a, b))
    assert topup_bonus(low, table) <= topup_bonus(high, table)


@pytest.mark.parametrize(("amount", "bonus"), [
    (0, 0), (49_999, 0), (50_000, 5_000), (99_999, 5_000), (100_000, 12_000),
    (5_000_000, 12_000),
])
def test_configured_bonus_table(amount, bonus):
    assert topup_bonus(amount, CONFIGURED) == bonus
    # The order the tiers are written in does not matter.
    assert topup_bonus(amount, list(reversed(CONFIGURED))) == bonus


# --- parse_yuan -------------------------------------------------------------------------------

MAX_FEN = 100_000 * 100


@pytest.mark.parametrize(("text", "fen"), [
    ("128.50", 12850), ("128.5", 12850), ("128", 12800), ("0.01", 1), ("0.1", 10),
    ("¥10", 1000), ("￥10", 1000), ("10元", 1000), ("¥10元", 1000), ("  12.30  ", 1230),
    ("00.50", 50), ("100000", MAX_FEN), ("100000.00", MAX_FEN),
])
def test_parse_yuan_accepts(text, fen):
    assert parse_yuan(text, MAX_FEN) == fen


@pytest.mark.parametrize("text", [
    "", " ", "¥", "元", "0", "0.00", "0.0", "-5", "-0.01", "+5", "1.234", "0.001", "abc", "1e3",
    "１２", "１２.５", "12.５", "١٢", "²", "10.", ".5", ".", "1,000", "1 000", "1_000", "10.5.1",
    "100000.01", "100001", "9999999999", "NaN", "inf", "0x10", "¥-10", "10元元", "5 元",
])
def test_parse_yuan_rejects(text):
    assert parse_yuan(text, MAX_FEN) is None


@given(st.integers(1, MAX_FEN))
@example(1)
@example(MAX_FEN)
def test_parse_yuan_round_trips_fen_to_yuan(fen):
    assert parse_yuan(fen_to_yuan(fen), MAX_FEN) == fen
    assert parse_yuan(f"¥{fen_to_yuan(fen)}", MAX_FEN) == fen
    assert parse_yuan(f"{fen_to_yuan(fen)}元", MAX_FEN) == fen


@given(st.integers(MAX_FEN + 1, 10**12))
def test_parse_yuan_refuses_more_than_the_maximum(fen):
    assert parse_yuan(fen_to_yuan(fen), MAX_FEN) is None


@given(st.from_regex(r"\A[0-9]{1,9}(\.[0-9]{1,2})?\Z"))
def test_parse_yuan_agrees_with_decimal(text):
    expected = int(Decimal(text) * 100)
    assert parse_yuan(text, MAX_FEN) == (expected if 0 < expected <= MAX_FEN else None)


@given(st.text(max_size=20))
@settings(max_examples=300)
def test_parse_yuan_never_raises_and_stays_in_range(text):
    fen = parse_yuan(text, MAX_FEN)
    assert fen is None or (isinstance(fen, int) and 0 < fen <= MAX_FEN)
    if fen is not None:
        # Whatever it accepted reads as the same amount to a person.
        core = text.strip().removeprefix("¥").removeprefix("￥").removesuffix("元")
        assert Decimal(core) * 100 == fen


# --- tiers ------------------------------------------------------------------------------------

CONFIG_TIERS = [TierConfig("普通会员", 0), TierConfig("银卡会员", 1000, 1.2),
                TierConfig("金卡会员", 5000, 1.5), TierConfig("钻石会员", 20000, 2.0)]


@st.composite
def tier_lists(draw) -> list[TierConfig]:
    steps = draw(st.lists(st.integers(1, 50_000), min_size=0, max_size=5, unique=True))
    spends = [0, *sorted(steps)]
    return [TierConfig(f"T{i}", spend) for i, spend in enumerate(spends)]


@given(tier_lists(), st.integers(0, 10**10), st.data())
def test_target_tier_is_never_below_the_floor_or_the_spend(tier_list, spend, data):
    floor = data.draw(st.none() | st.sampled_from([t.name for t in tier_list]))
    target = tiers.target_tier(tier_list, spend, floor)
    earned = tiers.tier_for(tier_list, spend)
    assert tiers.rank(tier_list, target) >= tiers.rank(tier_list, earned)
    if floor:
        assert tiers.rank(tier_list, target) >= tiers.rank(tier_list, floor)
    # And it is exactly the higher of the two, nothing above.
    assert tiers.rank(tier_list, target) == max(tiers.rank(tier_list, earned),
                                                tiers.rank(tier_list, floor))


@given(tier_lists(), st.integers(0, 10**10), st.integers(0, 10**10))
def test_tier_for_is_monotonic_and_reached(tier_list, a, b):
    low, high = sorted((a, b))
    assert tiers.rank(tier_list, tiers.tier_for(tier_list, low)) <= tiers.rank(
        tier_list, tiers.tier_for(tier_list, high))
    reached = tiers.config_of(tier_list, tiers.tier_for(tier_list, high))
    assert reached.min_spend * 100 <= high
    higher = [t for t in tier_list if t.min_spend > reached.min_spend]
    assert all(t.min_spend * 100 > high for t in higher)


@given(st.integers(0, 10**9), st.sampled_from([None, "银卡会员", "钻石会员", "已取消的等级"]))
def test_configured_tiers(spend, floor):
    target = tiers.target_tier(CONFIG_TIERS, spend, floor)
    assert target in [t.name for t in CONFIG_TIERS]  # an unknown floor is ignored, not returned
    progress = tiers.progress(CONFIG_TIERS, target, spend)
    assert progress.remaining_fen >= 0
    if progress.next is None:
        assert target == "钻石会员"
    else:
        assert progress.remaining_fen == max(
            0, tiers.config_of(CONFIG_TIERS, progress.next).min_spend * 100 - spend)


@pytest.mark.parametrize(("spend", "tier"), [
    (0, "普通会员"), (99_999, "普通会员"), (100_000, "银卡会员"), (499_999, "银卡会员"),
    (500_000, "金卡会员"), (2_000_000, "钻石会员"),
])
def test_tier_boundaries(spend, tier):
    assert tiers.tier_for(CONFIG_TIERS, spend) == tier
    assert tiers.multiplier(CONFIG_TIERS, "银卡会员") == Fraction(6, 5)  # exact, not 1.19999…


def test_points_why_names_the_member_day_only_on_that_day():
    rule = earning.EarningRule(Fraction(1), earning.Rounding.FLOOR, 100, 3, Fraction(2))
    assert earning.points_why(rule, "金卡会员", Fraction(3, 2), 3) == earning.PointsWhy(
        "金卡会员", Fraction(3, 2), Fraction(2))
    assert earning.points_why(rule, "普通会员", Fraction(1), 4).member_day_multiplier is None


def test_corrected_tier_after_a_void():
    ladder = [TierConfig("普通", 0), TierConfig("银", 1000), TierConfig("金", 5000)]
    assert tiers.corrected_tier(ladder, "金", 0, None, "普通") == "普通"
    assert tiers.corrected_tier(ladder, "金", 0, None, "银") == "银"  # not below the lift
    assert tiers.corrected_tier(ladder, "金", 600_000, None, "普通") is None  # still earned
    assert tiers.corrected_tier(ladder, "金", 0, "金", "普通") is None  # a manager's floor
