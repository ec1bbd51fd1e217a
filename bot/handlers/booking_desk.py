"""The booking desk, for staff in the same chat: 今日预约 (the day's bookings by resource),
到店 and 爽约 (arrivals and no-shows), and 代约 / 代改 / 代取消 (booking, moving and cancelling
for a member past the member deadlines). The services audit each change and tell the member.

A clerk or manager works on the bookings of their own store; an owner on every store's."""

from __future__ import annotations

import datetime as dt
import functools
import itertools

from bot.chat.context import Context
from bot.chat.routing import Router
from bot.chat.staff_commands import staff_command as _staff_command
from bot.infra.vault import mask_phone
from bot.models import Booking, BookingStatus, Member, Resource, Service, Store
from bot.notifications.replies import Reply
from bot.rules import when
from bot.services import Refused, booking_desk, bookings, members
from bot.services.bookings import BookingRefused
from bot.services.staff import Actor

router = Router("booking_desk")
staff_command = functools.partial(_staff_command, on=router)

DAY_USAGE = "今日预约 [日期]"
ARRIVED_USAGE = "到店 <预约号>"
NO_SHOW_USAGE = "爽约 <预约号>"
BOOK_USAGE = "代约 <手机号|卡号> <服务> <日期> <时间> [人]"
MOVE_USAGE = "代改 <预约号> <日期> <时间> [人]"
CANCEL_USAGE = "代取消 <预约号>"


def _masked(ctx: Context, member: Member) -> str:
    return mask_phone(members.phone_of(ctx.bot, member))


async def _booking(ctx: Context, actor: Actor, text: str, usage: str) -> Booking:
    """The booking a number names, with its member, if it is this staff member's store's."""
    digits = text.lstrip("#＃")
    if not digits.isascii() or not digits.isdigit() or len(digits) > 10:
        raise Refused("staff_usage.j2", usage=usage)
    booking = await bookings.by_number(int(digits))
    if booking is None:
        raise Refused("booking_desk_unknown.j2", number=digits)
    if not booking_desk.may_handle(actor, booking.store_id):
        raise Refused("booking_desk_other_store.j2", booking=booking)
    booking.member = await Member.get(id=booking.member_id)
    return booking


def _start(ctx: Context, parsed: when.When, usage: str) -> dt.datetime:
    if parsed.day is None or parsed.time is None:
        raise Refused("booking_desk_bad_when.j2", usage=usage)
    start = dt.datetime.combine(parsed.day, parsed.time, ctx.bot.config.shop.tz)
    if start < ctx.now:
        raise Refused("booking_desk_past.j2", start=start)
    return start.astimezone(dt.UTC)


def _named(rows, text: str):
    """The service or resource a word names: its code (any case) or its name."""
    return next((r for r in rows if text in (r.name, r.code) or text.upper() == r.code), None)


async def _resources_here(actor: Actor, service: Service) -> list[Resource]:
    return [r for r in await bookings.resources_of(service)
            if booking_desk.may_handle(actor, r.store_id)]


def _refused(ctx: Context, exc: BookingRefused, member: Member | None = None, *,
             moving: bool = False) -> Reply:
    """The service's refusal, in the words staff need (the member's templates speak to them)."""
    return ctx.reply("booking_desk_refused.j2", reason=exc.reason.removesuffix(".j2"),
                     masked=_masked(ctx, member) if member else "", moving=moving,
                     **exc.values)


# --- the day's list ---

@staff_command("今日预约", "预约表", action="booking_desk", usage=DAY_USAGE, args=(0, 1))
async def day_list(ctx: Context, actor: Actor, parts: list[str]) -> Reply:
    day = when.parse_day(parts[0], ctx.bot.today()) if parts else ctx.bot.today()
    if day is None:
        return ctx.reply("booking_desk_bad_when.j2", usage=DAY_USAGE)
    everywhere = booking_desk.everywhere(actor)
    found = await bookings.day_list(ctx.bot, None if everywhere else actor.store, day)
    groups = [(rows[0].resource, [(b, _masked(ctx, b.member)) for b in rows])
              for _, group in itertools.groupby(found, key=lambda b: b.resource_id)
              if (rows := list(group))]
    # An owner sees every store's: each resource says where it is.
    stores = dict(await Store.all().values_list("id", "name")) if everywhere else {}
    return ctx.reply("booking_desk_day.j2", day=day, groups=groups, count=len(found),
                     store=actor.store, stores=stores, today=ctx.bot.today())


# --- at the shop: arrivals and no-shows ---

@staff_command("到店", "签到到店", action="booking_desk", usage=ARRIVED_USAGE, args=(1, 1))
async def arrived(ctx: Context, actor: Actor, parts: list[str]) -> Reply:
    booking = await _booking(ctx, actor, parts[0], ARRIVED_USAGE)
    who = {"booking": booking, "masked": _masked(ctx, booking.member)}
    if booking.status == BookingStatus.ACTIVE and \
            booking.starts_at.astimezone(ctx.bot.config.shop.tz).date() > ctx.bot.today():
        return ctx.reply("booking_desk_not_yet.j2", what="到店", **who)
    arrival = await booking_desk.arrive(ctx.bot, booking, actor=actor)
    if arrival.visit is not None:
        booking_desk.visit_told(ctx.bot, arrival)
    if not arrival.marked and booking.status != BookingStatus.ARRIVED:
        return ctx.reply("booking_desk_not_active.j2", **who)
    return ctx.reply("booking_desk_arrived.j2", already=not arrival.marked, punch=arrival.visit,
                     product=arrival.product, **who)


@staff_command("爽约", action="booking_desk", usage=NO_SHOW_USAGE, args=(1, 1))
async def no_show(ctx: Context, actor: Actor, parts: list[str]) -> Reply:
    booking = await _booking(ctx, actor, parts[0], NO_SHOW_USAGE)
    who = {"booking": booking, "masked": _masked(ctx, booking.member)}
    if booking.status == BookingStatus.ACTIVE and booking.starts_at > ctx.now:
        return ctx.reply("booking_desk_not_yet.j2", what="爽约", **who)
    result = await booking_desk.no_show(ctx.bot, booking, actor=actor)
    if not result.marked and booking.status != BookingStatus.NO_SHOW:
        return ctx.reply("booking_desk_not_active.j2", **who)
    return ctx.reply("booking_desk_no_show.j2", already=not result.marked, result=result, **who)


# --- for a member: book, move, cancel ---

@staff_command("代约", action="booking_for_member", usage=BOOK_USAGE, args=(3, 5))
async def book_for(ctx: Context, actor: Actor, parts: list[str]) -> Reply:
    member = await members.lookup(ctx.bot, parts[0])
    parsed = when.split_when(parts[1:], ctx.bot.today())
    if not 1 <= len(parsed.rest) <= 2:
        return ctx.reply("staff_usage.j2", usage=BOOK_USAGE)
    start = _start(ctx, parsed, BOOK_USAGE)
    offered = await bookings.services()
    service = _named(offered, parsed.rest[0])
    if service is None:
        return ctx.reply("booking_desk_unknown_service.j2", text=parsed.rest[0],
                         services=offered)
    here = await _resources_here(actor, service)
    if len(parsed.rest) == 2:
        chosen = _named(here, parsed.rest[1])
        if chosen is None:
            return ctx.reply("booking_desk_unknown_resource.j2", text=parsed.rest[1],
                             service=service, resources=here)
        here = [chosen]
    if not here:
        return ctx.reply("booking_desk_unknown_resource.j2", text="", service=service,
                         resources=here)
    # One resource named, or this store's (all of the service's: let the service choose).
    everyone = len(here) == len(await bookings.resources_of(service))
    tries = [None] if everyone and len(here) > 1 else here
    for n, resource in enumerate(tries, start=1):
        try:
            booked = await bookings.book(ctx.bot, member, service, start, key=ctx.key,
                                         resource=resource, actor=actor)
            break
        except BookingRefused as exc:
            if n == len(tries) or exc.reason != "booking_full.j2":
                return _refused(ctx, exc, member)
    return ctx.reply("booking_desk_booked.j2", booking=booked.booking,
                     duplicate=booked.duplicate, member=member, masked=_masked(ctx, member))


@staff_command("代改", action="booking_for_member", usage=MOVE_USAGE, args=(3, 4))
async def move_for(ctx: Context, actor: Actor, parts: list[str]) -> Reply:
    booking = await _booking(ctx, actor, parts[0], MOVE_USAGE)
    parsed = when.split_when(parts[1:], ctx.bot.today())
    if len(parsed.rest) > 1:
        return ctx.reply("staff_usage.j2", usage=MOVE_USAGE)
    start = _start(ctx, parsed, MOVE_USAGE)
    resource = booking.resource  # the same person or room, unless another is named
    if parsed.rest:
        resource = _named(await _resources_here(actor, booking.service), parsed.rest[0])
        if resource is None:
            return ctx.reply("booking_desk_unknown_resource.j2", text=parsed.rest[0],
                             service=booking.service,
                             resources=await _resources_here(actor, booking.service))
    try:
        moved = await bookings.reschedule(ctx.bot, booking, start, key=ctx.key,
                                          resource=resource, actor=actor)
    except BookingRefused as exc:
        if exc.reason == "booking_gone.j2":
            return ctx.reply("booking_desk_not_active.j2", booking=booking,
                             masked=_masked(ctx, booking.member))
        return _refused(ctx, exc, booking.member, moving=True)
    return ctx.reply("booking_desk_moved.j2", booking=moved.booking, previous=booking,
                     duplicate=moved.duplicate, masked=_masked(ctx, booking.member))


@staff_command("代取消", action="booking_for_member", usage=CANCEL_USAGE, args=(1, 1))
async def cancel_for(ctx: Context, actor: Actor, parts: list[str]) -> Reply:
    booking = await _booking(ctx, actor, parts[0], CANCEL_USAGE)
    who = {"booking": booking, "masked": _masked(ctx, booking.member)}
    if not await bookings.cancel(ctx.bot, booking, actor=actor):
        await booking.refresh_from_db(fields=["status"])
        if booking.status == BookingStatus.CANCELLED:
            return ctx.reply("booking_desk_cancelled.j2", already=True, **who)
        return ctx.reply("booking_desk_not_active.j2", **who)
    return ctx.reply("booking_desk_cancelled.j2", already=False, **who)
