"""Reading the day and time a member types when booking (bot.rules.when). Pure, no I/O."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.rules.when import When, parse_day, parse_time, split_when

FAST = settings(max_examples=300, deadline=None)
TODAY = dt.date(2026, 12, 2)  # a Wednesday, in December so that dates wrap into 2027
D = dt.date
T = dt.time

# Characters the readers care about, so that random text reaches deep into them.
BOOKING_ALPHABET = (
    "0123456789０１２３-/.:：　 月日号年点半分钟整下午晚上中凌晨周星期礼拜一三六天今明后大这本个"
)
days_near_today = st.builds(
    lambda today, offset: (today, today + dt.timedelta(days=offset)),
    st.dates(min_value=D(2000, 1, 1), max_value=D(2100, 12, 31)),
    st.integers(min_value=-400, max_value=400),
)
times_on_a_minute = st.builds(dt.time, st.integers(0, 23), st.integers(0, 59))


# --- parse_day: words ---

@pytest.mark.parametrize(("text", "expected"), [
    ("今天", D(2026, 12, 2)),
    ("明天", D(2026, 12, 3)),
    ("后天", D(2026, 12, 4)),
    ("大后天", D(2026, 12, 5)),
])
def test_relative_days_count_from_today(text, expected):
    assert parse_day(text, TODAY) == expected


@pytest.mark.parametrize("text", ["周六", "星期六", "礼拜六"])
def test_next_weekday_is_this_coming_one(text):
    assert parse_day(text, TODAY) == D(2026, 12, 5)


@pytest.mark.parametrize("text", ["周日", "星期天", "星期日", "礼拜天"])
def test_sunday_has_several_names(text):
    assert parse_day(text, TODAY) == D(2026, 12, 6)


def test_next_weekday_counts_today():
    assert parse_day("周三", TODAY) == TODAY


def test_next_weekday_already_past_this_week_is_next_week():
    assert parse_day("周二", TODAY) == D(2026, 12, 8)


@pytest.mark.parametrize(("text", "expected"), [
    ("这周六", D(2026, 12, 5)),
    ("本周六", D(2026, 12, 5)),
    ("这个星期六", D(2026, 12, 5)),
    ("这周三", TODAY),
    ("本周日", D(2026, 12, 6)),
])
def test_this_week_means_the_current_iso_week(text, expected):
    assert parse_day(text, TODAY) == expected


@pytest.mark.parametrize("text", ["这周一", "本周二", "这星期一"])
def test_this_week_day_already_past_is_none(text):
    assert parse_day(text, TODAY) is None


@pytest.mark.parametrize(("text", "expected"), [
    ("下周一", D(2026, 12, 7)),
    ("下星期一", D(2026, 12, 7)),
    ("下个礼拜一", D(2026, 12, 7)),
    ("下周三", D(2026, 12, 9)),
    ("下周六", D(2026, 12, 12)),
    ("下周日", D(2026, 12, 13)),
])
def test_next_week_means_the_next_iso_week(text, expected):
    assert parse_day(text, TODAY) == expected


# --- parse_day: dates ---

@pytest.mark.parametrize("text", ["12月3日", "12月3号", "12-03", "12/3", "12.3", "12月03日"])
def test_month_day_later_this_year_is_this_year(text):
    assert parse_day(text, TODAY) == D(2026, 12, 3)


def test_month_day_today_is_today():
    assert parse_day("12月2日", TODAY) == TODAY


@pytest.mark.parametrize(("text", "expected"), [
    ("12月1日", D(2027, 12, 1)),
    ("1月5日", D(2027, 1, 5)),
    ("11/30", D(2027, 11, 30)),
])
def test_month_day_already_passed_is_next_year(text, expected):
    assert parse_day(text, TODAY) == expected


@pytest.mark.parametrize("text", ["2026-12-03", "2026年12月3日", "2026/12/3", "2026.12.3"])
def test_full_dates_are_read_as_typed(text):
    assert parse_day(text, TODAY) == D(2026, 12, 3)


def test_full_date_in_the_past_is_kept_for_the_caller_to_judge():
    assert parse_day("2025-01-01", TODAY) == D(2025, 1, 1)


@pytest.mark.parametrize(("text", "expected"), [
    ("3号", D(2026, 12, 3)),
    ("3日", D(2026, 12, 3)),
    ("2号", TODAY),
    ("1号", D(2027, 1, 1)),
    ("31号", D(2026, 12, 31)),
])
def test_day_of_month_is_this_month_or_next(text, expected):
    assert parse_day(text, TODAY) == expected


def test_day_of_month_missing_from_this_month_is_none():
    assert parse_day("31号", D(2026, 11, 15)) is None


@pytest.mark.parametrize("text", [
    "１２月３日", "12 月 3 日", "　12月3日　", "１２／３", "２０２６－１２－０３",
])
def test_full_width_digits_and_spaces_are_tolerated(text):
    assert parse_day(text, TODAY) == D(2026, 12, 3)


@pytest.mark.parametrize("text", [
    "2月30日", "13月1日", "0月1日", "2026-02-29", "0号", "32号", "4/31",
])
def test_dates_that_do_not_exist_are_none(text):
    assert parse_day(text, TODAY) is None


def test_february_29_is_read_only_in_a_leap_year():
    assert parse_day("2月29日", TODAY) is None  # it would be 2027
    assert parse_day("2月29日", D(2027, 12, 2)) == D(2028, 2, 29)


@pytest.mark.parametrize("text", [
    "", "   ", "明", "今", "周", "周八", "下下周一", "上周一", "3", "1203", "2026-12",
    "周六15:00", "明天下午", "hello", "١٢月٣日",  # Arabic-Indic digits are not ours
])
def test_anything_else_is_not_a_day(text):
    assert parse_day(text, TODAY) is None


# --- parse_time ---

@pytest.mark.parametrize(("text", "expected"), [
    ("15:00", T(15, 0)),
    ("15：00", T(15, 0)),
    ("９:３０", T(9, 30)),
    ("9:30", T(9, 30)),
    ("09:30", T(9, 30)),
    ("0:00", T(0, 0)),
    ("15点", T(15, 0)),
    ("15点半", T(15, 30)),
    ("15点30", T(15, 30)),
    ("15点30分", T(15, 30)),
    ("15点5分", T(15, 5)),
    ("15点钟", T(15, 0)),
    ("15点整", T(15, 0)),
    ("3点", T(3, 0)),
    ("12点", T(12, 0)),
    (" 15 : 00 ", T(15, 0)),
])
def test_clock_times_are_read(text, expected):
    assert parse_time(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("下午3点", T(15, 0)),
    ("下午3点半", T(15, 30)),
    ("下午3:30", T(15, 30)),
    ("下午 3 点", T(15, 0)),
    ("下午12点", T(12, 0)),
    ("下午15点", T(15, 0)),
    ("傍晚6点", T(18, 0)),
    ("晚上7点", T(19, 0)),
    ("晚上11点半", T(23, 30)),
    ("上午10点", T(10, 0)),
    ("早上9点", T(9, 0)),
    ("中午12点", T(12, 0)),
    ("中午1点", T(13, 0)),
    ("凌晨3点", T(3, 0)),
    ("凌晨12点", T(0, 0)),
])
def test_period_words_move_the_hour(text, expected):
    assert parse_time(text) == expected


@pytest.mark.parametrize("text", [
    "1500", "25:00", "24:00", "15:61", "15点60", "9:5", "15", "点", "下午", "半",
    "晚上12点",  # midnight is on the next day: asked again rather than guessed
    "15:00:00", "下午3点下午", "3pm", "", "١٥:٠٠",
])
def test_ambiguous_or_impossible_times_are_none(text):
    assert parse_time(text) is None


# --- split_when ---

@pytest.mark.parametrize(("words", "expected"), [
    (["洗剪吹", "明天", "15:00"], When(D(2026, 12, 3), T(15, 0), ["洗剪吹"])),
    (["烫发", "12月3日", "10:30", "小李"], When(D(2026, 12, 3), T(10, 30), ["烫发", "小李"])),
    (["瑜伽", "周六"], When(D(2026, 12, 5), None, ["瑜伽"])),
    (["洗剪吹", "明天下午3点"], When(D(2026, 12, 3), T(15, 0), ["洗剪吹"])),
    (["瑜伽", "周六10:30"], When(D(2026, 12, 5), T(10, 30), ["瑜伽"])),
    (["烫发", "12月3日15:00", "小李"], When(D(2026, 12, 3), T(15, 0), ["烫发", "小李"])),
])
def test_split_when_reads_the_example_lines(words, expected):
    assert split_when(words, TODAY) == expected


def test_split_when_keeps_only_the_first_day_and_time():
    when = split_when(["按摩", "明天", "15:00", "3号", "16:00"], TODAY)
    assert when == When(D(2026, 12, 3), T(15, 0), ["按摩", "3号", "16:00"])


def test_split_when_time_before_day_is_fine():
    assert split_when(["15:00", "明天"], TODAY) == When(D(2026, 12, 3), T(15, 0), [])


def test_split_when_never_cuts_inside_a_number():
    assert split_when(["剪发", "12月13点"], TODAY) == When(None, None, ["剪发", "12月13点"])


def test_split_when_with_no_words_finds_nothing():
    assert split_when([], TODAY) == When(None, None, [])


# --- properties ---

@FAST
@given(days_near_today)
def test_month_day_within_a_year_from_today_is_that_day(today_and_day):
    today, day = today_and_day
    read = parse_day(f"{day.month}月{day.day}日", today)
    if today <= day < today + dt.timedelta(days=365):
        assert read == day
    else:  # the same month and day, in the coming year (None for a 2月29日 that falls there)
        assert read is None or (
            (read.month, read.day) == (day.month, day.day)
            and today <= read < today + dt.timedelta(days=366)
        )


@FAST
@given(days_near_today)
def test_iso_dates_read_back(today_and_day):
    today, day = today_and_day
    assert parse_day(day.isoformat(), today) == day


@FAST
@given(st.dates())
def test_iso_dates_read_back_for_any_year(day):
    assert parse_day(day.isoformat(), TODAY) == day


@FAST
@given(times_on_a_minute)
def test_hh_mm_reads_back(time):
    assert parse_time(time.strftime("%H:%M")) == time


@FAST
@given(st.integers(1, 11))
def test_afternoon_adds_twelve_hours(hour):
    assert parse_time(f"下午{hour}点") == T(hour + 12, 0)


@FAST
@given(st.text() | st.text(BOOKING_ALPHABET), st.dates())
def test_readers_never_raise(text, today):
    day = parse_day(text, today)
    time = parse_time(text)
    assert day is None or isinstance(day, dt.date)
    assert time is None or isinstance(time, dt.time)


@FAST
@given(st.lists(st.text(BOOKING_ALPHABET, max_size=12) | st.text(max_size=12), max_size=5),
       st.dates())
def test_split_when_never_raises_and_loses_no_word(words, today):
    when = split_when(words, today)
    found = (when.day is not None) + (when.time is not None)
    assert len(words) - found <= len(when.rest) <= len(words)
    assert all(word in words for word in when.rest)


@pytest.mark.parametrize(("text", "expected"), [
    ("下午三点", dt.time(15)), ("三点半", dt.time(3, 30)), ("十点", dt.time(10)),
    ("晚上七点", dt.time(19)), ("两点", dt.time(2)), ("下午两点半", dt.time(14, 30)),
    ("十二点", dt.time(12)), ("二十点三十分", dt.time(20, 30)),
])
def test_times_written_in_chinese_numerals(text, expected):
    assert parse_time(text) == expected


def test_dates_written_in_chinese_numerals_and_weekdays_stay_weekdays():
    today = dt.date(2026, 12, 2)  # a Wednesday
    assert parse_day("十二月三日", today) == dt.date(2026, 12, 3)
    assert parse_day("十二月二十五号", today) == dt.date(2026, 12, 25)
    assert parse_day("三号", today) == dt.date(2026, 12, 3)
    assert parse_day("周三", today) == today
    assert parse_day("下周一", today) == dt.date(2026, 12, 7)
    assert split_when(["洗剪吹", "明天下午三点"], today) == When(
        dt.date(2026, 12, 3), dt.time(15), ["洗剪吹"])


def test_yesterday_and_the_day_before_look_back():
    today = dt.date(2026, 12, 2)
    assert parse_day("昨天", today) == dt.date(2026, 12, 1)
    assert parse_day("前天", today) == dt.date(2026, 11, 30)
