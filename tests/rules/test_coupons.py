"""bot.rules.coupons, pure: every kind's arithmetic (property-based) and the coupon codes' check
character (Luhn mod 32), including the one adjacent transposition Luhn mod N cannot see."""

from __future__ import annotations

import itertools
import math
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.rules import coupons as cr
from bot.rules.check_characters import check_character
from bot.rules.coupons import ALPHABET, BODY_LENGTH, Rule

N = len(ALPHABET)
CODE_RE = re.compile(rf"[{ALPHABET}]{{{BODY_LENGTH + 1}}}")

amounts = st.integers(min_value=0, max_value=10_000_000)  # fen, up to ¥100,000
positive = st.integers(min_value=1, max_value=10_000_000)
money = st.integers(min_value=1, max_value=1_000_000)


@st.composite
def rules(draw, kind: str | None = None) -> Rule:
    kind = kind or draw(st.sampled_from(cr.KINDS))
    if kind == "amount_off":
        return Rule(kind, amount_off=draw(money))
    if kind == "threshold":
        off = draw(money)
        return Rule(kind, amount_off=off, threshold=off + draw(st.integers(0, 1_000_000)))
    if kind == "discount":
        return Rule(kind, discount_percent=draw(st.integers(1, 99)),
                    cap=draw(st.one_of(st.just(0), money)),
                    threshold=draw(st.one_of(st.just(0), money)))
    return Rule(kind, gift="头皮护理一次", threshold=draw(st.one_of(st.just(0), money)))


bodies = st.text(alphabet=ALPHABET, min_size=BODY_LENGTH, max_size=BODY_LENGTH)


def with_check(body: str) -> str:
    return body + check_character(body, ALPHABET)


# --- arithmetic ---

@given(rules(), amounts)
def test_a_discount_is_never_negative_and_never_more_than_the_amount(rule, amount):
    off = cr.discount(rule, amount)
    assert 0 <= off <= max(amount, 0)


@given(rules(), st.integers(min_value=-1_000_000, max_value=0))
def test_nothing_off_a_zero_or_negative_amount(rule, amount):
    assert cr.discount(rule, amount) == 0


@given(rules("threshold"), st.data())
def test_a_threshold_coupon_never_applies_below_its_threshold(rule, data):
    below = data.draw(st.integers(0, rule.threshold - 1))
    assert cr.applies(rule, below) is False
    assert cr.discount(rule, below) == 0
    at_or_above = data.draw(st.integers(rule.threshold, rule.threshold + 1_000_000))
    assert cr.applies(rule, at_or_above) is True
    assert cr.discount(rule, at_or_above) == rule.amount_off  # threshold >= amount_off
    assert cr.applies(rule, None) is False  # staff did not say the amount: cannot tell


@given(rules("amount_off"), positive)
def test_amount_off_takes_exactly_its_amount_capped_at_the_purchase(rule, amount):
    assert cr.applies(rule, amount) and cr.applies(rule, None)
    assert cr.discount(rule, amount) == min(rule.amount_off, amount)


def test_amount_off_examples():
    rule = Rule("amount_off", amount_off=2000)
    assert [cr.discount(rule, a) for a in (1, 1999, 2000, 2001, 50000)] == [
        1, 1999, 2000, 2000, 2000]


@given(st.integers(1, 99), positive)
def test_a_percentage_rounds_in_the_customers_favour_to_the_fen(percent, amount):
    off = cr.discount(Rule("discount", discount_percent=percent), amount)
    # Exactly the fraction off, rounded up: the customer pays the rounded-down price.
    assert off == math.ceil(amount * (100 - percent) / 100)
    assert off * 100 >= amount * (100 - percent) > (off - 1) * 100
    assert amount - off == amount * percent // 100


@given(st.integers(1, 99), money, positive)
def test_a_percentage_respects_its_cap(percent, cap, amount):
    off = cr.discount(Rule("discount", discount_percent=percent, cap=cap), amount)
    assert off == min(cap, math.ceil(amount * (100 - percent) / 100))
    assert off <= cap


@pytest.mark.parametrize(("amount", "off"), [
    (25000, 3000),  # 8.8折 of ¥250: ¥30 off
    (10001, 1201),  # ¥100.01: 12% is 1200.12 fen, rounded up for the customer
    (1, 1),  # 1 fen: the customer pays 0 (0.88 fen rounded down)
    (83333, 10000),  # 12% is ¥100.00 (+0.0396 fen): exactly the cap
    (100000, 10000),  # ¥1000: 12% would be ¥120, capped at ¥100
])
def test_eight_point_eight_with_a_hundred_yuan_cap(amount, off):
    vip88 = Rule("discount", discount_percent=88, cap=10000)
    assert cr.discount(vip88, amount) == off


@given(rules("discount"), st.data())
def test_a_discount_with_a_threshold_applies_only_from_it(rule, data):
    if rule.threshold:
        below = data.draw(st.integers(0, rule.threshold - 1))
        assert not cr.applies(rule, below) and cr.discount(rule, below) == 0


@given(rules("gift"), amounts)
def test_gifts_take_nothing_off(rule, amount):
    assert cr.discount(rule, amount) == 0
    assert cr.applies(rule, None) is True  # a gift needs no amount


@given(st.lists(rules(), min_size=0, max_size=6), amounts)
def test_combined_discount_never_exceeds_the_amount(rule_list, amount):
    total = cr.combined_discount(rule_list, amount)
    each = [cr.discount(r, amount) for r in rule_list]
    assert 0 <= total <= max(amount, 0)
    assert total == min(amount, sum(each))  # each checked against the whole purchase


def test_combined_discount_checks_each_threshold_against_the_purchase():
    cut30 = Rule("threshold", amount_off=3000, threshold=20000)
    cut20 = Rule("threshold", amount_off=2000, threshold=10000)
    assert cr.combined_discount([cut30, cut20], 15000) == 2000  # only 满100减20 reaches
    assert cr.combined_discount([cut30, cut20], 20000) == 5000
    assert cr.combined_discount([Rule("amount_off", amount_off=3000)] * 3, 5000) == 5000


# --- codes ---

def test_new_codes_are_always_valid_and_differ():
    codes = [cr.new_code() for _ in range(5000)]
    assert all(CODE_RE.fullmatch(code) and cr.is_valid_code(code) for code in codes)
    assert len(set(codes)) == len(codes)


@given(bodies, st.data())
def test_any_single_substitution_is_caught(body, data):
    code = with_check(body)
    position = data.draw(st.integers(0, BODY_LENGTH))
    other = data.draw(st.sampled_from([c for c in ALPHABET if c != code[position]]))
    assert not cr.is_valid_code(code[:position] + other + code[position + 1:])


def test_every_single_substitution_of_one_code_is_caught():
    code = with_check("7K2M9QX4A")
    for position, other in itertools.product(range(BODY_LENGTH + 1), ALPHABET):
        if other != code[position]:
            assert not cr.is_valid_code(code[:position] + other + code[position + 1:]), (
                position, other)


def swap(code: str, i: int) -> str:
    return code[:i] + code[i + 1] + code[i] + code[i + 2:]


# Luhn mod N: a character worth v adds v in one position and (2v // N + 2v % N) in its
# neighbour's, so swapping neighbours a, b goes unseen exactly when g(a) == g(b) with
# g(v) = v for v < N/2 and v + 1 (mod N) above: only the first and the last character of the
# alphabet ('2' and 'Z') collide. Every other adjacent transposition is caught.
BLIND_PAIR = {ALPHABET[0], ALPHABET[-1]}


@given(bodies, st.data())
def test_adjacent_transpositions_are_caught_except_2_and_z(body, data):
    code = with_check(body)
    i = data.draw(st.integers(0, BODY_LENGTH - 1))  # i and i+1: the check character too
    if code[i] == code[i + 1]:
        return
    assert cr.is_valid_code(swap(code, i)) == ({code[i], code[i + 1]} == BLIND_PAIR)


def test_adjacent_transpositions_exhaustively():
    """Every pair of different characters in every body position, and with the check char."""
    caught = missed = 0
    filler = "ABCDEFGHJ"
    for i in range(BODY_LENGTH - 1):
        for a, b in itertools.permutations(ALPHABET, 2):
            code = with_check(filler[:i] + a + b + filler[i + 2:])
            if cr.is_valid_code(swap(code, i)):
                assert {a, b} == BLIND_PAIR
                missed += 1
            else:
                caught += 1
    assert missed == 2 * (BODY_LENGTH - 1)  # "2Z" and "Z2" in each body position
    assert caught == (N * (N - 1) - 2) * (BODY_LENGTH - 1)
    # The last body character swapped with the check character.
    for last in ALPHABET:
        code = with_check(filler[:-1] + last)
        if code[-1] != code[-2]:
            assert cr.is_valid_code(swap(code, BODY_LENGTH - 1)) == (
                {code[-2], code[-1]} == BLIND_PAIR)


def test_the_blind_pair_really_is_blind():
    code = with_check("2Z" + "A" * (BODY_LENGTH - 2))
    assert cr.is_valid_code(code) and cr.is_valid_code(swap(code, 0))


@given(bodies, st.data())
def test_look_alikes_are_never_valid(body, data):
    code = with_check(body)
    position = data.draw(st.integers(0, BODY_LENGTH))
    look_alike = data.draw(st.sampled_from("0O1Io"))
    assert not cr.is_valid_code(code[:position] + look_alike + code[position + 1:])
    assert not cr.is_valid_code(cr.normalize_code(code[:position] + look_alike
                                                  + code[position + 1:]))


@given(bodies)
def test_wrong_lengths_are_invalid(body):
    code = with_check(body)
    assert not cr.is_valid_code(code[:-1])
    assert not cr.is_valid_code(code + code[-1])
    assert not cr.is_valid_code("")


@given(bodies, st.lists(st.sampled_from([" ", "-", "  ", "- "]), min_size=BODY_LENGTH + 2,
                        max_size=BODY_LENGTH + 2), st.lists(st.booleans(), min_size=10,
                                                            max_size=10))
def test_normalize_folds_case_and_drops_spaces_and_dashes(body, separators, lower):
    code = with_check(body)
    typed = separators[0] + "".join(
        (ch.lower() if low else ch) + sep
        for ch, low, sep in zip(code, lower, separators[1:], strict=True))
    assert cr.normalize_code(typed) == code
    assert cr.is_valid_code(cr.normalize_code(typed))


def test_normalize_examples():
    assert cr.normalize_code("cp7k-2m9q x4") == "CP7K2M9QX4"
    assert cr.normalize_code("ab_cd") == "ABCD"
    assert cr.normalize_code("o0-i1") == "O0I1"  # look-alikes are not guessed at


def test_needs_amount_when_the_amount_decides_use_or_discount():
    kinds = cr.CouponKind
    assert cr.needs_amount(cr.Rule(kinds.THRESHOLD, 3000, threshold=20000))
    assert cr.needs_amount(cr.Rule(kinds.DISCOUNT, discount_percent=88,
                                                       cap=10000))
    assert cr.needs_amount(cr.Rule(kinds.DISCOUNT, discount_percent=88,
                                                       threshold=10000))
    assert not cr.needs_amount(cr.Rule(kinds.DISCOUNT, discount_percent=88))
    assert not cr.needs_amount(cr.Rule(kinds.AMOUNT_OFF, 2000))
    assert not cr.needs_amount(cr.Rule(kinds.GIFT, gift="护理"))
