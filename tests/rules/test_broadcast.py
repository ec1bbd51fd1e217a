"""Splitting `群发 <分群> <模板名或文字>` into the segment and the message."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bot.rules.broadcast import BroadcastRequest, is_condition, split

TIERS = ("普通会员", "银卡会员", "金卡会员", "钻石会员")


def test_leading_conditions_are_the_segment_and_the_rest_the_message():
    assert split("tier=金卡会员 last_visit>30d 本周末 全场9折", TIERS) == BroadcastRequest(
        "tier=金卡会员 last_visit>30d", None, "本周末 全场9折")
    assert split("all xmas_promo", TIERS) == BroadcastRequest("all", "xmas_promo", None)
    assert split("tier:金卡会员 xmas_promo.j2", TIERS) == BroadcastRequest(
        "tier:金卡会员", "xmas_promo", None)


def test_a_tier_name_first_means_that_tier():
    assert split("金卡会员 本周末全场9折", TIERS) == BroadcastRequest(
        "tier:金卡会员", None, "本周末全场9折")
    assert split("钻石会员 spend_12m>=1000 新品到店", TIERS) == BroadcastRequest(
        "tier:钻石会员 spend_12m>=1000", None, "新品到店")


def test_a_bar_separates_when_the_message_would_look_like_a_condition():
    assert split("tier=金卡会员 ｜ a=b 满100减20", TIERS) == BroadcastRequest(
        "tier=金卡会员", None, "a=b 满100减20")
    assert split("rfm=重要价值  store=S001|好久不见", TIERS) == BroadcastRequest(
        "rfm=重要价值 store=S001", None, "好久不见")


def test_no_segment_or_no_message_is_no_split():
    for text in ("", "本周末全场9折", "tier=金卡会员", "tier=金卡会员 last_visit>30d",
                 "| 好久不见", "tier=金卡会员 |", "VIP 本周末全场9折"):
        assert split(text, TIERS) is None, text


def test_the_message_keeps_its_own_spacing():
    assert split("tier=金卡会员   圣诞快乐！  今晚 8 点", TIERS).text == "圣诞快乐！  今晚 8 点"


names = st.from_regex(r"[a-z_][a-z0-9_]{0,11}", fullmatch=True)
values = st.text(st.characters(blacklist_categories=("Z", "C"), blacklist_characters="|｜"),
                 min_size=1, max_size=8)
operators = st.sampled_from(("=", "!=", ">", ">=", "<", "<=", ":"))
conditions = st.builds(lambda n, o, v: f"{n}{o}{v}", names, operators, values)
# A message's first word is neither a condition nor a tier's name; the rest is anything.
first_words = st.text(st.characters(blacklist_categories=("Z", "C"), blacklist_characters="|｜"),
                      min_size=1, max_size=10).filter(
    lambda w: not is_condition(w) and w not in TIERS)
rest = st.text(st.characters(blacklist_characters="|｜"), max_size=30)


@given(st.lists(conditions, min_size=1, max_size=5), first_words, rest)
def test_any_conditions_then_any_message_split_back(segment, first, more):
    message = f"{first} {more}".strip()
    found = split(" ".join(segment) + " " + message, TIERS)
    assert found is not None and found.segment == " ".join(segment)
    assert (found.template or found.text) == (message.removesuffix(".j2") if found.template
                                             else message)
