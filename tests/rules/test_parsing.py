"""Pure functions: what people type (phones, birthdays, codes), card numbers, the phone vault,
tiers and the router's filters. No I/O, no event loop except for the router."""

from __future__ import annotations

import base64
import datetime as dt
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from bot.chat.routing import ANY_STATE, NO_DIALOG, Router, SkipHandler
from bot.config import load_config
from bot.infra.vault import Vault, mask_phone, new_data_key
from bot.notifications.replies import Text
from bot.rules.cards import card_number, is_valid_card_number
from bot.rules.check_characters import DIGITS, check_character
from bot.rules.parsing import (
    BadBirthday,
    Birthday,
    name_problem,
    normalize_phone,
    parse_birthday,
    parse_code,
    read_birthday,
)
from bot.rules.tiers import progress, tier_for

FAST = settings(max_examples=200, deadline=None)
ASCII_MOBILE = re.compile(r"1[3-9][0-9]{9}")
TODAY = dt.date(2025, 6, 15)
CONFIG = load_config(Path(__file__).resolve().parents[2] / "config.toml", environ={})
TIERS = CONFIG.tiers

mobiles = st.builds(
    lambda second, rest: f"1{second}{rest}",
    st.sampled_from("3456789"),
    st.text("0123456789", min_size=9, max_size=9),
)


# --- normalize_phone ---

@pytest.mark.parametrize("text", [
    "13800138000",
    "+86 138 0013 8000",
    "86-138-0013-8000",
    "0086 13800138000",
    "１３８００１３８０００",  # full-width digits from a Chinese IME
    "＋８６ １３８ ００１３ ８０００",
    "(+86) 138-0013-8000",
    "  13800138000\n",
])
def test_normalize_phone_accepts(text):
    assert normalize_phone(text) == "13800138000"


@pytest.mark.parametrize("text", [
    "138001380001",  # 12 digits
    "1380013800",  # 10 digits
    "12800138000",  # second digit 2
    "10800138000",
    "010-12345678",  # Beijing landline
    "0755-1234567",
    "021 6888 8888",
    "1380013800a",
    "abc",
    "phone",
    "",
    "   ",
    "+1 138 0013 8000",
    "8813800138000",
])
def test_normalize_phone_rejects(text):
    assert normalize_phone(text) is None


@FAST
@given(
    mobile=mobiles,
    prefix=st.sampled_from(["", "+86", "86", "0086"]),
    separators=st.lists(st.tuples(st.integers(0, 20), st.sampled_from([" ", "-", "  ", " - "])),
                        max_size=6),
)
def test_every_decoration_of_a_mobile_normalises_back(mobile, prefix, separators):
    decorated = prefix + mobile
    for position, separator in separators:
        at = position % (len(decorated) + 1)
        decorated = decorated[:at] + separator + decorated[at:]
    assert normalize_phone(decorated) == mobile


@FAST
@given(st.text(max_size=24))
@example("13800138٠٠٠")  # Arabic-Indic digits match Python's Unicode \d
@example("１３８００１３８０００")
@example("+86 13800138000")
def test_normalize_phone_returns_only_ascii_mobiles(text):
    result = normalize_phone(text)
    assert result is None or ASCII_MOBILE.fullmatch(result), result


@FAST
@given(st.text(alphabet="0123456789+-() ０１２３４５６７８９", max_size=20))
def test_normalize_phone_on_digit_soup_is_none_or_a_mobile(text):
    result = normalize_phone(text)
    assert result is None or ASCII_MOBILE.fullmatch(result)


# --- parse_birthday ---

@pytest.mark.parametrize(("text", "expected"), [
    ("1990-05-01", Birthday(5, 1, 1990)),
    ("1990/5/1", Birthday(5, 1, 1990)),
    ("1990.5.1", Birthday(5, 1, 1990)),
    ("19900501", Birthday(5, 1, 1990)),
    ("1990年5月1日", Birthday(5, 1, 1990)),
    ("1990年05月01日", Birthday(5, 1, 1990)),
    ("１９９０－０５－０１", Birthday(5, 1, 1990)),
    (" 1990 年 5 月 1 日 ", Birthday(5, 1, 1990)),
    ("5月1日", Birthday(5, 1)),
    ("5月1", Birthday(5, 1)),
    ("0501", Birthday(5, 1)),
    ("05-01", Birthday(5, 1)),
    ("5-1", Birthday(5, 1)),
    ("5/1", Birthday(5, 1)),
    ("12月31日", Birthday(12, 31)),
    ("2月29日", Birthday(2, 29)),  # no year: a leap day is possible
    ("0229", Birthday(2, 29)),
    ("2000-02-29", Birthday(2, 29, 2000)),
    ("2025-06-15", Birthday(6, 15, 2025)),  # today itself
    ("1905-01-01", Birthday(1, 1, 1905)),  # exactly 120 years back
])
def test_parse_birthday_accepts(text, expected):
    assert parse_birthday(text, TODAY) == expected


@pytest.mark.parametrize("text", [
    "1990-02-29",  # 1990 is not a leap year
    "1900-02-29",  # nor is 1900
    "2月30日",
    "2月31日",
    "4月31日",
    "13月1日",
    "1990-13-01",
    "1990-00-10",
    "1990-05-00",
    "1990-05-32",
    "00-00",
    "0000",
    "0000-01-01",
    "2025-06-16",  # tomorrow
    "2030-01-01",
    "20991231",
    "1904-12-31",  # more than 120 years back
    "1800-01-01",
    "hello",
    "",
    "5月",
    "1990",
    "199051",
    "1990-5",
    "32",
])
def test_parse_birthday_rejects(text):
    assert parse_birthday(text, TODAY) is None


@pytest.mark.parametrize("text, reason", [
    ("2月30日", BadBirthday.NO_SUCH_DATE),
    ("0230", BadBirthday.NO_SUCH_DATE),
    ("1990-02-29", BadBirthday.NO_SUCH_DATE),
    ("13月1日", BadBirthday.NO_SUCH_DATE),
    ("1990-05-32", BadBirthday.NO_SUCH_DATE),
    ("2025-06-16", BadBirthday.NOT_PLAUSIBLE),  # tomorrow
    ("1800-01-01", BadBirthday.NOT_PLAUSIBLE),
    ("5月", BadBirthday.FORMAT),
    ("hello", BadBirthday.FORMAT),
    ("1990-5", BadBirthday.FORMAT),
])
def test_a_refused_birthday_says_why(text, reason):
    with pytest.raises(BadBirthday) as refused:
        read_birthday(text, TODAY)
    assert refused.value.reason == reason


@pytest.mark.parametrize("text, problem", [
    ("王小明", None), ("Anna-Lee", None), ("O'Brien", None), ("小李 2", None),
    ("12345", "digits"), ("１２３", "digits"), ("🙂🙂", "characters"), ("<b>王</b>", "characters"),
    ("王" * 21, "length"), ("　", "length"), ("", "length"),
])
def test_what_a_name_may_contain(text, problem):
    assert name_problem(text) == problem


def test_birthday_renders_in_chinese():
    assert str(Birthday(5, 1, 1990)) == "1990年5月1日"
    assert str(Birthday(2, 29)) == "2月29日"


@FAST
@given(st.dates(min_value=dt.date(1907, 1, 1), max_value=TODAY))
def test_real_dates_round_trip(day):
    expected = Birthday(day.month, day.day, day.year)
    for text in (f"{day:%Y-%m-%d}", f"{day.year}/{day.month}/{day.day}", f"{day:%Y%m%d}",
                 f"{day.year}年{day.month}月{day.day}日"):
        assert parse_birthday(text, TODAY) == expected, text


@FAST
@given(today=st.dates(min_value=dt.date(1990, 1, 1), max_value=dt.date(2100, 12, 31)),
       data=st.data())
def test_round_trip_holds_for_any_today(today, data):
    day = data.draw(st.dates(min_value=dt.date(today.year - 120, 1, 1), max_value=today))
    assert parse_birthday(f"{day:%Y-%m-%d}", today) == Birthday(day.month, day.day, day.year)
    later = today + dt.timedelta(days=data.draw(st.integers(1, 4000)))
    assert parse_birthday(f"{later:%Y-%m-%d}", today) is None
    too_old = data.draw(st.dates(min_value=dt.date(1000, 1, 1),
                                 max_value=dt.date(today.year - 121, 12, 31)))
    assert parse_birthday(f"{too_old:%Y-%m-%d}", today) is None


@FAST
@given(st.dates(min_value=dt.date(2000, 1, 1), max_value=dt.date(2000, 12, 31)))
def test_every_month_day_without_a_year_is_accepted(day):
    # 2000 is a leap year, so this walks every calendar day including 2月29日.
    assert parse_birthday(f"{day.month}月{day.day}日", TODAY) == Birthday(day.month, day.day)
    assert parse_birthday(f"{day:%m%d}", TODAY) == Birthday(day.month, day.day)


@FAST
@given(st.text(max_size=20))
def test_parse_birthday_never_raises_and_returns_a_real_date(text):
    result = parse_birthday(text, TODAY)
    if result is not None:
        dt.date(result.year or 2000, result.month, result.day)
        if result.year is not None:
            assert dt.date(result.year, result.month, result.day) <= TODAY


# --- parse_code ---

@pytest.mark.parametrize(("text", "expected"), [
    ("123456", "123456"),
    (" 123 456 ", "123456"),
    ("１２３４５６", "123456"),
    ("１２３ ４５６", "123456"),
    ("000000", "000000"),
])
def test_parse_code_accepts(text, expected):
    assert parse_code(text) == expected


@pytest.mark.parametrize("text", ["12345", "1234567", "12345a", "abcdef", "", "12-3456",
                                  "验证码123456"])
def test_parse_code_rejects(text):
    assert parse_code(text) is None


def test_parse_code_length_is_configurable():
    assert parse_code("1234", length=4) == "1234"
    assert parse_code("123456", length=4) is None


# --- card numbers ---

prefixes = st.text("0123456789", min_size=1, max_size=4)
serials = st.integers(0, 10**7 - 1)


def _luhn_ok(number: str) -> bool:
    """The textbook check, written independently of bot.rules.cards: from the right, double every
    second digit, subtract 9 from results over 9, and the total must end in 0."""
    total = 0
    for index, char in enumerate(reversed(number)):
        digit = int(char) * (2 if index % 2 else 1)
        total += digit - 9 if digit > 9 else digit
    return total % 10 == 0


def test_card_number_shape():
    number = card_number("88", 1)
    assert number == "8800000013"
    assert _luhn_ok(number) and is_valid_card_number(number)
    # The module docstring's example, 8800000018, fails the textbook Luhn check.
    assert not _luhn_ok("8800000018")


@FAST
@given(prefixes, serials)
def test_card_numbers_are_valid(prefix, serial):
    number = card_number(prefix, serial)
    assert number.startswith(prefix)
    assert len(number) == len(prefix) + 8
    assert _luhn_ok(number) and is_valid_card_number(number)


@FAST
@given(prefixes, serials)
def test_every_single_digit_typo_is_caught(prefix, serial):
    number = card_number(prefix, serial)
    for position, original in enumerate(number):
        for digit in "0123456789":
            if digit != original:
                typo = number[:position] + digit + number[position + 1:]
                assert not is_valid_card_number(typo), (number, typo)


@FAST
@given(prefixes, serials)
def test_adjacent_swaps_are_caught_except_09(prefix, serial):
    number = card_number(prefix, serial)
    for position in range(len(number) - 1):
        a, b = number[position], number[position + 1]
        if a == b:
            continue
        swapped = number[:position] + b + a + number[position + 2:]
        if {a, b} == {"0", "9"}:
            # Luhn's one blind spot: 09 <-> 90 keeps the checksum.
            assert is_valid_card_number(swapped), (number, swapped)
        else:
            assert not is_valid_card_number(swapped), (number, swapped)


def test_the_09_blind_spot_exists():
    # A concrete instance, so the exception above is not vacuous.
    for serial in range(1000):
        number = card_number("88", serial)
        index = number.find("09")
        if index >= 0:
            swapped = number[:index] + "90" + number[index + 2:]
            assert is_valid_card_number(swapped)
            return
    pytest.fail("no card number containing 09 among the first 1000 serials")


@pytest.mark.parametrize("text", ["", "1", "12", "abc", "8800000019", "88000000l8", " 8800000018",
                                  "8800000018 "])
def test_invalid_card_numbers(text):
    assert not is_valid_card_number(text)


@FAST
@given(st.text(max_size=12))
@example("²12")  # str.isdigit() is True for superscripts, int() is not
@example("١٢٣")
def test_is_valid_card_number_never_raises(text):
    assert is_valid_card_number(text) in (True, False)


@FAST
@given(st.text("0123456789", min_size=3, max_size=19))
def test_is_valid_card_number_is_the_textbook_luhn_check(number):
    assert is_valid_card_number(number) == _luhn_ok(number)


def test_luhn_digit_known_values():
    assert check_character("7992739871", DIGITS) == "3"  # the textbook example
    assert check_character("0", DIGITS) == "0"


# --- the vault ---

phones = st.one_of(mobiles, st.text(max_size=40))


@pytest.fixture(scope="module")
def vault() -> Vault:
    return Vault(base64.b64decode(new_data_key()))


@FAST
@given(phones)
def test_encrypt_decrypt_round_trip(vault, phone):
    assert vault.decrypt(vault.encrypt(phone)) == phone


@FAST
@given(mobiles)
def test_ciphertexts_differ_and_hide_the_phone(vault, phone):
    first, second = vault.encrypt(phone), vault.encrypt(phone)
    assert first != second  # random nonce
    assert phone not in first
    assert first.startswith(f"v1.{vault.key_id}:")


@FAST
@given(mobiles)
def test_lookup_hash_is_deterministic_and_keyed(vault, phone):
    other = Vault(base64.b64decode(new_data_key()))
    assert vault.lookup_hash(phone) == vault.lookup_hash(phone)
    assert vault.lookup_hash(phone) != other.lookup_hash(phone)
    assert phone not in vault.lookup_hash(phone)


def test_lookup_hash_separates_phones(vault):
    assert vault.lookup_hash("13800138000") != vault.lookup_hash("13800138001")
    assert vault.code_hash("h", "123456") != vault.code_hash("h", "123457")


def test_another_key_cannot_decrypt(vault):
    token = vault.encrypt("13800138000")
    other = Vault(base64.b64decode(new_data_key()))
    with pytest.raises(ValueError):
        other.decrypt(token)


@FAST
@given(phone=mobiles, data=st.data())
def test_tampered_ciphertext_is_refused(vault, phone, data):
    header, _, body = vault.encrypt(phone).partition(":")
    raw = bytearray(base64.b64decode(body))
    index = data.draw(st.integers(0, len(raw) - 1))
    raw[index] ^= 1 << data.draw(st.integers(0, 7))
    with pytest.raises(ValueError, match="does not match"):
        vault.decrypt(f"{header}:{base64.b64encode(bytes(raw)).decode()}")


@pytest.mark.parametrize("token", ["", "v2:AAAA", "garbage", "v1:", "v1:AAAA", "v1:!!!!",
                                   "v1.{id}:", "v1.{id}:AAAA", "v1.{id}:!!!!", "v1.0000dead:AAAA"])
def test_malformed_ciphertext_is_refused(vault, token):
    with pytest.raises(ValueError):
        vault.decrypt(token.format(id=vault.key_id))


def test_truncated_ciphertext_is_refused(vault):
    header, _, body = vault.encrypt("13800138000").partition(":")
    raw = base64.b64decode(body)
    with pytest.raises(ValueError, match="does not match"):
        vault.decrypt(f"{header}:{base64.b64encode(raw[:-1]).decode()}")


def test_a_vault_with_the_previous_key_reads_old_rows_and_finds_old_hashes():
    old_key, new_key = base64.b64decode(new_data_key()), base64.b64decode(new_data_key())
    old, rotating = Vault(old_key), Vault(new_key, [old_key])
    sealed = old.encrypt("13800138000")
    assert rotating.decrypt(sealed) == "13800138000"
    assert old.lookup_hash("13800138000") in rotating.lookup_hashes("13800138000")
    assert rotating.lookup_hash("13800138000") != old.lookup_hash("13800138000")
    assert rotating.key_id_of(rotating.encrypt("x")) == rotating.key_id != old.key_id
    with pytest.raises(ValueError, match="does not hold"):
        Vault(new_key).decrypt(sealed)


@pytest.mark.parametrize("size", [0, 16, 31, 33])
def test_vault_wants_a_32_byte_key(size):
    with pytest.raises(ValueError):
        Vault(b"k" * size)


def test_mask_phone():
    assert mask_phone("13800138000") == "138****8000"
    assert mask_phone("123") == "***"


# --- tiers (config.toml's four) ---

spends = st.integers(-10**6, 10**9)  # fen


def _index(name: str) -> int:
    return [t.name for t in TIERS].index(name)


def test_config_tiers_are_the_ones_assumed():
    assert [(t.name, t.min_spend) for t in TIERS] == [
        ("普通会员", 0), ("银卡会员", 1000), ("金卡会员", 5000), ("钻石会员", 20000)]


@pytest.mark.parametrize(("spend_fen", "tier"), [
    (-1, "普通会员"), (0, "普通会员"), (99_999, "普通会员"), (100_000, "银卡会员"),
    (499_999, "银卡会员"), (500_000, "金卡会员"), (2_000_000, "钻石会员"), (10**10, "钻石会员"),
])
def test_tier_thresholds(spend_fen, tier):
    assert tier_for(TIERS, spend_fen) == tier


@FAST
@given(spends, spends)
def test_tier_for_is_monotonic(a, b):
    low, high = sorted((a, b))
    assert _index(tier_for(TIERS, low)) <= _index(tier_for(TIERS, high))


@FAST
@given(spends)
def test_progress_from_the_reached_tier(spend):
    current = tier_for(TIERS, spend)
    step = progress(TIERS, current, spend)
    index = _index(current)
    assert step.current == current
    if index == len(TIERS) - 1:
        assert step.next is None and step.remaining_fen == 0
    else:
        following = TIERS[index + 1]
        assert step.next == following.name
        assert step.remaining_fen == following.min_spend * 100 - spend > 0


@FAST
@given(st.sampled_from([t.name for t in TIERS]), spends)
def test_progress_for_any_stored_tier(current, spend):
    step = progress(TIERS, current, spend)
    index = _index(current)
    if index == len(TIERS) - 1:
        assert step.next is None and step.remaining_fen == 0
        return
    following = TIERS[index + 1]
    assert step.next == following.name
    if spend < following.min_spend * 100:
        assert step.remaining_fen == following.min_spend * 100 - spend > 0
    else:
        assert step.remaining_fen == 0


def test_progress_with_an_unknown_tier_name_starts_at_the_bottom():
    assert progress(TIERS, "已删除的等级", 0).next == "银卡会员"


# --- routing ---

def _ctx(kind: str = "text", text: str = "", state: str | None = None):
    return SimpleNamespace(inbound=SimpleNamespace(kind=kind, text=text),
                           dialog=SimpleNamespace(state=state, data={}), text=text)


def _answer(label: str):
    async def handler(ctx) -> Text:
        return Text(label)

    return handler


async def test_router_state_filters():
    router = Router("t")
    router.text("积分", state=NO_DIALOG)(_answer("idle"))
    router.text("取消", state="reg.*")(_answer("cancel"))
    router.text("帮助", state=ANY_STATE)(_answer("help"))
    router.text("继续", state=("reg.resume", NO_DIALOG))(_answer("resume"))

    assert await router.dispatch(_ctx(text="积分")) == Text("idle")
    assert await router.dispatch(_ctx(text="积分", state="reg.phone")) is None
    assert await router.dispatch(_ctx(text="取消", state="reg.phone")) == Text("cancel")
    assert await router.dispatch(_ctx(text="取消", state="reg.resume")) == Text("cancel")
    assert await router.dispatch(_ctx(text="取消")) is None
    assert await router.dispatch(_ctx(text="取消", state="region")) is None
    assert await router.dispatch(_ctx(text="取消", state="reg")) is None
    assert await router.dispatch(_ctx(text="取消", state="other.step")) is None
    for state in (None, "reg.phone", "other"):
        assert await router.dispatch(_ctx(text="帮助", state=state)) == Text("help")
    assert await router.dispatch(_ctx(text="继续", state="reg.resume")) == Text("resume")
    assert await router.dispatch(_ctx(text="继续")) == Text("resume")
    assert await router.dispatch(_ctx(text="继续", state="reg.phone")) is None


async def test_router_first_match_wins_across_children():
    root, child, last = Router("root"), Router("child"), Router("last")
    child.text("积分")(_answer("child"))
    child.click("MY_CARD")(_answer("click"))
    last.fallback()(_answer("fallback"))
    root.include(child, last)
    root.text("积分")(_answer("first"))
    root.text("积分")(_answer("second"))
    # The root's own routes come before its children's, whatever the registration order.
    assert await root.dispatch(_ctx(text="积分")) == Text("first")
    assert await root.dispatch(_ctx(kind="click", text="MY_CARD")) == Text("click")
    # A text that spells a menu key is not a click.
    assert await root.dispatch(_ctx(text="MY_CARD")) == Text("fallback")
    assert await root.dispatch(_ctx(kind="image", state="reg.phone")) == Text("fallback")


async def test_skip_handler_continues_with_the_next_route():
    router = Router("t")
    seen = []

    async def declines(ctx):
        seen.append("declines")
        raise SkipHandler

    router.text("积分")(declines)
    router.command("积分")(_answer("command"))
    assert await router.dispatch(_ctx(text="积分")) == Text("command")
    assert seen == ["declines"]

    only = Router("only")
    only.text("积分")(declines)
    assert await only.dispatch(_ctx(text="积分")) is None


async def test_command_and_event_filters():
    router = Router("t")
    router.command("消费")(_answer("spend"))
    router.event("subscribe", "scan")(_answer("event"))
    router.message(state="reg.name", kinds=("text", "voice"))(_answer("step"))
    assert await router.dispatch(_ctx(text="消费 13800138000 12")) == Text("spend")
    assert await router.dispatch(_ctx(text="消费")) == Text("spend")
    assert await router.dispatch(_ctx(text="消费券")) is None
    assert await router.dispatch(_ctx(kind="scan")) == Text("event")
    assert await router.dispatch(_ctx(kind="voice", text="王", state="reg.name")) == Text("step")
    assert await router.dispatch(_ctx(kind="image", state="reg.name")) is None
    assert await router.dispatch(_ctx(text="王")) is None
