"""Which birthdays a day celebrates. Pure: the job asks, the database answers.

A birthday is a month and a day (the year is optional and plays no part). 29 February exists
only in leap years; in the other years it is celebrated on 28 February, so every member has
exactly one birthday a year.
"""

from __future__ import annotations

import calendar
import datetime as dt


def celebrated_on(month: int, day: int, year: int) -> dt.date:
    """The day in `year` on which a birthday of `month`/`day` is celebrated."""
    if (month, day) == (2, 29) and not calendar.isleap(year):
        return dt.date(year, 2, 28)
    return dt.date(year, month, day)


def birthdays_on(today: dt.date) -> tuple[int, tuple[int, ...]]:
    """(month, days): the birthdays celebrated on `today`, all in one month, so the query is
    `birth_month = month AND birth_day IN days` on the (birth_month, birth_day) index."""
    if (today.month, today.day) == (2, 28) and not calendar.isleap(today.year):
        return 2, (28, 29)
    return today.month, (today.day,)
