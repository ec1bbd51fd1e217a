import calendar
import datetime as dt

from hypothesis import given
from hypothesis import strategies as st

from bot.rules.birthdays import birthdays_on, celebrated_on

# Every month/day a member can give (registration checks a year-less date against a leap year).
BIRTHDAYS = st.dates(dt.date(2000, 1, 1), dt.date(2000, 12, 31)).map(lambda d: (d.month, d.day))
YEARS = st.integers(1901, 2399)


def test_29_february_is_celebrated_on_28_february_outside_leap_years():
    assert celebrated_on(2, 29, 2028) == dt.date(2028, 2, 29)
    assert celebrated_on(2, 29, 2027) == dt.date(2027, 2, 28)
    assert celebrated_on(2, 29, 2100) == dt.date(2100, 2, 28)  # not a leap year
    assert celebrated_on(2, 29, 2000) == dt.date(2000, 2, 29)  # a leap year


def test_28_february_celebrates_both_days_only_outside_leap_years():
    assert birthdays_on(dt.date(2027, 2, 28)) == (2, (28, 29))
    assert birthdays_on(dt.date(2028, 2, 28)) == (2, (28,))
    assert birthdays_on(dt.date(2028, 2, 29)) == (2, (29,))
    assert birthdays_on(dt.date(2027, 3, 1)) == (3, (1,))  # not 1 March


@given(BIRTHDAYS, YEARS)
def test_every_birthday_is_celebrated_on_exactly_one_day_of_every_year(birthday, year):
    month, day = birthday
    celebrating = [d for d in (dt.date(year, 1, 1) + dt.timedelta(days=n)
                               for n in range(366 if calendar.isleap(year) else 365))
                   if birthday in _pairs(d)]
    assert celebrating == [celebrated_on(month, day, year)]


@given(st.dates(dt.date(1901, 1, 1), dt.date(2399, 12, 31)), BIRTHDAYS)
def test_a_day_celebrates_a_birthday_exactly_when_that_birthday_falls_on_it(today, birthday):
    assert (birthday in _pairs(today)) == (celebrated_on(*birthday, today.year) == today)
    month, days = birthdays_on(today)
    assert month == today.month and today.day in days


def _pairs(day: dt.date) -> set[tuple[int, int]]:
    month, days = birthdays_on(day)
    return {(month, d) for d in days}
