"""Bookings in chat, the member's side. 预约 (or the BOOK menu button) walks the Booking dialog:
service → day → time → who → 确认; `预约 洗剪吹 明天 15:00` jumps as far as it says. A taken
time offers the nearest free ones and the waitlist (候补); 确认候补 takes a place the waitlist
holds. 我的预约 lists what is booked, 取消预约 <预约号> cancels, 改约 <预约号> walks the dialog
again for a new time (bot/services/bookings.py decides; staff commands are in booking_desk).

Each step keeps what it offered in the dialog's data (plain JSON: ids, ISO dates and times), so
an answer is checked against the list the member saw, and the question can be asked again, by
the engine too, without loading anything.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from bot.chat import commands
from bot.chat.context import Context
from bot.chat.routing import Router
from bot.chat.states import Booking as Steps
from bot.chat.states import State
from bot.models import BookingStatus, Resource, Service
from bot.notifications.replies import Reply
from bot.rules import when
from bot.services import bookings
from bot.services.bookings import BookingRefused, FreeTime

router = Router("booking")

YES = ("确认", "确定", "是", "好", "好的", "对", "确认预约")
BACK = ("返回", "上一步", "后退")
ANY = ("0", "任意", "都可以", "随便", "不限")
WAIT = ("候补", "排队", "等位", "加入候补")


# --- what the steps keep, and their questions ---

def _at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


@router.question_values(Steps)
def _question_values(ctx: Context) -> dict[str, Any]:
    """What the step templates show, read back from the dialog's data."""
    data = ctx.dialog.data
    values: dict[str, Any] = {
        "services": data.get("services", []),
        "service": data.get("service_name", ""),
        "days": [dt.date.fromisoformat(day) for day in data.get("days", [])],
        "day": dt.date.fromisoformat(data["day"]) if data.get("day") else None,
        "times": [FreeTime(_at(start), places, ()) for start, places in data.get("times", [])],
        "resources": data.get("resources", []),
        "moving": data.get("moving"),
        "hint": "",
    }
    if data.get("start"):
        values["start"] = _at(data["start"])
        values["resource"] = data.get("resource_name", "")
        values["price"] = data.get("price", 0)
        values["minutes"] = data.get("minutes", 0)
    if data.get("wanted"):
        values["wanted"] = _at(data["wanted"])
        values["nearest"] = [FreeTime(_at(start), places, ())
                             for start, places in data.get("nearest", [])]
        values["waitlist"] = data.get("waitable", False)
        values["closed"] = data.get("closed", False)
    values["chosen"] = data.get("chosen_name", "")
    return values


def _question(ctx: Context, state: State, hint: str = "") -> Reply:
    """The step's question, with a short hint when the answer before was not one it offered."""
    return ctx.reply(state.question, **{**_question_values(ctx), "hint": hint})


async def _service(ctx: Context) -> Service | None:
    return await Service.get_or_none(id=ctx.dialog.data.get("service_id"), active=True)


async def _resource(resource_id: int | None) -> Resource | None:
    if resource_id is None:
        return None
    # With its store: a booking made on it is shown with the store's name.
    return await Resource.get_or_none(id=resource_id, active=True).select_related("store")


def _keep_service(ctx: Context, service: Service) -> None:
    ctx.dialog.update(service_id=service.id, service_name=service.name,
                      minutes=service.minutes, price=service.price)


# --- the steps, each entered by a function that loads its list and asks ---

async def _ask_service(ctx: Context, hint: str = "") -> Reply:
    offered = await bookings.services()
    if not offered:
        ctx.dialog.clear()
        return ctx.reply("booking_none.j2")
    ctx.dialog.set(Steps.service,
                   services=[[s.id, s.name, s.minutes, s.price] for s in offered])
    return _question(ctx, Steps.service, hint)


async def _ask_day(ctx: Context, service: Service, hint: str = "") -> Reply:
    resource = await _resource(ctx.dialog.data.get("chosen_resource"))
    days = await bookings.free_days(ctx.bot, service, resource=resource)
    _keep_service(ctx, service)
    if not days:
        ctx.dialog.clear()
        return ctx.reply("booking_no_days.j2", service=service,
                         days=ctx.bot.config.booking.horizon_days)
    ctx.dialog.set(Steps.day, days=[day.isoformat() for day in days])
    return _question(ctx, Steps.day, hint)


async def _ask_time(ctx: Context, service: Service, day: dt.date, hint: str = "") -> Reply:
    resource = await _resource(ctx.dialog.data.get("chosen_resource"))
    times = await bookings.free_times(ctx.bot, service, day, resource=resource)
    if not times:
        return await _ask_day(ctx, service, hint="booking_day_full")
    ctx.dialog.set(Steps.time, day=day.isoformat(),
                   times=[[t.start.isoformat(), t.places] for t in times],
                   free_at={t.start.isoformat(): list(t.resources) for t in times})
    return _question(ctx, Steps.time, hint)


async def _ask_resource(ctx: Context, service: Service, start: dt.datetime,
                        hint: str = "") -> Reply:
    """Who, among those free at `start`; skipped when one resource serves the service or
    the member named one."""
    data = ctx.dialog.data
    ctx.dialog.update(start=start.isoformat())
    serving = await bookings.resources_of(service)
    if data.get("chosen_resource") or len(serving) <= 1:
        only = serving[0] if len(serving) == 1 else None
        chosen = await _resource(data.get("chosen_resource"))
        return await _ask_confirm(ctx, service, start, chosen or only)
    free_ids = data.get("free_at", {}).get(start.isoformat())
    free = [r for r in serving if free_ids is None or r.id in free_ids]
    ctx.dialog.set(Steps.resource, resources=[[r.id, r.name] for r in free])
    return _question(ctx, Steps.resource, hint)


async def _ask_confirm(ctx: Context, service: Service, start: dt.datetime,
                       resource: Resource | None) -> Reply:
    _keep_service(ctx, service)
    ctx.dialog.set(Steps.confirm, start=start.isoformat(),
                   day=start.astimezone(ctx.bot.config.shop.tz).date().isoformat(),
                   resource_id=resource.id if resource else None,
                   resource_name=resource.name if resource else "")
    return _question(ctx, Steps.confirm)


async def _ask_full(ctx: Context, service: Service, wanted: dt.datetime,
                    resource: Resource | None, nearest: list[FreeTime]) -> Reply:
    """The wanted time is taken: the nearest free ones, and 候补 when waiting can help."""
    _keep_service(ctx, service)
    # A move is not a new place: waiting for one is for 预约.
    opens = await bookings.opens_at(ctx.bot, service, wanted, resource)
    waitable = opens and not ctx.dialog.data.get("moving")
    ctx.dialog.set(Steps.full, wanted=wanted.isoformat(),
                   day=wanted.astimezone(ctx.bot.config.shop.tz).date().isoformat(),
                   nearest=[[t.start.isoformat(), t.places] for t in nearest],
                   free_at={t.start.isoformat(): list(t.resources) for t in nearest},
                   waitable=waitable, closed=not opens,
                   resource_id=resource.id if resource else None,
                   chosen_resource=resource.id if resource else None,
                   chosen_name=resource.name if resource else "")
    return _question(ctx, Steps.full)


# --- starting: 预约, the menu button, one line ---

def _match(name: str, named: list[Any]) -> Any | None:
    """An exact name, else the one name that starts with it, else the one that contains it."""
    for test in (lambda n: n == name, lambda n: n.startswith(name), lambda n: name in n):
        found = [item for item in named if test(item.name)]
        if len(found) == 1:
            return found[0]
        if found:
            return None
    return None


@router.global_command(commands.BOOK, help="book", shown=("预约",))
async def start_booking(ctx: Context) -> Reply:
    if ctx.member is None:
        return ctx.not_registered()
    ctx.dialog.clear()
    words = ctx.text.split()[1:] if ctx.inbound.kind == "text" else []
    if not words or ctx.text.split()[0] != "预约":
        return await _ask_service(ctx)
    said = when.split_when(words, ctx.bot.today())
    offered = await bookings.services()
    service, unknown = None, []
    for word in said.rest:
        found = _match(word, offered) if service is None else None
        if found is not None:
            service = found
        else:
            unknown.append(word)
    if service is None:
        return await _ask_service(ctx, hint="booking_which_service")
    resource = None
    if unknown:
        resource = _match(unknown[0], await bookings.resources_of(service))
        if resource is not None:
            ctx.dialog.update(chosen_resource=resource.id, chosen_name=resource.name)
    return await _jump(ctx, service, said.day, said.time, resource)


async def _jump(ctx: Context, service: Service, day: dt.date | None, time: dt.time | None,
                resource: Resource | None) -> Reply:
    """As far as a one-line booking says: the summary (day and time; whoever is free unless
    someone was named), the time step (a day), else the day step. A taken time offers the
    nearest free ones instead."""
    if day is None:
        return await _ask_day(ctx, service)
    tz = ctx.bot.config.shop.tz
    start = dt.datetime.combine(day, time or dt.time.max, tz).astimezone(dt.UTC)
    try:  # a day alone is checked by its last moment: today still has times left
        bookings.check_start(ctx.bot, start)
    except BookingRefused as refused:
        ctx.dialog.clear()
        return ctx.reply(refused.reason, **refused.values)
    _keep_service(ctx, service)
    if time is None:
        return await _ask_time(ctx, service, day)
    clash = await bookings.holding_at(ctx.member.id, start,
                                      start + dt.timedelta(minutes=service.minutes))
    if clash is not None and clash.id != ctx.dialog.data.get("moving"):
        ctx.dialog.clear()  # their own booking, not a full time: nothing to wait for
        return ctx.reply("booking_twice.j2", booking=clash)
    free = await bookings.free_times(ctx.bot, service, day, resource=resource)
    if not any(t.start == start for t in free):
        nearest = await bookings.nearest_free(ctx.bot, service, start, resource=resource)
        return await _ask_full(ctx, service, start, resource, nearest)
    serving = await bookings.resources_of(service)
    return await _ask_confirm(ctx, service, start,
                              resource or (serving[0] if len(serving) == 1 else None))


def _can_change(ctx: Context, booking) -> bool:
    """Whether the member can still cancel or move it themselves (the confirmation says)."""
    minutes = ctx.bot.config.booking.cancel_before_minutes
    return ctx.now <= booking.starts_at - dt.timedelta(minutes=minutes)


# --- the answers, step by step (a number is one of the list the member saw) ---


@router.text(*ANY[1:], state=(Steps.day, Steps.time, Steps.full))
async def any_resource(ctx: Context) -> Reply:
    """任意 while a stylist was named: the same step again, over everyone who serves it."""
    service = await _service(ctx)
    if service is None:
        return await _gone(ctx)
    data = ctx.dialog.data
    ctx.dialog.update(chosen_resource=None, chosen_name="")
    if ctx.dialog.state == Steps.day or not data.get("day"):
        return await _ask_day(ctx, service)
    return await _ask_time(ctx, service, dt.date.fromisoformat(data["day"]))

def _number(ctx: Context) -> int | None:
    text = ctx.text.strip()
    return int(text) if text.isascii() and text.isdigit() and len(text) < 4 else None


def _a_number(ctx: Context) -> bool:
    return _number(ctx) is not None


def _picked(ctx: Context, options: list) -> Any | None:
    n = _number(ctx)
    return options[n - 1] if n is not None and 1 <= n <= len(options) else None


async def _gone(ctx: Context) -> Reply:
    """The service went away under the dialog (set up again meanwhile): start over."""
    return await _ask_service(ctx, hint="booking_which_service")


@router.text(*BACK, state=Steps)
async def go_back(ctx: Context) -> Reply:
    state, data = ctx.dialog.state, ctx.dialog.data
    if state == Steps.service:
        return _question(ctx, Steps.service, hint="booking_first_step")
    service = await _service(ctx)
    if service is None:
        return await _gone(ctx)
    if state == Steps.day:
        if data.get("moving"):
            return _question(ctx, Steps.day, hint="booking_first_step")
        return await _ask_service(ctx)
    if state == Steps.time:
        return await _ask_day(ctx, service)
    if state == Steps.confirm and data.get("resources"):
        # Back to who, when it was asked; else to the times, as from who and from a taken time.
        return await _ask_resource(ctx, service, _at(data["start"]))
    if not data.get("day"):
        return await _ask_day(ctx, service)
    return await _ask_time(ctx, service, dt.date.fromisoformat(data["day"]))


@router.answer(Steps.service, fits=_a_number)
async def pick_service(ctx: Context) -> Reply:
    picked = _picked(ctx, ctx.dialog.data.get("services", []))
    if picked is None:
        return _question(ctx, Steps.service, hint="booking_pick_number")
    service = await Service.get_or_none(id=picked[0], active=True)
    if service is None:
        return await _gone(ctx)
    return await _ask_day(ctx, service)


@router.message(state=Steps.service)
async def service_unclear(ctx: Context) -> Reply:
    offered = await bookings.services()
    service = _match(ctx.text.strip(), offered) if ctx.text.strip() else None
    if service is not None:
        return await _ask_day(ctx, service)
    return _question(ctx, Steps.service, hint="booking_pick_number")


def _a_day(ctx: Context) -> bool:
    return _a_number(ctx) or when.parse_day(ctx.text, ctx.bot.today()) is not None


@router.answer(Steps.day, fits=_a_day)
async def pick_day(ctx: Context) -> Reply:
    days = ctx.dialog.data.get("days", [])
    picked = _picked(ctx, days)
    if picked is None and _number(ctx) is None:
        typed = when.parse_day(ctx.text, ctx.bot.today())
        picked = typed.isoformat() if typed and typed.isoformat() in days else None
    if picked is None:
        return _question(ctx, Steps.day, hint="booking_pick_number")
    service = await _service(ctx)
    if service is None:
        return await _gone(ctx)
    return await _ask_time(ctx, service, dt.date.fromisoformat(picked))


@router.message(state=Steps.day)
async def day_unclear(ctx: Context) -> Reply:
    return _question(ctx, Steps.day, hint="booking_pick_number")


def _a_time(ctx: Context) -> bool:
    return _a_number(ctx) or when.parse_time(ctx.text) is not None


def _typed_start(ctx: Context, day: str | None) -> str | None:
    typed = when.parse_time(ctx.text)
    if typed is None or day is None:
        return None
    start = dt.datetime.combine(dt.date.fromisoformat(day), typed, ctx.bot.config.shop.tz)
    return start.astimezone(dt.UTC).isoformat()


async def _take_time(ctx: Context, state: State, options: list) -> Reply:
    """A start picked from the times (or the nearest ones) offered: who, or the summary."""
    picked = _picked(ctx, options)
    start = picked[0] if picked else None
    if start is None and _number(ctx) is None:
        typed = _typed_start(ctx, ctx.dialog.data.get("day"))
        start = typed if typed in {option[0] for option in options} else None
    if start is None:
        return _question(ctx, state, hint="booking_pick_number")
    service = await _service(ctx)
    if service is None:
        return await _gone(ctx)
    ctx.dialog.update(wanted=None)
    return await _ask_resource(ctx, service, _at(start))


@router.answer(Steps.time, fits=_a_time)
async def pick_time(ctx: Context) -> Reply:
    return await _take_time(ctx, Steps.time, ctx.dialog.data.get("times", []))


@router.message(state=Steps.time)
async def time_unclear(ctx: Context) -> Reply:
    return _question(ctx, Steps.time, hint="booking_pick_number")


def _a_resource(ctx: Context) -> bool:
    text = ctx.text.strip()
    return _a_number(ctx) or text in ANY or any(
        text and text in name for _, name in ctx.dialog.data.get("resources", []))


@router.answer(Steps.resource, fits=_a_resource)
async def pick_resource(ctx: Context) -> Reply:
    text, options = ctx.text.strip(), ctx.dialog.data.get("resources", [])
    service = await _service(ctx)
    if service is None:
        return await _gone(ctx)
    start = _at(ctx.dialog.data["start"])
    if text in ANY:
        return await _ask_confirm(ctx, service, start, None)
    picked = _picked(ctx, options)
    if picked is None and _number(ctx) is None:
        named = [option for option in options if text in option[1]]
        picked = named[0] if len(named) == 1 else None
    if picked is None:
        return _question(ctx, Steps.resource, hint="booking_pick_number")
    return await _ask_confirm(ctx, service, start, await _resource(picked[0]))


@router.message(state=Steps.resource)
async def resource_unclear(ctx: Context) -> Reply:
    return _question(ctx, Steps.resource, hint="booking_pick_number")


@router.text(*YES, state=Steps.confirm)
async def confirm(ctx: Context) -> Reply:
    if ctx.member is None:
        ctx.dialog.clear()
        return ctx.not_registered()
    data = dict(ctx.dialog.data)
    service = await _service(ctx)
    if service is None:
        return await _gone(ctx)
    start = _at(data["start"])
    resource = await _resource(data.get("resource_id"))
    try:
        if data.get("moving"):
            old = await bookings.by_number(data["moving"])
            if old is None or old.member_id != ctx.member.id:
                ctx.dialog.clear()
                return ctx.reply("booking_gone.j2")
            booked = await bookings.reschedule(ctx.bot, old, start, key=ctx.key,
                                               resource=resource)
        else:
            booked = await bookings.book(ctx.bot, ctx.member, service, start, key=ctx.key,
                                         resource=resource)
    except BookingRefused as refused:
        if refused.reason == "booking_full.j2":
            ctx.dialog.update(day=start.astimezone(ctx.bot.config.shop.tz).date().isoformat())
            return await _ask_full(ctx, service, start, resource, refused.values["nearest"])
        ctx.dialog.clear()
        return ctx.reply(refused.reason, **refused.values)
    ctx.dialog.clear()
    return ctx.reply("booking_done.j2", booking=booked.booking,
                     moved=data.get("moving"), can_change=_can_change(ctx, booked.booking),
                     cancel_before=ctx.bot.config.booking.cancel_before_minutes)


@router.message(state=Steps.confirm)
async def confirm_unclear(ctx: Context) -> Reply:
    return _question(ctx, Steps.confirm, hint="booking_say_yes")


# --- a taken time: the nearest free ones, or the waitlist ---

@router.answer(Steps.full, fits=_a_time)
async def pick_nearest(ctx: Context) -> Reply:
    return await _take_time(ctx, Steps.full, ctx.dialog.data.get("nearest", []))


@router.text(*WAIT, state=Steps.full)
async def join_waitlist(ctx: Context) -> Reply:
    data = dict(ctx.dialog.data)
    if not data.get("waitable"):
        return _question(ctx, Steps.full, hint="booking_pick_number")
    service = await _service(ctx)
    if service is None or ctx.member is None:
        return await _gone(ctx)
    resource = await _resource(data.get("resource_id"))
    ctx.dialog.clear()
    try:
        entry, ahead = await bookings.join_waitlist(ctx.bot, ctx.member, service,
                                                    _at(data["wanted"]), key=ctx.key,
                                                    resource=resource)
    except BookingRefused as refused:
        return ctx.reply(refused.reason, **refused.values)
    return ctx.reply("booking_waitlisted.j2", service=service, start=entry.starts_at,
                     resource=resource, ahead=ahead,
                     offer_minutes=ctx.bot.config.booking.offer_minutes)


@router.message(state=Steps.full)
async def full_unclear(ctx: Context) -> Reply:
    return _question(ctx, Steps.full, hint="booking_pick_number")


@router.global_command(commands.ACCEPT_OFFER, help="accept_offer")
async def accept_offer(ctx: Context) -> Reply:
    if ctx.member is None:
        return ctx.not_registered()
    booking = await bookings.accept_offer(ctx.bot, ctx.member)
    if booking is None:
        return ctx.reply("booking_no_offer.j2")
    return ctx.reply("booking_done.j2", booking=booking, moved=None,
                     can_change=_can_change(ctx, booking),
                     cancel_before=ctx.bot.config.booking.cancel_before_minutes)


# --- what is booked: 我的预约, 取消预约, 改约 ---

@router.global_command(commands.MY_BOOKINGS, help="my_bookings")
async def my_bookings(ctx: Context) -> Reply:
    if ctx.member is None:
        return ctx.not_registered()
    held = await bookings.upcoming(ctx.member.id, ctx.now)
    return ctx.reply("booking_mine.j2", bookings=held, asked="",
                     waits=await bookings.waiting(ctx.member.id, ctx.now))


@router.global_command(commands.LEAVE_WAITLIST, help="leave_waitlist")
async def leave_waitlist(ctx: Context) -> Reply:
    if ctx.member is None:
        return ctx.not_registered()
    left = await bookings.leave_waitlists(ctx.member.id)
    return ctx.reply("booking_left_waitlist.j2", count=left)


async def _own_booking(ctx: Context, asked: str,
                       allowed: tuple[BookingStatus, ...]) -> tuple[Any, Reply | None]:
    """The member's own booking named by the number after the command, or the answer saying
    which numbers there are."""
    parts = ctx.text.split()
    if len(parts) != 2 or not parts[1].isascii() or not parts[1].isdigit():
        held = await bookings.upcoming(ctx.member.id, ctx.now)
        return None, ctx.reply("booking_mine.j2", bookings=held, asked=asked, waits=[])
    found = await bookings.by_number(int(parts[1]))
    if found is None or found.member_id != ctx.member.id or found.status not in allowed \
            or found.ends_at <= ctx.now:
        return None, ctx.reply("booking_not_found.j2", number=parts[1], asked=asked)
    return found, None


@router.global_command(commands.CANCEL_BOOKING, help="cancel_booking",
                       shown=("取消预约 预约号",))
async def cancel_booking(ctx: Context) -> Reply:
    if ctx.member is None:
        return ctx.not_registered()
    booking, answer = await _own_booking(ctx, "取消预约", bookings.HOLDING)
    if answer is not None:
        return answer
    try:
        cancelled = await bookings.cancel(ctx.bot, booking)
    except BookingRefused as refused:
        return ctx.reply(refused.reason, **refused.values)
    if not cancelled:
        return ctx.reply("booking_not_found.j2", number=booking.id, asked="取消预约")
    return ctx.reply("booking_cancel_done.j2", booking=booking)


@router.global_command(commands.MOVE_BOOKING, help="move_booking", shown=("改约 预约号",))
async def move_booking(ctx: Context) -> Reply:
    if ctx.member is None:
        return ctx.not_registered()
    booking, answer = await _own_booking(ctx, "改约", (BookingStatus.ACTIVE,))
    if answer is not None:
        return answer
    try:
        bookings.check_move(ctx.bot, booking)
    except BookingRefused as refused:
        return ctx.reply(refused.reason, **refused.values)
    ctx.dialog.clear()
    ctx.dialog.update(moving=booking.id)
    return await _ask_day(ctx, booking.service)
