"""The segment language: what parses to what, and where a mistake is pointed at."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.rules.segments import (
    FIELDS,
    ORDERED,
    RFM_CLASSES,
    Condition,
    Expression,
    SegmentSyntaxError,
    UnknownSegment,
    parse,
)

TIERS = ("普通会员", "银卡会员", "金卡会员", "钻石会员")
KINDS = {"empty", "all_alone", "unknown_field", "no_operator", "bad_operator", "bad_value",
         "unknown_name"}
STORES = ("S001", "S002")


def test_the_issue_example_is_every_condition_at_once():
    expression = parse("tier=金卡会员 store=S001 last_visit>30d visits_12m>=3 spend_12m>=1000 "
                       "tag=瑜伽 birthday_month=5")
    assert expression.conditions == (
        Condition("tier", "=", "金卡会员"), Condition("store", "=", "S001"),
        Condition("last_visit", ">", 30), Condition("visits_12m", ">=", 3),
        Condition("spend_12m", ">=", 100_000), Condition("tag", "=", "瑜伽"),
        Condition("birthday_month", "=", 5))


def test_all_and_the_older_tier_form_still_parse():
    assert parse("all") == Expression()
    assert parse("tier:金卡会员") == parse("tier=金卡会员") == Expression(
        (Condition("tier", "=", "金卡会员"),))
    assert str(parse("tier:金卡会员")) == "tier=金卡会员"
    assert str(parse("all")) == "all"


def test_yuan_take_two_decimals_and_spaces_may_be_full_width():
    assert parse("spend_12m<99.5").conditions == (Condition("spend_12m", "<", 9950),)
    assert parse("spend_12m=0").conditions == (Condition("spend_12m", "=", 0),)
    assert parse("tier＝金卡会员\u3000rfm＝重要挽留").conditions == (
        Condition("tier", "=", "金卡会员"), Condition("rfm", "=", "重要挽留"))


@pytest.mark.parametrize(("text", "position", "example"), [
    ("", 0, "tier=金卡会员 last_visit>30d"),
    ("everyone", 0, "tier=金卡会员 last_visit>30d"),
    ("tier=金卡会员 tire=银卡会员", 10, "tier=金卡会员 last_visit>30d"),
    ("tier", 4, "tier=金卡会员"),
    ("tier>金卡会员", 4, "tier=金卡会员"),
    ("tier=", 5, "tier=金卡会员"),
    ("last_visit>30", 11, "last_visit>30d"),
    ("visits_12m>=三", 12, "visits_12m>=3"),
    ("spend_12m>=12.345", 11, "spend_12m>=1000"),
    ("birthday_month=13", 15, "birthday_month=5"),
    ("rfm=重要客户", 4, "rfm=重要价值"),
    ("all tier=金卡会员", 0, "all"),
    ("tier=金卡会员 all", 10, "all"),
])
def test_a_mistake_names_its_position_and_an_example(text, position, example):
    with pytest.raises(SegmentSyntaxError) as caught:
        parse(text)
    error = caught.value
    assert (error.position, error.example) == (position, example)
    assert error.kind in KINDS
    assert f"at column {position + 1} " in str(error) and example in str(error)
    assert "\n" not in str(error)
    assert isinstance(error, UnknownSegment)


def test_tiers_and_stores_are_checked_against_the_names_given():
    assert parse("tier=金卡会员 store=S002", tiers=TIERS, stores=STORES)
    with pytest.raises(SegmentSyntaxError) as caught:
        parse("store=S001 tier=黑卡会员", tiers=TIERS, stores=STORES)
    assert caught.value.position == 16 and caught.value.example == "tier=普通会员"
    assert (caught.value.kind, caught.value.values) == (
        "unknown_name", {"field": "tier", "text": "黑卡会员", "known": tuple(TIERS)})
    assert "黑卡会员" in str(caught.value) and "金卡会员" in str(caught.value)
    with pytest.raises(SegmentSyntaxError, match="S009"):
        parse("store!=S009", tiers=TIERS, stores=STORES)


# --- properties -------------------------------------------------------------------------------

_words = st.text(st.characters(blacklist_categories=("Z", "C")), min_size=1, max_size=6)


def _values(name: str) -> st.SearchStrategy:
    match name:
        case "tier":
            return st.sampled_from(TIERS)
        case "store":
            return st.sampled_from(STORES)
        case "tag":
            return _words
        case "rfm":
            return st.sampled_from(tuple(RFM_CLASSES))
        case "birthday_month":
            return st.integers(1, 12)
        case "spend_12m":
            return st.integers(0, 10**9)
    return st.integers(0, 9999)


conditions = st.sampled_from(tuple(FIELDS)).flatmap(lambda name: st.builds(
    Condition, st.just(name), st.sampled_from(FIELDS[name].operators), _values(name)))
expressions = st.builds(Expression, st.lists(conditions, max_size=6).map(tuple))


@given(expressions)
def test_the_canonical_text_parses_back_to_the_same_expression(expression):
    assert parse(str(expression), tiers=TIERS, stores=STORES) == expression


@given(expressions, st.sampled_from([" ", "  ", "\u3000", "\t"]))
def test_positions_point_at_each_condition_in_the_text(expression, gap):
    text = gap.join(map(str, expression.conditions)) or "all"
    for condition in parse(text).conditions:
        assert text[condition.position:].startswith(str(condition))


@given(st.text(max_size=40))
def test_any_text_parses_or_fails_at_a_position_within_it(text):
    try:
        expression = parse(text, tiers=TIERS, stores=STORES)
    except SegmentSyntaxError as error:
        assert 0 <= error.position <= len(text)
        assert error.example and "\n" not in str(error)
        # Every mistake says which kind it is, for a message in Chinese.
        assert error.kind in KINDS
        # The example shown is itself understood.
        parse(error.example, tiers=TIERS, stores=STORES)
    else:
        assert parse(str(expression), tiers=TIERS, stores=STORES) == expression


@given(st.sampled_from([n for n, f in FIELDS.items() if f.operators != ORDERED]),
       st.sampled_from([">", ">=", "<", "<="]))
def test_names_take_only_equality(name, op):
    with pytest.raises(SegmentSyntaxError, match=f"{name} takes = or !="):
        parse(f"{name}{op}x")
