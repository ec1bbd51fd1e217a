"""The free-time rule: random opening hours, closures and bookings against a brute-force checker
that walks the day minute by minute, plus the edges a shop meets (closing time, "24:00", a
closure's boundary), the nearest free times and the choice of seat numbers."""

from __future__ import annotations

import datetime as dt
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.config import parse_closure, parse_ranges
from bot.rules import slots

DAY = dt.date(2031, 3, 12)
SHANGHAI = dt.timezone(dt.timedelta(hours=8))
ZONES = (SHANGHAI, dt.UTC, dt.timezone(dt.timedelta(hours=5, minutes=45)),
         dt.timezone(dt.timedelta(hours=-5)))
EARLY = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)


def clock(minute: int) -> dt.time:
    return dt.time.max if minute == slots.DAY_MINUTES else dt.time(minute // 60, minute % 60)


def text(ranges: list[tuple[int, int]]) -> str:
    """Ranges of minutes as config.toml writes them ("24:00" for midnight)."""
    def hhmm(m: int) -> str:
        return f"{m // 60:02d}:{m % 60:02d}"
    return ",".join(f"{hhmm(a)}-{hhmm(b)}" for a, b in ranges)


@st.composite
def day_ranges(draw, most: int) -> list[tuple[int, int]]:
    """Up to `most` ranges, in order, not overlapping, on 5-minute boundaries (so some open off
    the grid); "24:00" included."""
    bounds = draw(st.lists(st.integers(0, slots.DAY_MINUTES // 5), min_size=0,
                           max_size=2 * most, unique=True))
    bounds = sorted(b * 5 for b in bounds)
    if len(bounds) % 2:
        bounds = bounds[:-1]
    return list(zip(bounds[::2], bounds[1::2], strict=True))


CAPACITIES = st.integers(1, 3)


@st.composite
def calendars(draw, capacity=CAPACITIES) -> dict:
    step = draw(st.sampled_from((15, 30, 60)))
    minutes = step * draw(st.integers(1, 5))
    capacity = draw(capacity)
    tz = draw(st.sampled_from(ZONES))
    week = {weekday: draw(day_ranges(3)) for weekday in range(1, 8)}
    hours = week[DAY.isoweekday()]
    whole_day = draw(st.integers(0, 9)) == 0
    closures = [] if whole_day else draw(day_ranges(2))
    # Existing bookings of whole units, up to the capacity in every unit they cover.
    grid = slots.DAY_MINUTES // step
    taken: Counter = Counter()
    bookings = []
    for first, length in draw(st.lists(st.tuples(st.integers(0, grid - 1), st.integers(1, 5)),
                                       max_size=12)):
        covered = [slots.local_start(DAY, (first + k) * step, tz)
                   for k in range(min(length, grid - first))]
        if all(taken[u] < capacity for u in covered):
            taken.update(covered)
            bookings.append((covered[0], covered[-1] + dt.timedelta(minutes=step)))
    earliest = draw(st.one_of(
        st.just(EARLY),
        st.integers(0, slots.DAY_MINUTES).map(
            lambda m: dt.datetime.combine(DAY, dt.time(), tz).astimezone(dt.UTC)
            + dt.timedelta(minutes=m))))
    return {"step": step, "minutes": minutes, "capacity": capacity, "tz": tz,
            "hours": hours, "hours_text": text(hours), "whole_day": whole_day,
            "closures": closures, "taken": taken, "bookings": bookings, "earliest": earliest}


def offered(c: dict) -> list[slots.Free]:
    """free_starts as the service calls it: hours and closures as config.toml would read."""
    closures: list = [None] if c["whole_day"] else [
        parse_closure(f"{DAY} {text([r])}")[1] for r in c["closures"]]
    return slots.free_starts(day=DAY, hours=parse_ranges(c["hours_text"]), closures=closures,
                             taken=c["taken"], capacity=c["capacity"], minutes=c["minutes"],
                             step=c["step"], tz=c["tz"], earliest=c["earliest"])


def local_minute(start: dt.datetime, tz: dt.tzinfo) -> int:
    local = start.astimezone(tz)
    assert local.date() == DAY
    return local.hour * 60 + local.minute


def brute_force(c: dict) -> dict[dt.datetime, int]:
    """Every minute of the day, checked on its own: the starts a service may take, with the
    places left at the fullest minute it covers."""
    found = {}
    if c["whole_day"]:
        return found
    for m in range(slots.DAY_MINUTES):
        if m % c["step"]:
            continue
        end = m + c["minutes"]
        if not any(a <= m and end <= b for a, b in c["hours"]):
            continue
        if any(m < b and a < end for a, b in c["closures"]):
            continue
        start = slots.local_start(DAY, m, c["tz"])
        if start < c["earliest"]:
            continue
        fullest = max(c["taken"][start + dt.timedelta(minutes=k)]
                      for k in range(0, c["minutes"], c["step"]))
        if fullest < c["capacity"]:
            found[start] = c["capacity"] - fullest
    return found


@settings(max_examples=400, deadline=None)
@given(calendars())
def test_no_offered_start_leaves_the_opening_hours_or_touches_a_closure(c):
    for free in offered(c):
        m = local_minute(free.start, c["tz"])
        assert m % c["step"] == 0
        assert any(a <= m and m + c["minutes"] <= b for a, b in c["hours"])
        assert not c["whole_day"]
        assert not any(m < b and a < m + c["minutes"] for a, b in c["closures"])
        assert free.start >= c["earliest"]


@settings(max_examples=400, deadline=None)
@given(calendars(capacity=st.just(1)))
def test_with_one_place_no_offered_start_overlaps_a_booking(c):
    for free in offered(c):
        ends = free.start + dt.timedelta(minutes=c["minutes"])
        assert not any(free.start < b_end and b_start < ends for b_start, b_end in c["bookings"])
        assert free.places == 1


@settings(max_examples=400, deadline=None)
@given(calendars())
def test_every_start_the_brute_force_finds_free_is_offered_and_nothing_else(c):
    got = offered(c)
    assert [f.start for f in got] == sorted(f.start for f in got)
    assert {f.start for f in got} == set(brute_force(c))


@settings(max_examples=400, deadline=None)
@given(calendars())
def test_places_are_the_capacity_less_the_fullest_unit_covered(c):
    expected = brute_force(c)
    for free in offered(c):
        assert free.places == expected[free.start]
        units = slots.units(free.start, c["minutes"], c["step"])
        assert len(units) == c["minutes"] // c["step"]
        assert free.places == c["capacity"] - max(c["taken"][u] for u in units)
        assert 1 <= free.places <= c["capacity"]


# --- the edges a shop meets ---

def starts(hours: str, minutes: int, *, closures=(), taken=None, capacity: int = 1,
           step: int = 30, earliest: dt.datetime = EARLY) -> list[str]:
    free = slots.free_starts(day=DAY, hours=parse_ranges(hours), closures=list(closures),
                             taken=taken or {}, capacity=capacity, minutes=minutes, step=step,
                             tz=SHANGHAI, earliest=earliest)
    return [f"{f.start.astimezone(SHANGHAI):%H:%M}" for f in free]


def at(hhmm: str) -> dt.datetime:
    return dt.datetime.combine(DAY, dt.time.fromisoformat(hhmm), SHANGHAI).astimezone(dt.UTC)


def test_a_two_hour_service_cannot_start_an_hour_before_closing():
    offered_starts = starts("10:00-20:00", 120)
    assert offered_starts[0] == "10:00" and offered_starts[-1] == "18:00"
    assert "19:00" not in offered_starts and "18:30" not in offered_starts
    assert starts("10:00-20:00", 60)[-1] == "19:00"


def test_a_service_may_end_at_midnight_and_off_grid_openings_round_up():
    assert starts("22:00-24:00", 60) == ["22:00", "22:30", "23:00"]
    assert starts("10:15-12:00", 60) == ["10:30", "11:00"]
    assert starts("10:00-10:30", 60) == []


def test_a_closure_refuses_what_overlaps_it_but_not_what_only_meets_its_edges():
    closure = parse_closure("2031-03-12 14:00-15:00")[1]
    got = starts("12:00-17:00", 60, closures=[closure])
    assert got == ["12:00", "12:30", "13:00", "15:00", "15:30", "16:00"]
    assert starts("12:00-17:00", 60, closures=[None]) == []


def test_a_two_unit_service_needs_both_units_and_reports_the_tighter():
    taken = {at("11:00"): 2, at("11:30"): 1}
    free = slots.free_starts(day=DAY, hours=parse_ranges("10:00-13:00"), closures=[],
                             taken=taken, capacity=2, minutes=60, step=30, tz=SHANGHAI,
                             earliest=EARLY)
    places = {f"{f.start.astimezone(SHANGHAI):%H:%M}": f.places for f in free}
    assert places == {"10:00": 2, "11:30": 1, "12:00": 2}


def test_nothing_before_the_earliest_start_is_offered():
    assert starts("10:00-13:00", 60, earliest=at("10:40")) == ["11:00", "11:30", "12:00"]


def test_starts_are_utc_on_the_shops_local_grid():
    (first, *_) = slots.free_starts(day=DAY, hours=parse_ranges("15:00-16:00"), closures=[],
                                    taken={}, capacity=1, minutes=60, step=30, tz=SHANGHAI,
                                    earliest=EARLY)
    assert first.start == dt.datetime(2031, 3, 12, 7, 0, tzinfo=dt.UTC)
    assert first.start.utcoffset() == dt.timedelta(0)


def test_units_cover_the_service_and_a_short_one_still_holds_a_unit():
    start = at("10:00")
    assert slots.units(start, 90, 30) == [at("10:00"), at("10:30"), at("11:00")]
    assert slots.units(start, 20, 30) == [at("10:00")]
    assert slots.units(start, 40, 30) == [at("10:00"), at("10:30")]


def test_nearest_are_the_closest_in_time_order_the_earlier_winning_a_tie():
    free = [slots.Free(at(t), 1) for t in ("10:00", "11:00", "12:00", "13:00", "14:00", "16:00")]
    near = slots.nearest(free, at("12:30"))
    assert [f"{f.start.astimezone(SHANGHAI):%H:%M}" for f in near] == ["11:00", "12:00", "13:00"]
    near = slots.nearest(free, at("15:00"), count=2)
    assert [f"{f.start.astimezone(SHANGHAI):%H:%M}" for f in near] == ["14:00", "16:00"]
    assert slots.nearest([], at("15:00")) == []
    assert len(slots.nearest(free, at("09:00"), count=10)) == len(free)


def test_seat_numbers_take_the_lowest_free_seat_in_each_unit():
    units = [at("10:00"), at("10:30")]
    assert slots.seat_numbers({}, units, 3) == {at("10:00"): 1, at("10:30"): 1}
    held = {at("10:00"): {1, 3}, at("10:30"): {2}}
    assert slots.seat_numbers(held, units, 3) == {at("10:00"): 2, at("10:30"): 1}


def test_seat_numbers_are_none_when_one_unit_is_full():
    units = [at("10:00"), at("10:30")]
    assert slots.seat_numbers({at("10:30"): {1, 2}}, units, 2) is None
    assert slots.seat_numbers({at("10:00"): {1}}, units, 1) is None
    assert slots.seat_numbers({at("11:00"): {1}}, units, 1) == {at("10:00"): 1, at("10:30"): 1}
