"""Coupon arithmetic and coupon codes. Pure functions.

Kinds: amount_off (减20), threshold (满200减30), discount (8.8折, optional cap),
gift (赠送护理一次).
Any kind can also be bought with points (points_cost > 0): that is what 兑换 lists.

Codes are 9 random characters from an alphabet without look-alikes (no 0/O, 1/I) and a check
character (Luhn mod 32, rules/check_characters), so a single mistyped character, or two swapped
neighbours (all but 2↔Z, the one pair Luhn mod N cannot tell apart), is caught before any
lookup.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from enum import StrEnum

from bot.rules.check_characters import check_character, has_valid_check

ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"  # 32 characters
BODY_LENGTH = 9


class CouponKind(StrEnum):
    AMOUNT_OFF = "amount_off"  # 减20
    THRESHOLD = "threshold"  # 满200减30
    DISCOUNT = "discount"  # 8.8折
    GIFT = "gift"  # 赠送护理一次


KINDS = tuple(CouponKind)


@dataclass(frozen=True)
class Rule:
    kind: CouponKind
    amount_off: int = 0  # fen
    threshold: int = 0  # fen; the purchase must reach it
    discount_percent: int = 100  # 88 = 8.8折
    cap: int = 0  # fen; 0 = no cap on a discount
    gift: str = ""


def applies(rule: Rule, amount: int | None) -> bool:
    """Whether the coupon can be used on a purchase of `amount` fen (None: not said)."""
    if amount is None:
        return rule.threshold == 0 or rule.kind == CouponKind.GIFT
    return amount >= rule.threshold


def needs_amount(rule: Rule) -> bool:
    """Whether the till must know the purchase amount before using the coupon: a threshold
    decides whether it may be used at all, a cap how much a discount takes off. (A plain
    amount off, a plain percentage and a gift can be applied as printed.)"""
    if rule.kind == CouponKind.GIFT:
        return False
    return rule.threshold > 0 or (rule.kind == CouponKind.DISCOUNT and rule.cap > 0)


def discount(rule: Rule, amount: int) -> int:
    """Fen taken off a purchase of `amount`: never negative, never more than the amount, zero
    below the threshold; a percentage discount rounds in the customer's favour to the fen."""
    if amount <= 0 or not applies(rule, amount):
        return 0
    if rule.kind in (CouponKind.AMOUNT_OFF, CouponKind.THRESHOLD):
        off = rule.amount_off
    elif rule.kind == CouponKind.DISCOUNT:
        off = amount - (amount * rule.discount_percent) // 100
        if rule.cap:
            off = min(off, rule.cap)
    else:
        off = 0
    return max(0, min(off, amount))


def combined_discount(rules: list[Rule], amount: int) -> int:
    """Several coupons on one purchase: each is checked against the purchase amount, their
    discounts add up, and together they never exceed the amount."""
    return min(amount, sum(discount(rule, amount) for rule in rules))


def new_code() -> str:
    body = "".join(secrets.choice(ALPHABET) for _ in range(BODY_LENGTH))
    return body + check_character(body, ALPHABET)


def normalize_code(text: str) -> str:
    """Fold case and drop the separators people type (spaces, dashes). Look-alikes are not
    guessed at: 0, O, 1 and I are not in the alphabet, so such a code fails the check."""
    return "".join(ch for ch in text.upper() if ch not in " -_")


def is_valid_code(code: str) -> bool:
    return len(code) == BODY_LENGTH + 1 and has_valid_check(code, ALPHABET)
