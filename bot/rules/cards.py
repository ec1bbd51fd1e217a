"""Card numbers: prefix + zero-padded serial + a Luhn check digit, e.g. 8800000013."""

from __future__ import annotations

SERIAL_DIGITS = 7


def luhn_digit(payload: str) -> str:
    total = 0
    for index, char in enumerate(reversed(payload)):
        digit = int(char)
        if index % 2 == 0:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return str((10 - total % 10) % 10)


def card_number(prefix: str, serial: int) -> str:
    payload = f"{prefix}{serial:0{SERIAL_DIGITS}d}"
    return payload + luhn_digit(payload)


def is_valid_card_number(text: str) -> bool:
    # isascii: str.isdigit() is also True for "²" or "١", which int() refuses or misreads.
    return (text.isascii() and text.isdigit() and len(text) >= 3
            and luhn_digit(text[:-1]) == text[-1])
