"""Bookings: free times, booking, cancelling, moving, arrivals and no-shows, the waitlist.

Every change is one transaction. Capacity is the seat table's unique key (bot/models/bookings.py):
the free-time check before an insert only picks seat numbers, and of two members racing for the
last place the database lets one commit; the other's transaction rolls back and they are offered
the nearest free times. A booking carries the key of the message that made it, so a retry finds
it instead of booking again. Members keep to the shop's deadlines (minimum notice, horizon,
cancel and reschedule before); staff may book and move past them, and that is audited.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from bot.config import Config, parse_closure, parse_ranges
from bot.infra import sql
from bot.infra.db import IntegrityError
from bot.models import (
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
from bot.notifications import notices
from bot.rules import slots
from bot.services import Refused
from bot.services import staff as staff_service
from bot.services.staff import Actor

# A booking that holds its place (and its seats).
HOLDING = (BookingStatus.ACTIVE, BookingStatus.OFFERED)
# A race lost to another booking is tried again: each loss is a seat someone else took, so a
# start is seen full after at most as many tries as it has seats, plus these.
TRIES = 3


class BookingRefused(Refused):
    """The reason is a template in templates/messages/; nearest free times come in `values`."""


# --- set-up: config.toml's services and resources, written when they differ ---

async def sync_setup(config: Config) -> None:
    """[[services]] and [[resources]] (with their closures) into the database. The config owns
    the entries it names: start-up writes them back when they differ. Services and resources
    added with `memberbot booking` are left alone, and so are closures added there."""
    stores = dict(await Store.all().values_list("code", "id"))
    for r in config.resources:
        hours = {str(day): text for day, text in r.week().items() if parse_ranges(text)}
        wanted = {"name": r.name, "store_id": stores[r.store], "capacity": r.capacity,
                  "hours": hours, "active": True}
        resource = await Resource.get_or_none(code=r.code)
        if resource is None:
            resource = await Resource.create(code=r.code, **wanted)
        elif any(getattr(resource, k) != v for k, v in wanted.items()):
            await Resource.filter(id=resource.id).update(**wanted)
        for text in r.closed:
            day, hours_closed = parse_closure(text)
            opens, closes = hours_closed or (None, None)
            if not await Closure.exists(resource_id=resource.id, day=day, opens=opens):
                await Closure.create(resource_id=resource.id, day=day, opens=opens,
                                     closes=closes, reason="config.toml")
    for s in config.services:
        wanted = {"name": s.name, "minutes": s.minutes, "price": round(s.price * 100),
                  "resources": list(s.resources), "punch_card": s.punch_card, "active": True}
        service = await Service.get_or_none(code=s.code)
        if service is None:
            await Service.create(code=s.code, **wanted)
        elif any(getattr(service, k) != v for k, v in wanted.items()):
            await Service.filter(id=service.id).update(**wanted)


async def services() -> list[Service]:
    """The services members can book, in the order they were set up."""
    return await Service.filter(active=True).order_by("id")


async def resources_of(service: Service) -> list[Resource]:
    """The active resources that serve a service, in the service's order."""
    found = {r.code: r for r in await Resource.filter(code__in=service.resources, active=True)
             .select_related("store")}
    return [found[code] for code in service.resources if code in found]


# --- free times ---

class FreeTime(NamedTuple):  # a tuple: a day's list of them is made on every question
    start: dt.datetime  # UTC
    places: int  # over all the resources that are free then
    resources: tuple[int, ...]  # their ids, in the service's order


@dataclass
class _Calendar:
    """What the free-time rule needs for some resources over some days, loaded in three
    queries: their closures and the places their bookings hold."""

    closures: dict[tuple[int, dt.date], list] = field(default_factory=lambda: defaultdict(list))
    taken: dict[int, Counter] = field(default_factory=lambda: defaultdict(Counter))


async def _calendar(resources: list[Resource], first: dt.date, last: dt.date,
                    tz: dt.tzinfo) -> _Calendar:
    ids = [r.id for r in resources]
    cal = _Calendar()
    for closure in await Closure.filter(resource_id__in=ids, day__gte=first, day__lte=last):
        # Shop-time wall clock (SQLite hands TimeFields back marked UTC): hour and minute only.
        span = (closure.opens.replace(tzinfo=None), closure.closes.replace(tzinfo=None)) \
            if closure.opens is not None else None
        cal.closures[(closure.resource_id, closure.day)].append(span)
    since = dt.datetime.combine(first, dt.time(), tz).astimezone(dt.UTC)
    until = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), tz).astimezone(dt.UTC)
    # By hand: the ORM would build a model-free row per held unit and parse each timestamp in
    # pure Python; the free-time bench spends its time here (docs/bookings.md).
    rows = await sql.fetch(
        "SELECT resource_id, unit_start, COUNT(*) AS n FROM booking_seat "
        f"WHERE unit_start >= $1 AND unit_start < $2 AND resource_id IN "
        f"({sql.placeholders(3, len(ids))}) GROUP BY resource_id, unit_start",
        since, until, *ids)
    for row in rows:
        unit = row["unit_start"]
        if isinstance(unit, str):  # SQLite keeps datetimes as ISO text
            unit = dt.datetime.fromisoformat(unit)
        cal.taken[row["resource_id"]][unit] = row["n"]
    return cal


def _day_args(resource: Resource, service: Service, day: dt.date, cal: _Calendar,
              config: Config, earliest: dt.datetime) -> dict:
    return {"day": day, "hours": parse_ranges(resource.hours.get(str(day.isoweekday()), "")),
            "closures": cal.closures.get((resource.id, day), []),
            "taken": cal.taken[resource.id], "capacity": resource.capacity,
            "minutes": service.minutes, "step": config.booking.slot_minutes,
            "tz": config.shop.tz, "earliest": earliest}


def _free_on(resource: Resource, service: Service, day: dt.date, cal: _Calendar,
             config: Config, earliest: dt.datetime) -> list[slots.Free]:
    return slots.free_starts(**_day_args(resource, service, day, cal, config, earliest))


def _merge(per_resource: Iterable[tuple[Resource, list[slots.Free]]]) -> list[FreeTime]:
    merged: dict[dt.datetime, tuple[list[int], list[int]]] = {}
    for resource, free in per_resource:
        for start, places in free:
            entry = merged.get(start)
            if entry is None:
                merged[start] = ([places], [resource.id])
            else:
                entry[0].append(places)
                entry[1].append(resource.id)
    return [FreeTime(start, sum(places), tuple(ids))
            for start, (places, ids) in sorted(merged.items())]


def earliest_start(bot, *, staff: bool) -> dt.datetime:
    """Members book at least min_notice ahead; staff from now."""
    notice = 0 if staff else bot.config.booking.min_notice_minutes
    return bot.now() + dt.timedelta(minutes=notice)


def bookable_days(bot) -> list[dt.date]:
    """Today and the days of the horizon, in shop time."""
    today = bot.today()
    return [today + dt.timedelta(days=n) for n in range(bot.config.booking.horizon_days + 1)]


async def free_times(bot, service: Service, day: dt.date, *, resource: Resource | None = None,
                     staff: bool = False) -> list[FreeTime]:
    """The starts on `day` (shop time) at which the service can be booked, with the places left
    over the chosen resource or all that serve it."""
    chosen = [resource] if resource else await resources_of(service)
    if not chosen:
        return []
    cal = await _calendar(chosen, day, day, bot.config.shop.tz)
    earliest = earliest_start(bot, staff=staff)
    return _merge((r, _free_on(r, service, day, cal, bot.config, earliest)) for r in chosen)


async def free_days(bot, service: Service, *, resource: Resource | None = None,
                    staff: bool = False) -> list[dt.date]:
    """The days of the horizon with at least one free start (a day's search stops at its
    first)."""
    chosen = [resource] if resource else await resources_of(service)
    days = bookable_days(bot)
    if not chosen:
        return []
    cal = await _calendar(chosen, days[0], days[-1], bot.config.shop.tz)
    earliest = earliest_start(bot, staff=staff)
    return [day for day in days if any(
        next(slots.iter_free_starts(**_day_args(r, service, day, cal, bot.config, earliest)),
             None) for r in chosen)]


async def nearest_free(bot, service: Service, wanted: dt.datetime, *,
                       resource: Resource | None = None, staff: bool = False,
                       count: int = 3) -> list[FreeTime]:
    """The free starts nearest to a wanted one: that day's, else the next days'."""
    day = wanted.astimezone(bot.config.shop.tz).date()
    times = await free_times(bot, service, day, resource=resource, staff=staff)
    if not times:
        for later in await free_days(bot, service, resource=resource, staff=staff):
            if later > day:
                times = await free_times(bot, service, later, resource=resource, staff=staff)
                break
    by_start = {t.start: t for t in times}
    near = slots.nearest((slots.Free(t.start, t.places) for t in times), wanted, count)
    return [by_start[f.start] for f in near]


# --- booking ---

def no_show_window(bot) -> dt.datetime:
    return bot.now() - dt.timedelta(days=bot.config.booking.no_show_days)


async def no_shows(member_id: int, since: dt.datetime) -> int:
    return await Booking.filter(member_id=member_id, status=BookingStatus.NO_SHOW,
                                starts_at__gte=since).count()


def check_start(bot, start: dt.datetime) -> None:
    """Members book at least min_notice ahead and within the horizon (BookingRefused)."""
    b = bot.config.booking
    if start < earliest_start(bot, staff=False):
        raise BookingRefused("booking_too_soon.j2", minutes=b.min_notice_minutes)
    if start.astimezone(bot.config.shop.tz).date() > bookable_days(bot)[-1]:
        raise BookingRefused("booking_too_far.j2", days=b.horizon_days)


def check_move(bot, booking: Booking) -> None:
    """Members move a booking until reschedule_before_minutes before it (BookingRefused)."""
    minutes = bot.config.booking.reschedule_before_minutes
    if bot.now() > _deadline(bot, booking, minutes):
        raise BookingRefused("booking_move_too_late.j2", booking=booking, minutes=minutes)


async def _member_may_book(bot, member: Member, start: dt.datetime) -> None:
    b = bot.config.booking
    if await no_shows(member.id, no_show_window(bot)) >= b.no_show_limit:
        raise BookingRefused("booking_via_staff.j2", limit=b.no_show_limit, days=b.no_show_days)
    check_start(bot, start)


async def opens_at(bot, service: Service, start: dt.datetime,
                   resource: Resource | None = None) -> bool:
    """Whether the service could start then at all, ignoring bookings: on the grid, inside a
    resource's opening hours, not closed, within the member's notice and horizon. Only then can
    a freed place reach someone waiting for it."""
    try:
        check_start(bot, start)
    except BookingRefused:
        return False
    day = start.astimezone(bot.config.shop.tz).date()
    chosen = [resource] if resource else await resources_of(service)
    if not chosen:
        return False
    cal = await _calendar(chosen, day, day, bot.config.shop.tz)
    cal.taken.clear()
    return any(f.start == start for r in chosen
               for f in _free_on(r, service, day, cal, bot.config, start))


async def holding_at(member_id: int, start: dt.datetime, end: dt.datetime) -> Booking | None:
    """The member's booking (or held offer) that overlaps [start, end), if any: nobody is in two
    places at once. (A place in one class twice is also the seat table's unique key.)"""
    return await Booking.filter(
        member_id=member_id, status__in=HOLDING, starts_at__lt=end.astimezone(dt.UTC),
        ends_at__gt=start.astimezone(dt.UTC)).order_by("starts_at").first() \
        .select_related("service", "resource", "store")


async def _hold(bot, booking: Booking, resource: Resource, service: Service, *,
                staff: bool) -> bool:
    """Seats for the booking on the resource, inside the caller's transaction: False when the
    start is not free there (outside the hours, closed, or full). A concurrent booking that took
    a chosen seat first makes the insert fail on the unique key, rolling the transaction back."""
    step = bot.config.booking.slot_minutes
    tz = bot.config.shop.tz
    day = booking.starts_at.astimezone(tz).date()
    cal = await _calendar([resource], day, day, tz)
    free = _free_on(resource, service, day, cal, bot.config, earliest_start(bot, staff=staff))
    if booking.starts_at not in {f.start for f in free}:
        return False
    wanted = slots.units(booking.starts_at, service.minutes, step)
    held: dict[dt.datetime, set[int]] = defaultdict(set)
    for unit, seat in await Seat.filter(resource_id=resource.id, unit_start__in=wanted) \
            .values_list("unit_start", "seat"):
        held[unit].add(seat)
    numbers = slots.seat_numbers(held, wanted, resource.capacity)
    if numbers is None:
        return False
    booking.resource_id, booking.store_id = resource.id, resource.store_id
    await booking.save()
    await Seat.bulk_create([Seat(resource_id=resource.id, unit_start=unit, seat=n,
                                 booking_id=booking.id, member_id=booking.member_id)
                            for unit, n in numbers.items()])
    return True


@dataclass(frozen=True)
class Booked:
    booking: Booking
    duplicate: bool = False  # a retry of a booking already made


async def _find(key: str) -> Booked | None:
    found = await Booking.get_or_none(key=key).select_related("service", "resource", "store")
    return Booked(found, duplicate=True) if found else None


async def _place(bot, member: Member, service: Service, start: dt.datetime, *, key: str,
                 resource: Resource | None, actor: Actor | None, status: BookingStatus,
                 before_hold=None, audit_action: str = "booking") -> Booked:
    """The transaction that books: `before_hold` (moving: free the old booking's seats first)
    runs in it too, so a lost race leaves everything as it was."""
    candidates = [await Resource.get(id=resource.id).select_related("store")] if resource \
        else await resources_of(service)
    units = len(slots.units(start, service.minutes, bot.config.booking.slot_minutes))
    for _ in range(TRIES + units * sum(c.capacity for c in candidates)):
        try:
            async with in_transaction():
                if before_hold is not None:
                    await before_hold()
                end = start + dt.timedelta(minutes=service.minutes)
                clash = await holding_at(member.id, start, end)
                if clash is not None and clash.key == key:
                    return Booked(clash, duplicate=True)  # a copy of this message made it
                if clash is not None:
                    raise BookingRefused("booking_twice.j2", booking=clash)
                for candidate in candidates:
                    booking = Booking(key=key, member_id=member.id, service_id=service.id,
                                      starts_at=start, status=status,
                                      ends_at=start + dt.timedelta(minutes=service.minutes),
                                      by_staff=actor.staff if actor else None,
                                      created_at=bot.now())
                    booking.resource_id, booking.store_id = candidate.id, candidate.store_id
                    if await _hold(bot, booking, candidate, service, staff=actor is not None):
                        if actor is not None:
                            await staff_service.audit(actor, audit_action, member=member, after={
                                "booking": booking.id, "service": service.code,
                                "resource": candidate.code, "starts_at": start.isoformat()})
                        booking.service, booking.resource = service, candidate
                        booking.store = candidate.store
                        return Booked(booking)
                raise _Full
        except IntegrityError:
            earlier = await _find(key)
            if earlier:
                return earlier
            continue  # a seat went to someone else meanwhile: look again
        except _Full:
            break
    near = await nearest_free(bot, service, start, resource=resource, staff=actor is not None)
    raise BookingRefused("booking_full.j2", wanted=start, nearest=near)


class _Full(Exception):
    """No candidate resource has the start free (rolls the transaction back)."""


async def book(bot, member: Member, service: Service, start: dt.datetime, *, key: str,
               resource: Resource | None = None, actor: Actor | None = None) -> Booked:
    """Book a place; staff (`actor`) may book past the member deadlines, audited. Raises
    BookingRefused with the nearest free times when the start is taken."""
    start = start.astimezone(dt.UTC)  # SQLite compares datetimes as text: always UTC
    earlier = await _find(key)
    if earlier:
        return earlier
    if actor is None:
        await _member_may_book(bot, member, start)
    booked = await _place(bot, member, service, start, key=key, resource=resource, actor=actor,
                          status=BookingStatus.ACTIVE)
    if actor is not None and not booked.duplicate:
        await notices.booking_changed(bot, booked.booking, "booked")
    return booked


# --- cancelling and moving ---

async def _end(booking: Booking, status: BookingStatus, now: dt.datetime,
               allowed: tuple[BookingStatus, ...] = HOLDING) -> bool:
    """Move a booking out of `allowed` (a conditional update: of two tries one wins) and free
    its seats; inside the caller's transaction."""
    if not await Booking.filter(id=booking.id, status__in=allowed).update(
            status=status, ended_at=now):
        return False
    await Seat.filter(booking_id=booking.id).delete()
    return True


async def _void_reminders(booking: Booking) -> None:
    """Reminders waiting in the outbox (an SMS held for the morning) say nothing any more."""
    await Delivery.filter(key__startswith=f"notice:booking:{booking.id}:remind",
                          status=DeliveryStatus.QUEUED).update(
        status=DeliveryStatus.SKIPPED, error=f"booking {booking.status}")


def _deadline(bot, booking: Booking, minutes: int) -> dt.datetime:
    return booking.starts_at - dt.timedelta(minutes=minutes)


async def cancel(bot, booking: Booking, *, actor: Actor | None = None) -> bool:
    """Cancel (members until cancel_before_minutes before the start; staff any time, audited).
    False when it was no longer active (cancelled already, by a retry or someone else)."""
    now = bot.now()
    if actor is None and now > _deadline(bot, booking, bot.config.booking.cancel_before_minutes):
        raise BookingRefused("booking_cancel_too_late.j2", booking=booking,
                             minutes=bot.config.booking.cancel_before_minutes)
    async with in_transaction():
        if not await _end(booking, BookingStatus.CANCELLED, now):
            return False
        await WaitEntry.filter(booking_id=booking.id, status=WaitStatus.OFFERED).update(
            status=WaitStatus.CANCELLED, open_slot=None)
        if actor is not None:
            await staff_service.audit(actor, "booking_cancel", member=booking.member_id,
                                      before={"booking": booking.id,
                                              "starts_at": booking.starts_at.isoformat()})
    booking.status, booking.ended_at = BookingStatus.CANCELLED, now
    await _void_reminders(booking)
    if actor is not None:
        await notices.booking_changed(bot, booking, "cancelled")
    await offer_freed(bot, booking)
    return True


async def reschedule(bot, booking: Booking, start: dt.datetime, *, key: str,
                     resource: Resource | None = None, actor: Actor | None = None) -> Booked:
    """Move a booking to a new start: the new place is held and the old one freed in one
    transaction, so a move that loses its race leaves the old booking as it was."""
    start = start.astimezone(dt.UTC)
    earlier = await _find(key)
    if earlier:
        return earlier
    now = bot.now()
    member = await Member.get(id=booking.member_id)
    if actor is None:
        check_move(bot, booking)
        await _member_may_book(bot, member, start)
    service = await Service.get(id=booking.service_id)

    async def free_old() -> None:
        if not await _end(booking, BookingStatus.MOVED, now, allowed=(BookingStatus.ACTIVE,)):
            raise BookingRefused("booking_gone.j2")

    booked = await _place(bot, member, service, start, key=key, resource=resource, actor=actor,
                          status=BookingStatus.ACTIVE, before_hold=free_old,
                          audit_action="booking_move")
    if booked.duplicate:
        return booked
    await Booking.filter(id=booked.booking.id).update(moved_from_id=booking.id)
    booked.booking.moved_from_id = booking.id
    booking.status, booking.ended_at = BookingStatus.MOVED, now
    await _void_reminders(booking)
    if actor is not None:
        await notices.booking_changed(bot, booked.booking, "moved", previous=booking)
    await offer_freed(bot, booking)
    return booked


# --- what a member and the staff see ---

async def upcoming(member_id: int, now: dt.datetime) -> list[Booking]:
    return await Booking.filter(member_id=member_id, status__in=HOLDING, ends_at__gt=now) \
        .order_by("starts_at").select_related("service", "resource", "store")


async def day_list(bot, store: Store | None, day: dt.date) -> list[Booking]:
    """A day's bookings (all stores when None), by resource and time: held places, arrivals and
    no-shows."""
    tz = bot.config.shop.tz
    since = dt.datetime.combine(day, dt.time(), tz).astimezone(dt.UTC)
    query = Booking.filter(starts_at__gte=since, starts_at__lt=since + dt.timedelta(days=1),
                           status__in=(*HOLDING, BookingStatus.ARRIVED, BookingStatus.NO_SHOW))
    if store is not None:
        query = query.filter(store_id=store.id)
    return await query.order_by("resource_id", "starts_at").select_related(
        "service", "resource", "member")


async def by_number(number: int) -> Booking | None:
    return await Booking.get_or_none(id=number).select_related("service", "resource", "store")


# --- at the shop: arrivals and no-shows ---

async def mark(bot, booking: Booking, status: BookingStatus, *, actor: Actor) -> bool:
    """到店 or 爽约: once (a conditional update from active), audited."""
    async with in_transaction():
        if not await Booking.filter(id=booking.id, status=BookingStatus.ACTIVE).update(
                status=status, ended_at=bot.now()):
            return False
        booking.status = status
        await staff_service.audit(actor, f"booking_{status}", member=booking.member_id,
                                  after={"booking": booking.id})
    await _void_reminders(booking)
    return True


# --- the waitlist ---

def _slot_label(service_id: int, resource_id: int | None, start: dt.datetime) -> str:
    return f"{service_id}:{resource_id or '*'}:{start.astimezone(dt.UTC):%Y%m%d%H%M}"


async def join_waitlist(bot, member: Member, service: Service, start: dt.datetime, *, key: str,
                        resource: Resource | None = None) -> tuple[WaitEntry, int]:
    """Wait for a place at a full start (once per member and start); the entry and how many
    are ahead."""
    start = start.astimezone(dt.UTC)
    clash = await holding_at(member.id, start, start + dt.timedelta(minutes=service.minutes))
    if clash is not None:
        raise BookingRefused("booking_twice.j2", booking=clash)
    slot = _slot_label(service.id, resource.id if resource else None, start)
    try:
        entry = await WaitEntry.create(key=key, member_id=member.id, service_id=service.id,
                                       resource_id=resource.id if resource else None,
                                       starts_at=start, open_slot=slot)
    except IntegrityError:
        entry = await WaitEntry.get_or_none(key=key) or \
            await WaitEntry.get(member_id=member.id, open_slot=slot)
    ahead = await WaitEntry.filter(service_id=service.id, starts_at=start,
                                   status=WaitStatus.WAITING, id__lt=entry.id).count()
    return entry, ahead


async def waiting(member_id: int, now: dt.datetime) -> list[WaitEntry]:
    """The member's places on waitlists still to come, soonest first."""
    return await WaitEntry.filter(member_id=member_id, status=WaitStatus.WAITING,
                                  starts_at__gt=now).order_by("starts_at") \
        .select_related("service", "resource")


async def leave_waitlists(member_id: int) -> int:
    """取消候补: the member stops waiting everywhere; how many places they left."""
    return await WaitEntry.filter(member_id=member_id, status=WaitStatus.WAITING).update(
        status=WaitStatus.CANCELLED, open_slot=None)


async def offer_freed(bot, freed: Booking) -> int:
    """After a place was freed: hold it for the first waiting member it fits (a booking in
    `offered`, for offer_minutes) and tell them; then the next, while places fit. Returns how
    many offers were made."""
    now = bot.now()
    resource = await Resource.get(id=freed.resource_id).select_related("store")
    waiting = await WaitEntry.filter(
        Q(resource_id=None) | Q(resource_id=resource.id), status=WaitStatus.WAITING,
        starts_at__gt=now, starts_at__lt=freed.ends_at,
        starts_at__gte=freed.starts_at - dt.timedelta(days=1)) \
        .order_by("id").select_related("service", "member")
    made = 0
    for entry in waiting:
        if resource.code not in entry.service.resources:
            continue
        try:
            booked = await _place(bot, entry.member, entry.service, entry.starts_at,
                                  resource=resource, key=f"wait:{entry.id}:offer", actor=None,
                                  status=BookingStatus.OFFERED)
        except BookingRefused:
            continue  # it does not fit this entry's time: the next one may
        expires = now + dt.timedelta(minutes=bot.config.booking.offer_minutes)
        async with in_transaction():
            if not await WaitEntry.filter(id=entry.id, status=WaitStatus.WAITING).update(
                    status=WaitStatus.OFFERED, booking_id=booked.booking.id):
                continue  # another worker made this offer
            await Booking.filter(id=booked.booking.id).update(offer_expires_at=expires)
        booked.booking.offer_expires_at = expires
        await notices.waitlist_offer(bot, booked.booking)
        made += 1
    return made


async def accept_offer(bot, member: Member) -> Booking | None:
    """The member's held place becomes their booking (确认候补); None when no offer is open."""
    now = bot.now()
    offer = await Booking.filter(member_id=member.id, status=BookingStatus.OFFERED,
                                 offer_expires_at__gt=now).order_by("starts_at").first() \
        .select_related("service", "resource", "store")
    if offer is None:
        return None
    async with in_transaction():
        if not await Booking.filter(id=offer.id, status=BookingStatus.OFFERED).update(
                status=BookingStatus.ACTIVE, offer_expires_at=None):
            return None
        await WaitEntry.filter(booking_id=offer.id).update(status=WaitStatus.BOOKED,
                                                           open_slot=None)
    offer.status = BookingStatus.ACTIVE
    return offer


async def lapse_offers(bot) -> int:
    """Offers nobody confirmed in time: the place goes to the next in line (a scheduler tick)."""
    now = bot.now()
    lapsed = 0
    for offer in await Booking.filter(status=BookingStatus.OFFERED, offer_expires_at__lte=now) \
            .select_related("service", "resource"):
        async with in_transaction():
            if not await _end(offer, BookingStatus.LAPSED, now,
                              allowed=(BookingStatus.OFFERED,)):
                continue
            await WaitEntry.filter(booking_id=offer.id).update(status=WaitStatus.LAPSED,
                                                               open_slot=None)
        offer.status, offer.ended_at = BookingStatus.LAPSED, now
        await notices.waitlist_lapsed(bot, offer)
        await offer_freed(bot, offer)
        lapsed += 1
    return lapsed


# --- reminders ---

async def send_reminders(bot) -> int:
    """The evening before (at remind_evening_at) and remind_before_minutes before the start,
    each once: the outbox's key stops a second send whichever worker runs the tick, and the
    booking's mark keeps the next tick from asking again. A booking made after the moment a
    reminder was due needs none."""
    b = bot.config.booking
    tz = bot.config.shop.tz
    now = bot.now()
    today = bot.today()
    evening = dt.datetime.combine(today, dt.time.fromisoformat(b.remind_evening_at), tz) \
        .astimezone(dt.UTC)
    sent = 0
    if now >= evening:
        tomorrow = dt.datetime.combine(today + dt.timedelta(days=1), dt.time(), tz) \
            .astimezone(dt.UTC)
        due = Booking.filter(status=BookingStatus.ACTIVE, evening_reminded_at=None,
                             starts_at__gte=tomorrow, starts_at__lt=tomorrow + dt.timedelta(days=1),
                             created_at__lt=evening)
        sent += await _remind(bot, due, "evening", now)
    soon = dt.timedelta(minutes=b.remind_before_minutes)
    due = Booking.filter(status=BookingStatus.ACTIVE, soon_reminded_at=None,
                         starts_at__gt=now, starts_at__lte=now + soon)
    sent += await _remind(bot, due, "soon", now, booked_before=soon)
    return sent


async def _remind(bot, due, which: str, now: dt.datetime, *,
                  booked_before: dt.timedelta | None = None) -> int:
    column = f"{which}_reminded_at"
    sent = 0
    for booking in await due.select_related("service", "resource", "store").order_by("id"):
        if booked_before is not None and booking.created_at > booking.starts_at - booked_before:
            await Booking.filter(id=booking.id).update(**{column: now})  # booked just now
            continue
        await notices.booking_reminder(bot, booking, which)
        await Booking.filter(id=booking.id).update(**{column: now})
        sent += 1
    return sent
