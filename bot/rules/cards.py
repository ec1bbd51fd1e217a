"""Card numbers: prefix + zero-padded serial + a Luhn check digit, e.g. 8800000013."""

from __future__ import annotations

from bot.rules.check_characters import DIGITS, check_character, has_valid_check

SERIAL_DIGITS = 7


def card_number(prefix: str, serial: int) -> str:
    payload = f"{prefix}{serial:0{SERIAL_DIGITS}d}"
    return payload + check_character(payload, DIGITS)


def is_valid_card_number(text: str) -> bool:
    # DIGITS, not str.isdigit(): that is also True for "²" or "١".
    return len(text) >= 3 and has_valid_check(text, DIGITS)
