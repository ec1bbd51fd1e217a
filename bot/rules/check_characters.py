"""One check character for card numbers and coupon codes: Luhn mod N over an alphabet of N
characters (N even). Pure functions.

From the right, every second character's value is doubled and its digits summed in base N
(2v // N + 2v % N); the check character makes the total a multiple of N. With the decimal
digits this is the textbook Luhn digit of bank cards.

What it guarantees, for an even N: every single-character substitution is caught (doubling in
base N is a permutation of the values), and every transposition of two neighbours except the
first and the last character of the alphabet (0 and N-1: "09" and "90" for digits), whose
doubled values differ from the plain ones by the same amount.
"""

from __future__ import annotations

DIGITS = "0123456789"


def check_character(body: str, alphabet: str) -> str:
    """The character that completes `body` (every character in `alphabet`)."""
    n = len(alphabet)
    if n < 2 or n % 2:
        raise ValueError("Luhn mod N needs an alphabet of an even number of characters")
    total, factor = 0, 2
    for char in reversed(body):
        addend = factor * alphabet.index(char)
        factor = 1 if factor == 2 else 2
        total += addend // n + addend % n
    return alphabet[(n - total % n) % n]


def has_valid_check(text: str, alphabet: str) -> bool:
    """Whether the last character of `text` is the check character of the rest. Never raises:
    a character outside the alphabet makes it invalid."""
    return (len(text) >= 2 and all(char in alphabet for char in text)
            and check_character(text[:-1], alphabet) == text[-1])
