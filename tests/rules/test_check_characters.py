"""The one check character (bot/rules/check_characters.py), for any even alphabet: what Luhn
mod N promises, and that card numbers and coupon codes issued before it still validate."""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.rules import cards, coupons
from bot.rules.check_characters import DIGITS, check_character, has_valid_check

# Alphabets of distinct characters, an even number of them (2 to 36).
alphabets = (st.lists(st.sampled_from(string.digits + string.ascii_uppercase), min_size=2,
                      max_size=36, unique=True)
             .filter(lambda chars: len(chars) % 2 == 0).map("".join))


@st.composite
def coded(draw) -> tuple[str, str]:
    """(alphabet, body + check character)."""
    alphabet = draw(alphabets)
    body = draw(st.text(alphabet, min_size=1, max_size=16))
    return alphabet, body + check_character(body, alphabet)


@given(coded())
def test_a_body_with_its_check_character_is_valid(case):
    alphabet, text = case
    assert has_valid_check(text, alphabet)


@given(coded(), st.data())
def test_every_single_substitution_is_caught(case, data):
    alphabet, text = case
    position = data.draw(st.integers(0, len(text) - 1))  # the check character too
    for other in alphabet:
        if other != text[position]:
            typo = text[:position] + other + text[position + 1:]
            assert not has_valid_check(typo, alphabet), (alphabet, text, typo)


@given(coded(), st.data())
def test_adjacent_transpositions_are_caught_but_for_the_first_and_last_character(case, data):
    alphabet, text = case
    i = data.draw(st.integers(0, len(text) - 2))
    a, b = text[i], text[i + 1]
    if a == b:
        return
    swapped = text[:i] + b + a + text[i + 2:]
    blind = {a, b} == {alphabet[0], alphabet[-1]}
    assert has_valid_check(swapped, alphabet) == blind, (alphabet, text, swapped)


@given(alphabets, st.text(string.digits, max_size=8))
def test_the_blind_pair_is_really_blind(alphabet, filler):
    """So the exception above is not vacuous: the first and last character swapped keep the
    check, wherever they stand."""
    body = "".join(alphabet[int(d) % len(alphabet)] for d in filler)
    for pair in (alphabet[0] + alphabet[-1], alphabet[-1] + alphabet[0]):
        text = body + pair
        text += check_character(text, alphabet)
        assert has_valid_check(text[:len(body)] + pair[::-1] + text[-1], alphabet)


def test_an_odd_alphabet_is_refused():
    # Doubling in an odd base is not a permutation: some substitutions would go unseen.
    with pytest.raises(ValueError, match="even"):
        check_character("12", "012")


@pytest.mark.parametrize("text", ["", "7", "8800000O13", "88000000l3", "²3", " 8800000013"])
def test_text_outside_the_alphabet_or_too_short_is_invalid_and_never_raises(text):
    assert not has_valid_check(text, DIGITS)


# Issued before the check character was shared (the two schemes' own code then): they must
# keep validating, and new ones must come out the same.
ISSUED_CARDS = {("88", 1): "8800000013", ("88", 1234567): "8812345679", ("6", 42): "600000426",
                ("8801", 9999999): "880199999991", ("88", 90): "8800000906"}
ISSUED_CODES = ["GRSAE47AHC", "FT3XZXSZEC", "T7ZG3KUYS6", "9J86SS85PH", "H7ZFB64ZE2",
                "BXWLQVAC8S"]


def test_card_numbers_issued_before_still_validate_and_come_out_the_same():
    for (prefix, serial), number in ISSUED_CARDS.items():
        assert cards.card_number(prefix, serial) == number
        assert cards.is_valid_card_number(number)


def test_coupon_codes_issued_before_still_validate():
    for code in ISSUED_CODES:
        assert coupons.is_valid_code(code)
        assert check_character(code[:-1], coupons.ALPHABET) == code[-1]


def test_card_and_coupon_alphabets_are_ones_the_scheme_covers():
    for alphabet in (DIGITS, coupons.ALPHABET):
        assert len(alphabet) % 2 == 0 and len(set(alphabet)) == len(alphabet)
