"""Bookings through the service, on the bot with the stand-ins: free times against the hours,
closures, notice and horizon; one booking per key; the race for the last place (one stylist,
then a class of 12) on SQLite and PostgreSQL; cancelling and moving with their deadlines; the
waitlist's offers and lapses; the no-show limit; reminders sent once; times kept in UTC.

The demo shop (config.toml): CUT 60 min and PERM 120 min by 小李 (LI) or 王老师 (WANG), 10:00-20:00
on a Tuesday; YOGA 60 min in a room of 12 places, Tuesdays 19:00-20:00. Slots of 30 minutes,
an hour's notice, 14 days ahead, cancel or move until 2 h before."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import zoneinfo
from collections import Counter

import pytest
from tortoise import connections

from bot.config import SmsConfig
from bot.infra.db import IntegrityError
from bot.models import (
    AuditEntry,
    Booking,
    BookingStatus,
    Closure,
    Delivery,
    DeliveryStatus,
    Member,
    Resource,
    Seat,
    Service,
    Store,
    WaitEntry,
    WaitStatus,
)
from bot.notifications.notices import BOOKING_CHANGES
from bot.runtime import Bot
from bot.services import bookings
from bot.services.bookings import BookingRefused
from bot.services.staff import Actor
from tests.support import SHANGHAI, SMS_ID, SMS_SECRET, STEADY_POINTS, Harness, at_local

DAY = dt.date(2031, 4, 8)  # a Tuesday: both stylists work 10:00-20:00, the yoga class at 19:00
EVE = DAY - dt.timedelta(days=1)
_serials = itertools.count(1)
_keys = itertools.count(1)


def at(hhmm: str, day: dt.date = DAY) -> dt.datetime:
    return dt.datetime.combine(day, dt.time.fromisoformat(hhmm), SHANGHAI).astimezone(dt.UTC)


def hhmm(start: dt.datetime) -> str:
    return f"{start.astimezone(SHANGHAI):%H:%M}"


def key() -> str:
    return f"test:{next(_keys)}"


async def new_member(bot: Bot) -> Member:
    n = next(_serials)
    phone = f"136{n:08d}"
    return await Member.create(card_no=f"77{n:08d}", phone_hash=bot.vault.lookup_hash(phone),
                               phone_enc=bot.vault.encrypt(phone), name=f"会员{n}",
                               tier="普通会员")


async def setup(h: Harness) -> tuple[Service, Resource, Resource]:
    """The clock at 10:00 the day before DAY; CUT and its two stylists."""
    at_local(h.clock, EVE, 10)
    return (await Service.get(code="CUT"), await Resource.get(code="LI"),
            await Resource.get(code="WANG"))


async def close_all_day(resource: Resource, day: dt.date = DAY) -> None:
    await Closure.create(resource_id=resource.id, day=day, reason="test")


async def holding(**filters) -> list[Booking]:
    return await Booking.filter(status__in=bookings.HOLDING, **filters).order_by("id")


async def seats_of(booking: Booking) -> list[tuple[str, int]]:
    rows = await Seat.filter(booking_id=booking.id).order_by("unit_start") \
        .values_list("unit_start", "seat")
    return [(hhmm(unit), seat) for unit, seat in rows]


async def refused(call) -> BookingRefused:
    with pytest.raises(BookingRefused) as caught:
        await call
    return caught.value


@pytest.fixture
async def cut(shop: Harness) -> tuple[Service, Resource, Resource]:
    return await setup(shop)


# --- free times ---

async def test_free_times_keep_to_the_opening_hours_with_both_stylists(shop, cut):
    service, li, wang = cut
    times = await bookings.free_times(shop.bot, service, DAY)
    assert [hhmm(t.start) for t in times] == [
        f"{h:02d}:{m:02d}" for h in range(10, 20) for m in (0, 30)][:-1]  # 10:00 .. 19:00
    assert {t.places for t in times} == {2}
    assert {t.resources for t in times} == {(li.id, wang.id)}
    perm = await Service.get(code="PERM")
    assert hhmm((await bookings.free_times(shop.bot, perm, DAY))[-1].start) == "18:00"
    # Monday: 王老师 does not work; Saturday: both until 18:00.
    monday = await bookings.free_times(shop.bot, service, DAY + dt.timedelta(days=6))
    assert {t.resources for t in monday} == {(li.id,)} and {t.places for t in monday} == {1}
    saturday = await bookings.free_times(shop.bot, service, DAY + dt.timedelta(days=4))
    assert hhmm(saturday[-1].start) == "17:00"


async def test_a_part_day_closure_takes_a_stylist_out_for_those_hours(shop, any_db):
    service, li, wang = await setup(shop)
    await Closure.create(resource_id=wang.id, day=DAY, opens=dt.time(14), closes=dt.time(16))
    await Closure.create(resource_id=li.id, day=DAY, opens=dt.time(19), closes=dt.time.max)
    places = {hhmm(t.start): (t.places, t.resources)
              for t in await bookings.free_times(shop.bot, service, DAY)}
    assert places["13:00"] == (2, (li.id, wang.id))  # ends as the closure begins
    assert places["13:30"] == places["15:30"] == (1, (li.id,))
    assert places["16:00"] == (2, (li.id, wang.id))
    assert places["18:00"] == (2, (li.id, wang.id)) and places["18:30"] == (1, (wang.id,))
    booked = await bookings.book(shop.bot, await new_member(shop.bot), service, at("14:00"),
                                 key=key())
    assert booked.booking.resource_id == li.id
    assert (await refused(bookings.book(shop.bot, await new_member(shop.bot), service,
                                        at("14:30"), key=key(), resource=wang))).reason \
        == "booking_full.j2"


async def test_a_whole_day_closure_takes_a_stylist_out_for_the_day(shop, cut):
    service, li, wang = cut
    await close_all_day(li)
    times = await bookings.free_times(shop.bot, service, DAY)
    assert len(times) == 19 and {(t.places, t.resources) for t in times} == {(1, (wang.id,))}
    await close_all_day(wang)
    assert await bookings.free_times(shop.bot, service, DAY) == []
    assert DAY not in await bookings.free_days(shop.bot, service)


async def test_members_book_with_notice_and_within_the_horizon_staff_from_now(shop, cut):
    service, _, _ = cut
    at_local(shop.clock, DAY, 11, 10)
    member_times = await bookings.free_times(shop.bot, service, DAY)
    assert hhmm(member_times[0].start) == "12:30"  # an hour's notice, then the grid
    staff_times = await bookings.free_times(shop.bot, service, DAY, staff=True)
    assert hhmm(staff_times[0].start) == "11:30"
    days = await bookings.free_days(shop.bot, service)
    assert days[0] == DAY and days[-1] <= DAY + dt.timedelta(days=14)
    assert DAY + dt.timedelta(days=14) in days  # a Tuesday, 14 days on
    member = await new_member(shop.bot)
    too_soon = await refused(bookings.book(shop.bot, member, service, at("12:00"), key=key()))
    assert too_soon.reason == "booking_too_soon.j2"
    far = DAY + dt.timedelta(days=15)
    too_far = await refused(bookings.book(shop.bot, member, service, at("12:00", far), key=key()))
    assert too_far.reason == "booking_too_far.j2"
    assert await Booking.all().count() == 0
    staff = Actor.cli(await Store.get(code="S001"))
    booked = await bookings.book(shop.bot, member, service, at("12:00"), key=key(), actor=staff)
    assert booked.booking.status == BookingStatus.ACTIVE
    assert await AuditEntry.filter(action="booking").count() == 1


async def test_a_start_off_the_grid_or_outside_the_hours_is_refused(shop, cut):
    service, li, _ = cut
    member = await new_member(shop.bot)
    for start in (at("10:15"), at("19:30"), at("09:00")):
        assert (await refused(bookings.book(shop.bot, member, service, start, key=key(),
                                            resource=li))).reason == "booking_full.j2"
    assert await Seat.all().count() == 0


# --- booking ---

async def test_booking_twice_with_the_same_key_books_once(shop, cut):
    service, _, _ = cut
    member = await new_member(shop.bot)
    first = await bookings.book(shop.bot, member, service, at("15:00"), key="msg:1")
    again = await bookings.book(shop.bot, member, service, at("15:00"), key="msg:1")
    assert not first.duplicate and again.duplicate
    assert again.booking.id == first.booking.id
    assert len(await holding()) == 1 and await Seat.all().count() == 2
    # The retries of one message at the same moment: still one booking.
    results = await asyncio.gather(*(bookings.book(shop.bot, member, service, at("17:00"),
                                                   key="msg:2") for _ in range(5)))
    assert len({r.booking.id for r in results}) == 1
    assert len(await holding()) == 2 and await Seat.all().count() == 4


async def test_a_booking_takes_the_first_stylist_free_and_holds_a_seat_per_unit(shop, cut):
    service, li, wang = cut
    first = await bookings.book(shop.bot, await new_member(shop.bot), service, at("15:00"),
                                key=key())
    second = await bookings.book(shop.bot, await new_member(shop.bot), service, at("15:30"),
                                 key=key())
    assert first.booking.resource_id == li.id and second.booking.resource_id == wang.id
    assert await seats_of(first.booking) == [("15:00", 1), ("15:30", 1)]
    assert await seats_of(second.booking) == [("15:30", 1), ("16:00", 1)]
    places = {hhmm(t.start): t.places for t in await bookings.free_times(shop.bot, service, DAY)}
    assert "15:00" not in places and "15:30" not in places
    assert places["14:30"] == 1 and places["16:00"] == 1 and places["16:30"] == 2


async def race(h: Harness, service: Service, start: dt.datetime, racers: int,
               resource: Resource | None = None) -> tuple[list, list[BookingRefused]]:
    members = [await new_member(h.bot) for _ in range(racers)]
    results = await asyncio.gather(
        *(bookings.book(h.bot, m, service, start, key=f"race:{m.id}", resource=resource)
          for m in members), return_exceptions=True)
    unexpected = [r for r in results
                  if isinstance(r, BaseException) and not isinstance(r, BookingRefused)]
    assert not unexpected, unexpected
    won = [r for r in results if not isinstance(r, BaseException)]
    lost = [r for r in results if isinstance(r, BookingRefused)]
    return won, lost


@pytest.mark.parametrize("pinned", [True, False], ids=["resource", "other-closed"])
async def test_fifty_members_racing_for_the_last_place_one_wins(shop, any_db, pinned):
    service, li, wang = await setup(shop)
    if not pinned:
        await close_all_day(wang)
    won, lost = await race(shop, service, at("15:00"), 50, resource=li if pinned else None)
    assert len(won) == 1 and len(lost) == 49
    [booking] = await holding()
    assert booking.id == won[0].booking.id and booking.resource_id == li.id
    assert await seats_of(booking) == [("15:00", 1), ("15:30", 1)]
    assert await Seat.all().count() == 2
    assert {r.reason for r in lost} == {"booking_full.j2"}
    for refusal in lost:
        assert [hhmm(t.start) for t in refusal.values["nearest"]] == ["13:30", "14:00", "16:00"]
        assert refusal.values["wanted"] == at("15:00")
    assert await Booking.all().count() == 1


async def test_fifty_members_racing_for_a_class_of_twelve_twelve_win(shop, any_db):
    at_local(shop.clock, EVE, 10)
    yoga, room = await Service.get(code="YOGA"), await Resource.get(code="YOGA")
    won, lost = await race(shop, yoga, at("19:00"), 50)
    assert len(won) == 12 and len(lost) == 38
    active = await holding(resource_id=room.id)
    assert len(active) == 12 and len({b.member_id for b in active}) == 12
    seats = await Seat.filter(resource_id=room.id).values_list("seat", "unit_start")
    by_unit = {at("19:00"): [], at("19:30"): []}
    for seat, unit in seats:
        by_unit[unit].append(seat)
    assert {unit: sorted(n) for unit, n in by_unit.items()} == {
        at("19:00"): list(range(1, 13)), at("19:30"): list(range(1, 13))}
    assert {r.reason for r in lost} == {"booking_full.j2"}
    # The class is full now: nobody sees it free that day.
    assert await bookings.free_times(shop.bot, yoga, DAY) == []


async def test_losing_the_race_while_places_remain_is_not_full(shop, monkeypatch):
    """Each lost race is a place another member took: with places left, the loser tries
    again rather than being told the class is full (and offered that very time)."""
    at_local(shop.clock, EVE, 10)
    yoga = await Service.get(code="YOGA")
    insert, losses = Seat.bulk_create, []

    async def lose_five_times(objects, *args, **kwargs):
        if len(losses) < 5:
            losses.append(objects)
            raise IntegrityError("duplicate key value violates unique constraint")
        return await insert(objects, *args, **kwargs)

    monkeypatch.setattr(Seat, "bulk_create", lose_five_times)
    booked = await bookings.book(shop.bot, await new_member(shop.bot), yoga, at("19:00"),
                                 key=key())
    assert len(losses) == 5
    assert await seats_of(booked.booking) == [("19:00", 1), ("19:30", 1)]


async def test_one_member_cannot_hold_the_same_class_twice(shop, any_db):
    at_local(shop.clock, EVE, 10)
    yoga = await Service.get(code="YOGA")
    member = await new_member(shop.bot)
    await bookings.book(shop.bot, member, yoga, at("19:00"), key=key())
    again = await refused(bookings.book(shop.bot, member, yoga, at("19:00"), key=key()))
    assert again.reason == "booking_twice.j2"
    # Two different messages from one member at the same moment: one place.
    other = await new_member(shop.bot)
    results = await asyncio.gather(
        *(bookings.book(shop.bot, other, yoga, at("19:00"), key=key()) for _ in range(4)),
        return_exceptions=True)
    assert sum(not isinstance(r, BaseException) for r in results) == 1
    assert {r.reason for r in results if isinstance(r, BaseException)} == {"booking_twice.j2"}
    assert [len(await holding(member_id=m.id)) for m in (member, other)] == [1, 1]
    assert await Seat.all().count() == 4  # two members, two half-hour units each


# --- cancelling ---

async def test_members_cancel_until_two_hours_before_and_staff_after(shop, cut):
    service, _, _ = cut
    member = await new_member(shop.bot)
    early = (await bookings.book(shop.bot, member, service, at("15:00"), key=key())).booking
    late = (await bookings.book(shop.bot, member, service, at("17:00"), key=key())).booking
    at_local(shop.clock, DAY, 12, 59)  # just over 2 h before 15:00: still in time
    assert await bookings.cancel(shop.bot, early)
    assert not await bookings.cancel(shop.bot, early)  # a retry changes nothing
    assert (await Booking.get(id=early.id)).status == BookingStatus.CANCELLED
    assert await seats_of(early) == []
    at_local(shop.clock, DAY, 15, 1)  # under 2 h before 17:00
    too_late = await refused(bookings.cancel(shop.bot, late))
    assert too_late.reason == "booking_cancel_too_late.j2"
    assert (await Booking.get(id=late.id)).status == BookingStatus.ACTIVE
    assert len(await seats_of(late)) == 2
    staff = Actor.cli(await Store.get(code="S001"))
    assert await bookings.cancel(shop.bot, late, actor=staff)
    assert (await Booking.get(id=late.id)).status == BookingStatus.CANCELLED
    assert await Seat.all().count() == 0
    assert await AuditEntry.filter(action="booking_cancel").count() == 1


async def test_cancelling_frees_the_place_and_the_member_can_book_it_again(shop, cut):
    service, li, _ = cut
    member, other = await new_member(shop.bot), await new_member(shop.bot)
    first = await bookings.book(shop.bot, member, service, at("15:00"), key=key(), resource=li)
    blocked = await refused(bookings.book(shop.bot, other, service, at("15:00"), key=key(),
                                          resource=li))
    assert blocked.reason == "booking_full.j2"
    assert await bookings.cancel(shop.bot, first.booking)
    again = await bookings.book(shop.bot, member, service, at("15:00"), key=key(), resource=li)
    assert not again.duplicate and again.booking.id != first.booking.id
    assert await seats_of(again.booking) == [("15:00", 1), ("15:30", 1)]
    assert [b.id for b in await holding()] == [again.booking.id]


# --- moving ---

async def test_moving_to_a_full_time_leaves_the_old_booking_and_its_seats(shop, cut):
    service, li, _ = cut
    member, other = await new_member(shop.bot), await new_member(shop.bot)
    mine = (await bookings.book(shop.bot, member, service, at("15:00"), key=key(),
                                resource=li)).booking
    await bookings.book(shop.bot, other, service, at("17:00"), key=key(), resource=li)
    full = await refused(bookings.reschedule(shop.bot, mine, at("17:00"), key=key(),
                                             resource=li))
    assert full.reason == "booking_full.j2"
    assert (await Booking.get(id=mine.id)).status == BookingStatus.ACTIVE
    assert (mine.status, mine.ended_at) == (BookingStatus.ACTIVE, None)  # as the caller holds it
    assert await seats_of(mine) == [("15:00", 1), ("15:30", 1)]
    assert await Booking.all().count() == 2 and await Seat.all().count() == 4


async def test_moving_to_a_free_time_holds_the_new_place_and_frees_the_old(shop, cut):
    service, li, _ = cut
    member, other = await new_member(shop.bot), await new_member(shop.bot)
    old = (await bookings.book(shop.bot, member, service, at("15:00"), key=key(),
                               resource=li)).booking
    moved = await bookings.reschedule(shop.bot, old, at("11:00"), key=key(), resource=li)
    new = await Booking.get(id=moved.booking.id)
    assert new.status == BookingStatus.ACTIVE and new.moved_from_id == old.id
    assert (await Booking.get(id=old.id)).status == BookingStatus.MOVED
    assert await seats_of(new) == [("11:00", 1), ("11:30", 1)]
    assert await seats_of(old) == []
    # The old time is free for someone else.
    await bookings.book(shop.bot, other, service, at("15:00"), key=key(), resource=li)
    # A moved booking cannot be moved (or cancelled) again.
    gone = await refused(bookings.reschedule(shop.bot, old, at("12:00"), key=key(),
                                             resource=li))
    assert gone.reason == "booking_gone.j2"
    assert not await bookings.cancel(shop.bot, old)


async def test_moves_racing_for_one_place_move_one_and_leave_the_others(shop, any_db):
    service, li, _ = await setup(shop)
    starts = ("10:00", "11:00", "12:00", "13:00", "14:00")
    held = [(await bookings.book(shop.bot, await new_member(shop.bot), service, at(start),
                                 key=key(), resource=li)).booking for start in starts]
    results = await asyncio.gather(
        *(bookings.reschedule(shop.bot, b, at("17:00"), key=key(), resource=li) for b in held),
        return_exceptions=True)
    moved = [r for r in results if not isinstance(r, BaseException)]
    assert len(moved) == 1, results
    assert {r.reason for r in results if isinstance(r, BaseException)} == {"booking_full.j2"}
    statuses = Counter(await Booking.filter(id__in=[b.id for b in held])
                       .values_list("status", flat=True))
    assert statuses == Counter({BookingStatus.ACTIVE: 4, BookingStatus.MOVED: 1})
    for booking in held:
        if booking.id != moved[0].booking.moved_from_id:
            assert len(await seats_of(booking)) == 2
    assert await seats_of(moved[0].booking) == [("17:00", 1), ("17:30", 1)]
    assert await Seat.all().count() == 10


async def test_a_move_overlapping_its_own_old_time_works(shop, cut):
    _, li, _ = cut
    perm = await Service.get(code="PERM")
    member = await new_member(shop.bot)
    old = (await bookings.book(shop.bot, member, perm, at("15:00"), key=key(),
                               resource=li)).booking
    moved = await bookings.reschedule(shop.bot, old, at("15:30"), key=key(), resource=li)
    assert await seats_of(moved.booking) == [("15:30", 1), ("16:00", 1), ("16:30", 1),
                                             ("17:00", 1)]
    assert await Seat.all().count() == 4
    back = await bookings.reschedule(shop.bot, moved.booking, at("14:30"), key=key(),
                                     resource=li)
    assert [hhmm(u) for u, in await Seat.all().order_by("unit_start").values_list(
        "unit_start")] == ["14:30", "15:00", "15:30", "16:00"]
    assert [b.id for b in await holding()] == [back.booking.id]


async def test_members_move_until_two_hours_before_and_staff_after(shop, cut):
    service, _, _ = cut
    member = await new_member(shop.bot)
    old = (await bookings.book(shop.bot, member, service, at("15:00"), key=key())).booking
    at_local(shop.clock, DAY, 13, 30)
    late = await refused(bookings.reschedule(shop.bot, old, at("17:00"), key=key()))
    assert late.reason == "booking_move_too_late.j2"
    staff = Actor.cli(await Store.get(code="S001"))
    moved = await bookings.reschedule(shop.bot, old, at("17:00"), key=key(), actor=staff)
    assert moved.booking.status == BookingStatus.ACTIVE
    assert await AuditEntry.filter(action="booking_move").count() == 1


# --- the waitlist ---

async def test_a_cancellation_offers_the_place_to_the_first_in_line(shop, cut):
    service, li, _ = cut
    holder, first, second, late = [await new_member(shop.bot) for _ in range(4)]
    taken = (await bookings.book(shop.bot, holder, service, at("15:00"), key=key(),
                                 resource=li)).booking
    entry, ahead = await bookings.join_waitlist(shop.bot, first, service, at("15:00"),
                                                key=key(), resource=li)
    again, _ = await bookings.join_waitlist(shop.bot, first, service, at("15:00"), key=key(),
                                            resource=li)
    assert again.id == entry.id and ahead == 0
    _, behind = await bookings.join_waitlist(shop.bot, second, service, at("15:00"),
                                             key=key(), resource=li)
    assert behind == 1
    assert await bookings.cancel(shop.bot, taken)
    [offer] = await Booking.filter(member_id=first.id)
    assert offer.status == BookingStatus.OFFERED
    expires = shop.bot.now() + dt.timedelta(minutes=15)
    assert abs(offer.offer_expires_at - expires) < dt.timedelta(seconds=5)
    assert await seats_of(offer) == [("15:00", 1), ("15:30", 1)]
    assert (await WaitEntry.get(id=entry.id)).status == WaitStatus.OFFERED
    assert await Booking.filter(member_id=second.id).count() == 0
    # The held place is not free to anyone else.
    blocked = await refused(bookings.book(shop.bot, late, service, at("15:00"), key=key(),
                                          resource=li))
    assert blocked.reason == "booking_full.j2"
    accepted = await bookings.accept_offer(shop.bot, first)
    assert accepted is not None and accepted.id == offer.id
    assert (await Booking.get(id=offer.id)).status == BookingStatus.ACTIVE
    assert (await WaitEntry.get(id=entry.id)).status == WaitStatus.BOOKED
    assert await bookings.accept_offer(shop.bot, first) is None
    assert len(await seats_of(offer)) == 2


async def test_an_offer_nobody_confirms_lapses_to_the_next_in_line(shop, cut):
    service, li, _ = cut
    holder, first, second = [await new_member(shop.bot) for _ in range(3)]
    taken = (await bookings.book(shop.bot, holder, service, at("15:00"), key=key(),
                                 resource=li)).booking
    for member in (first, second):
        await bookings.join_waitlist(shop.bot, member, service, at("15:00"), key=key(),
                                     resource=li)
    await bookings.cancel(shop.bot, taken)
    shop.clock.advance(minutes=14)
    assert await bookings.lapse_offers(shop.bot) == 0
    shop.clock.advance(minutes=2)
    assert await bookings.lapse_offers(shop.bot) == 1
    assert await bookings.lapse_offers(shop.bot) == 0
    [lapsed] = await Booking.filter(member_id=first.id)
    assert lapsed.status == BookingStatus.LAPSED and await seats_of(lapsed) == []
    assert await bookings.accept_offer(shop.bot, first) is None
    [offer] = await Booking.filter(member_id=second.id)
    assert offer.status == BookingStatus.OFFERED
    assert await seats_of(offer) == [("15:00", 1), ("15:30", 1)]
    assert (await bookings.accept_offer(shop.bot, second)).id == offer.id
    statuses = Counter(await WaitEntry.all().values_list("status", flat=True))
    assert statuses == Counter({WaitStatus.LAPSED: 1, WaitStatus.BOOKED: 1})


async def test_cancels_and_lapses_at_once_offer_the_place_once(shop, any_db):
    service, li, _ = await setup(shop)
    holder, first, second = [await new_member(shop.bot) for _ in range(3)]
    taken = (await bookings.book(shop.bot, holder, service, at("15:00"), key=key(),
                                 resource=li)).booking
    for member in (first, second):
        await bookings.join_waitlist(shop.bot, member, service, at("15:00"), key=key(),
                                     resource=li)
    done = await asyncio.gather(*(bookings.cancel(shop.bot, taken) for _ in range(3)))
    assert sorted(done) == [False, False, True]
    assert [b.member_id for b in await holding()] == [first.id]
    shop.clock.advance(minutes=16)
    lapsed = await asyncio.gather(*(bookings.lapse_offers(shop.bot) for _ in range(3)))
    assert sum(lapsed) == 1
    [offer] = await holding()
    assert offer.member_id == second.id and offer.status == BookingStatus.OFFERED
    assert await Seat.all().count() == 2
    # Nobody left in line: once this offer lapses too, the place is free to anyone.
    shop.clock.advance(minutes=16)
    assert await bookings.lapse_offers(shop.bot) == 1
    assert await holding() == [] and await Seat.all().count() == 0
    times = await bookings.free_times(shop.bot, service, DAY, resource=li)
    assert at("15:00") in {t.start for t in times}


async def test_a_class_place_freed_goes_to_the_waitlist(shop):
    at_local(shop.clock, EVE, 10)
    yoga = await Service.get(code="YOGA")
    won, _ = await race(shop, yoga, at("19:00"), 12)
    waiting = await new_member(shop.bot)
    await bookings.join_waitlist(shop.bot, waiting, yoga, at("19:00"), key=key())
    # Seat numbers follow the order the racers committed in, not the order of `won`.
    freed = await seats_of(won[3].booking)
    await bookings.cancel(shop.bot, won[3].booking)
    [offer] = await Booking.filter(member_id=waiting.id)
    assert offer.status == BookingStatus.OFFERED
    assert await seats_of(offer) == freed
    assert len(await holding()) == 12


# --- no-shows ---

async def test_a_member_over_the_no_show_limit_books_only_through_staff(shop, cut):
    service, _, _ = cut
    member = await new_member(shop.bot)
    staff = Actor.cli(await Store.get(code="S001"))
    made = [(await bookings.book(shop.bot, member, service, at("15:00", DAY + dt.timedelta(d)),
                                 key=key())).booking for d in (0, 1, 2)]
    at_local(shop.clock, DAY + dt.timedelta(days=3), 9)
    for booking in made:
        assert await bookings.mark(shop.bot, booking, BookingStatus.NO_SHOW, actor=staff)
    assert not await bookings.mark(shop.bot, made[0], BookingStatus.NO_SHOW, actor=staff)
    later = DAY + dt.timedelta(days=7)
    no = await refused(bookings.book(shop.bot, member, service, at("15:00", later), key=key()))
    assert no.reason == "booking_via_staff.j2" and no.values["limit"] == 3
    booked = await bookings.book(shop.bot, member, service, at("15:00", later), key=key(),
                                 actor=staff)
    assert booked.booking.status == BookingStatus.ACTIVE
    # 90 days after the first no-show, the member books on their own again.
    at_local(shop.clock, DAY + dt.timedelta(days=91), 9)
    again = DAY + dt.timedelta(days=91 + 7)
    assert (await bookings.book(shop.bot, member, service, at("15:00", again),
                                key=key())).booking.status == BookingStatus.ACTIVE


# --- reminders ---

BOOKING_SMS = {"booking": {"channels": ["sms"], "sms_template": "SMS_BOOKING",
                           "sms_params": {"service": "service", "time": "time",
                                          "change": "change"}}}


async def reminder_shop(harness_factory, stand_ins, send_until: str = "21:00",
                        security=None) -> Harness:
    """The bot telling booking notices by SMS only, so that each one sent can be counted."""
    sms = SmsConfig(access_key_id=SMS_ID, access_key_secret=SMS_SECRET, sign_name="示例门店",
                    endpoint=stand_ins.sms_url, template_verify="SMS_VERIFY",
                    template_welcome="SMS_WELCOME", send_from="08:00", send_until=send_until)
    extra = {"security": security} if security else {}
    return await harness_factory(points=STEADY_POINTS, notices=BOOKING_SMS, sms=sms, **extra)


KINDS = {BOOKING_CHANGES["evening"]: "evening", BOOKING_CHANGES["soon"]: "soon"}


def reminders(h: Harness) -> list[str]:
    """The reminders the SMS stand-in received, by kind (from the notice's change field)."""
    return [KINDS[m["params"]["change"]] for m in h.stand_ins.sms.messages
            if m["template_code"] == "SMS_BOOKING" and m["params"]["change"] in KINDS]


async def test_each_reminder_goes_once_even_twice_run_or_after_a_restart(harness_factory,
                                                                         stand_ins):
    h = await reminder_shop(harness_factory, stand_ins)
    service, _, _ = await setup(h)
    member = await new_member(h.bot)
    booking = (await bookings.book(h.bot, member, service, at("15:00"), key=key())).booking
    at_local(h.clock, EVE, 19, 59)
    assert await bookings.send_reminders(h.bot) == 0
    at_local(h.clock, EVE, 20, 0)
    assert await bookings.send_reminders(h.bot) == 1
    assert await bookings.send_reminders(h.bot) == 0
    assert reminders(h) == ["evening"]
    [sms] = [m for m in h.stand_ins.sms.messages if m["template_code"] == "SMS_BOOKING"]
    assert sms["phone"] == h.bot.vault.decrypt(member.phone_enc)
    assert sms["params"]["time"] == "2031-04-08 15:00"

    # A new process on the same database.
    await h.server.close()
    h = await reminder_shop(harness_factory, stand_ins, security=h.config.security)
    at_local(h.clock, EVE, 21, 30)
    assert await bookings.send_reminders(h.bot) == 0
    at_local(h.clock, DAY, 12, 59)
    assert await bookings.send_reminders(h.bot) == 0
    at_local(h.clock, DAY, 13, 0)
    assert await bookings.send_reminders(h.bot) == 1
    assert await bookings.send_reminders(h.bot) == 0
    at_local(h.clock, DAY, 14, 0)
    assert await bookings.send_reminders(h.bot) == 0
    assert reminders(h) == ["evening", "soon"]
    assert Counter(await Delivery.filter(key__startswith=f"notice:booking:{booking.id}:remind")
                   .values_list("key", flat=True)) == Counter({
        f"notice:booking:{booking.id}:remind:evening": 1,
        f"notice:booking:{booking.id}:remind:soon": 1})
    got = await Booking.get(id=booking.id)
    assert got.evening_reminded_at is not None and got.soon_reminded_at is not None


async def test_two_workers_sending_reminders_at_once_send_each_once(harness_factory, stand_ins):
    h = await reminder_shop(harness_factory, stand_ins)
    service, _, _ = await setup(h)
    for start in ("11:00", "15:00", "17:00"):
        await bookings.book(h.bot, await new_member(h.bot), service, at(start), key=key())
    at_local(h.clock, EVE, 20, 5)
    await asyncio.gather(*(bookings.send_reminders(h.bot) for _ in range(3)))
    assert reminders(h) == ["evening"] * 3


async def test_a_booking_made_after_the_reminder_was_due_gets_none(harness_factory, stand_ins):
    h = await reminder_shop(harness_factory, stand_ins)
    service, _, _ = await setup(h)
    at_local(h.clock, EVE, 21, 0)
    await bookings.book(h.bot, await new_member(h.bot), service, at("15:00"), key=key())
    assert await bookings.send_reminders(h.bot) == 0
    # Booked by staff 90 minutes before the start: no "2 hours before" either.
    at_local(h.clock, DAY, 13, 30)
    await bookings.book(h.bot, await new_member(h.bot), service, at("15:00"), key=key(),
                        actor=Actor.cli(await Store.get(code="S001")))
    assert await bookings.send_reminders(h.bot) == 1  # the first booking's
    assert await bookings.send_reminders(h.bot) == 0
    assert reminders(h) == ["soon"]


async def test_a_cancelled_bookings_queued_reminder_is_skipped(harness_factory, stand_ins):
    h = await reminder_shop(harness_factory, stand_ins, send_until="19:00")
    service, _, _ = await setup(h)
    booking = (await bookings.book(h.bot, await new_member(h.bot), service, at("15:00"),
                                   key=key())).booking
    at_local(h.clock, EVE, 20, 0)
    assert await bookings.send_reminders(h.bot) == 1  # handed to the outbox: it waits
    [queued] = await Delivery.filter(key=f"notice:booking:{booking.id}:remind:evening")
    assert queued.status == DeliveryStatus.QUEUED
    assert await bookings.cancel(h.bot, booking)
    assert (await Delivery.get(id=queued.id)).status == DeliveryStatus.SKIPPED
    at_local(h.clock, DAY, 8, 30)
    await h.bot.outbox.send_queued()
    assert reminders(h) == []
    assert await bookings.send_reminders(h.bot) == 0  # and no "soon" for a cancelled one


# --- time zones ---

async def test_times_are_stored_in_utc_and_read_in_shop_time(shop, any_db):
    service, _, _ = await setup(shop)
    booked = await bookings.book(shop.bot, await new_member(shop.bot), service, at("15:00"),
                                 key=key())
    stored = await Booking.get(id=booked.booking.id)
    assert stored.starts_at == dt.datetime(2031, 4, 8, 7, 0, tzinfo=dt.UTC)
    assert stored.starts_at.utcoffset() == dt.timedelta(0)
    local = stored.starts_at.astimezone(zoneinfo.ZoneInfo("Asia/Shanghai"))
    assert (local.date(), local.hour, local.minute) == (DAY, 15, 0)
    [row] = await connections.get("default").execute_query_dict(
        "SELECT starts_at FROM booking")
    raw = row["starts_at"]
    if isinstance(raw, str):  # SQLite keeps the text it was given
        raw = dt.datetime.fromisoformat(raw)
    assert raw.astimezone(dt.UTC).hour == 7
    assert raw.utcoffset() in (None, dt.timedelta(0))
    units = await Seat.filter(booking_id=stored.id).values_list("unit_start", flat=True)
    assert sorted(units) == [at("15:00"), at("15:30")]
