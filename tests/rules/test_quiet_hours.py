import datetime as dt
import zoneinfo

from hypothesis import given
from hypothesis import strategies as st

from bot.rules.quiet_hours import allowed, next_allowed

SHANGHAI = zoneinfo.ZoneInfo("Asia/Shanghai")
DAY = (dt.time(8), dt.time(21))


def at(hour: int, minute: int = 0, day: int = 1) -> dt.datetime:
    return dt.datetime(2026, 12, day, hour, minute, tzinfo=SHANGHAI).astimezone(dt.UTC)


def test_inside_the_window_sends_now():
    assert next_allowed(at(8), SHANGHAI, DAY) == at(8)
    assert next_allowed(at(20, 59), SHANGHAI, DAY) == at(20, 59)


def test_evening_waits_for_the_next_morning_and_early_morning_for_the_same_one():
    assert next_allowed(at(21), SHANGHAI, DAY) == at(8, day=2)
    assert next_allowed(at(23, 59), SHANGHAI, DAY) == at(8, day=2)
    assert next_allowed(at(0, 5), SHANGHAI, DAY) == at(8)
    assert not allowed(at(7, 59), SHANGHAI, DAY)


def test_a_window_over_midnight():
    night = (dt.time(22), dt.time(6))
    assert allowed(at(23), SHANGHAI, night) and allowed(at(5), SHANGHAI, night)
    assert next_allowed(at(12), SHANGHAI, night) == at(22)


@given(st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2100, 1, 1),
                    timezones=st.just(dt.UTC)),
       st.sampled_from([DAY, (dt.time(22), dt.time(6)), (dt.time(9, 30), dt.time(9, 45))]),
       st.sampled_from(["Asia/Shanghai", "Europe/Berlin", "America/New_York"]))
def test_the_answer_is_never_early_is_inside_and_is_within_a_day(now, window, zone):
    tz = zoneinfo.ZoneInfo(zone)
    when = next_allowed(now, tz, window)
    assert now <= when <= now + dt.timedelta(hours=25)
    assert allowed(when, tz, window)
