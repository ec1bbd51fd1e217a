"""The Bookings page: a store's bookings as a day calendar (a column per resource, a row per
slot in shop time) or a week calendar (a row per resource, a column per day). A click on a
booking opens its panel (htmx): 到店, 爽约, 取消 and 改约, through the same services as the
staff chat's 到店, 爽约, 代取消 and 代改 (bot/handlers/booking_desk.py), with the same
permissions (bot/services/staff.py REQUIRED_ROLE) and the same refusals; the services audit each
change and tell the member.

Who sees what: an owner any store (they choose it), a manager their store, a clerk their store's
bookings of today (the issue's "today's bookings"). A booking of another store, asked for by
its id, is not found (404), as 到店 <预约号> in chat refuses it.

Each POST acts at most once: 到店 / 爽约 / 取消 are conditional updates from the booking's
state (a double click finds it done), and 改约 carries a nonce from the form that makes the
move's key, so a second submit of the same form finds the move already made.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from bot.config import parse_ranges
from bot.console import query
from bot.console.pages import render, require
from bot.console.session import bot_of
from bot.infra.vault import mask_phone
from bot.models import Booking, BookingStatus, Closure, Member, Resource, Store
from bot.models.staff import Role
from bot.rules import slots
from bot.services import booking_desk, bookings, members
from bot.services.bookings import HOLDING, BookingRefused
from bot.services.console_auth import ConsoleUser
from bot.services.staff import REQUIRED_ROLE

routes = web.RouteTableDef()

DESK = REQUIRED_ROLE["booking_desk"]  # the day's list, 到店, 爽约
FOR_MEMBER = REQUIRED_ROLE["booking_for_member"]  # 代改, 代取消
VIEWS = ("day", "week")
WEEKDAYS = "一二三四五六日"
STATUS_NAMES = {
    BookingStatus.ACTIVE: "已预约", BookingStatus.OFFERED: "候补保留",
    BookingStatus.ARRIVED: "已到店", BookingStatus.NO_SHOW: "爽约",
    BookingStatus.CANCELLED: "已取消", BookingStatus.MOVED: "已改约",
    BookingStatus.LAPSED: "候补过期",
}
_NONCE = re.compile(r"[A-Za-z0-9_\-]{8,40}")
CHANGED = {"HX-Trigger": "bookings-changed"}  # the calendar behind the panel reloads


# --- what a booking looks like on the page ---

@dataclass(frozen=True)
class Shown:
    """A booking with its times in shop time and its member's masked phone."""

    booking: Booking
    starts: dt.datetime  # shop time
    ends: dt.datetime
    masked: str

    @property
    def status_name(self) -> str:
        return STATUS_NAMES.get(self.booking.status, self.booking.status)


def _masked(bot, member: Member) -> str:
    if member.erased_at is not None or not member.phone_enc:
        return "-"
    return mask_phone(members.phone_of(bot, member))


def shown(bot, booking: Booking) -> Shown:
    tz = bot.config.shop.tz
    return Shown(booking, booking.starts_at.astimezone(tz), booking.ends_at.astimezone(tz),
                 _masked(bot, booking.member))


def weekday(day: dt.date) -> str:
    return "周" + WEEKDAYS[day.weekday()]


# --- the calendars, as plain data ---

def _minutes(since: dt.datetime, at: dt.datetime) -> int:
    return int((at - since).total_seconds() // 60)


def _open_ranges(resource: Resource, day: dt.date, closures: list[Closure]
                 ) -> list[tuple[int, int]]:
    """The resource's opening hours on a day, in minutes from midnight, minus its closures
    (an all-day closure: none)."""
    if any(c.opens is None for c in closures):
        return []
    ranges = [(slots.minute_of(a), slots.minute_of(b, end=True))
              for a, b in parse_ranges(resource.hours.get(str(day.isoweekday()), ""))]
    for c in closures:
        lo, hi = slots.minute_of(c.opens), slots.minute_of(c.closes, end=True)
        ranges = [part for a, b in ranges for part in ((a, min(b, lo)), (max(a, hi), b))
                  if part[0] < part[1]]
    return ranges


def hours_text(ranges: list[tuple[int, int]]) -> str:
    if not ranges:
        return "休息"
    return "，".join(f"{a // 60:02d}:{a % 60:02d}-{b // 60:02d}:{b % 60:02d}" for a, b in ranges)


@dataclass
class Cell:
    starts: list[Shown] = field(default_factory=list)  # bookings that start in this slot
    busy: bool = False  # a booking that started earlier still runs
    open: bool = False  # inside the resource's opening hours


@dataclass
class DayRow:
    label: str  # HH:MM, shop time
    cells: list[Cell]


@dataclass
class DayGrid:
    resources: list[Resource]
    hours: list[str]  # per resource: its opening hours that day
    rows: list[DayRow]


def day_grid(day: dt.date, tz: dt.tzinfo, step: int, resources: list[Resource],
             found: list[Shown], closures: dict[int, list[Closure]]) -> DayGrid:
    """A row per slot from the earliest opening (or booking) to the latest closing (or end),
    a column per resource; a booking sits in the row its start falls in, in shop time."""
    midnight = dt.datetime.combine(day, dt.time(), tz)
    opens = {r.id: _open_ranges(r, day, closures.get(r.id, [])) for r in resources}
    spans = [(b, _minutes(midnight, b.starts),
              min(_minutes(midnight, b.ends), slots.DAY_MINUTES)) for b in found]
    edges = [m for ranges in opens.values() for a, b in ranges for m in (a, b)]
    edges += [m for _, a, b in spans for m in (a, b)]
    rows: list[DayRow] = []
    if edges:
        first = min(edges) // step * step
        last = min(-(-max(edges) // step) * step, slots.DAY_MINUTES)
        for minute in range(first, max(last, first + step), step):
            cells = []
            for r in resources:
                cell = Cell(open=any(a <= minute < b for a, b in opens[r.id]))
                for b, a, z in spans:
                    if b.booking.resource_id != r.id:
                        continue
                    if minute <= a < minute + step:
                        cell.starts.append(b)
                    elif a < minute < z and b.booking.status in (*HOLDING,
                                                                 BookingStatus.ARRIVED):
                        cell.busy = True
                cells.append(cell)
            rows.append(DayRow(f"{minute // 60:02d}:{minute % 60:02d}", cells))
    return DayGrid(resources, [hours_text(opens[r.id]) for r in resources], rows)


@dataclass
class WeekRow:
    resource: Resource
    days: list[list[Shown]]  # per day of the week, by start
    closed: list[bool]


def week_grid(days: list[dt.date], resources: list[Resource], found: list[Shown],
              closures: dict[tuple[int, dt.date], list[Closure]]) -> list[WeekRow]:
    rows = []
    for r in resources:
        per_day = [[b for b in found if b.booking.resource_id == r.id and b.starts.date() == d]
                   for d in days]
        closed = [not _open_ranges(r, d, closures.get((r.id, d), [])) for d in days]
        rows.append(WeekRow(r, per_day, closed))
    return rows


# --- whose bookings ---

async def _store(request: web.Request, user: ConsoleUser) -> Store:
    """An owner's chosen store (their own by default); anyone else's own store."""
    if user.role == Role.OWNER:
        code = request.query.get("store", "")
        chosen = await Store.get_or_none(code=code) \
            if code and len(code) <= query.STORE_CODE_MAX else None
        return chosen or user.store
    return user.store


async def _resources(store: Store, found: list[Shown]) -> list[Resource]:
    """The store's resources that are in use, and any other a booking shown is with."""
    ids = {b.booking.resource_id for b in found}
    rows = await Resource.filter(store_id=store.id).order_by("id")
    return [r for r in rows if r.active or r.id in ids]


def _day_of(text: str, today: dt.date) -> dt.date:
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        return today
    return day if day.year in query.YEARS else today


def _link(day: dt.date, view: str, store: Store, owner: bool) -> str:
    query = {"date": day.isoformat(), "view": view}
    if owner:
        query["store"] = store.code
    return "/console/bookings?" + urlencode(query)


@routes.get("/bookings", name="bookings")
async def calendar(request: web.Request) -> web.StreamResponse:
    user = require(request, DESK)
    bot = bot_of(request)
    tz = bot.config.shop.tz
    today = bot.today()
    clerk = user.role == Role.CLERK
    day = today if clerk else _day_of(request.query.get("date", ""), today)
    view = request.query.get("view", "day")
    view = "day" if clerk or view not in VIEWS else view
    store = await _store(request, user)
    owner = user.role == Role.OWNER
    if view == "day":
        days = [day]
        step, back, ahead = bot.config.booking.slot_minutes, day - dt.timedelta(days=1), \
            day + dt.timedelta(days=1)
    else:
        monday = day - dt.timedelta(days=day.weekday())
        days = [monday + dt.timedelta(days=n) for n in range(7)]
        back, ahead = day - dt.timedelta(days=7), day + dt.timedelta(days=7)
    found = [shown(bot, b) for d in days for b in await bookings.day_list(bot, store, d)]
    resources = await _resources(store, found)
    closures = await Closure.filter(resource_id__in=[r.id for r in resources],
                                    day__gte=days[0], day__lte=days[-1])
    context: dict[str, Any] = {
        "view": view, "day": day, "days": days, "today": today, "store": store, "clerk": clerk,
        "stores": await Store.all().order_by("id") if owner else [],
        "here": _link(day, view, store, owner), "count": len(found), "weekday": weekday,
        "nav": {"back": _link(back, view, store, owner), "ahead": _link(ahead, view, store, owner),
                "today": _link(today, view, store, owner),
                "day": _link(day, "day", store, owner), "week": _link(day, "week", store, owner)},
    }
    if view == "day":
        context["grid"] = day_grid(day, tz, step, resources, found,
                                   {r.id: [c for c in closures if c.resource_id == r.id]
                                    for r in resources})
    else:
        by_day: dict[tuple[int, dt.date], list[Closure]] = {}
        for c in closures:
            by_day.setdefault((c.resource_id, c.day), []).append(c)
        context["week"] = week_grid(days, resources, found, by_day)
    return render(request, "bookings.j2", context)


# --- one booking: its panel and what can be done to it ---

async def _booking(request: web.Request, user: ConsoleUser) -> Booking:
    """The booking the URL names, with its member, if this user's store's (else 404)."""
    booking = await bookings.by_number(query.id_in_path(request, "id"))
    if booking is None or not booking_desk.may_handle(user.actor, booking.store_id):
        raise web.HTTPNotFound()
    booking.member = await Member.get(id=booking.member_id)
    return booking


@dataclass(frozen=True)
class Outcome:
    """What an action says on the panel: ok (green), refused (red) or a note."""

    text: str
    tone: str = "ok"
    lines: tuple[str, ...] = ()


def _can(bot, booking: Booking) -> dict[str, bool]:
    """The buttons a booking shows: the chat's refusals, before anyone clicks."""
    active = booking.status == BookingStatus.ACTIVE
    local_day = booking.starts_at.astimezone(bot.config.shop.tz).date()
    return {"arrive": active and local_day <= bot.today(),
            "no_show": active and booking.starts_at <= bot.now(),
            "cancel": booking.status in HOLDING,
            "move": active}


def _panel(request: web.Request, booking: Booking, *, outcome: Outcome | None = None,
           confirm: str = "", changed: bool = False) -> web.Response:
    bot = bot_of(request)
    context = {"b": shown(bot, booking), "can": _can(bot, booking), "outcome": outcome,
               "confirm": confirm, "weekday": weekday,
               "back": "/console/bookings?" + urlencode({
                   "date": booking.starts_at.astimezone(bot.config.shop.tz).date().isoformat(),
                   "store": booking.store.code if isinstance(booking.store, Store) else ""})}
    if request.headers.get("HX-Request"):
        response = render(request, "_booking_panel.j2", context)
    else:
        response = render(request, "booking.j2", context)
    if changed:
        response.headers.update(CHANGED)
    return response


@routes.get(r"/bookings/{id}", name="booking")
async def panel(request: web.Request) -> web.StreamResponse:
    user = require(request, DESK)
    booking = await _booking(request, user)
    confirm = "cancel" if request.query.get("confirm") == "cancel" else ""
    return _panel(request, booking, confirm=confirm)


def _not_active(booking: Booking) -> Outcome:
    return Outcome(f"预约 #{booking.id} {STATUS_NAMES.get(booking.status, booking.status)}，"
                   "不能再操作。", "error")


@routes.post(r"/bookings/{id}/arrive", name="booking_arrive")
async def arrive(request: web.Request) -> web.StreamResponse:
    user = require(request, DESK)
    bot = bot_of(request)
    booking = await _booking(request, user)
    if booking.status == BookingStatus.ACTIVE and \
            booking.starts_at.astimezone(bot.config.shop.tz).date() > bot.today():
        return _panel(request, booking, outcome=Outcome("还没到预约当天，现在不能登记到店。",
                                                        "error"))
    arrival = await booking_desk.arrive(bot, booking, actor=user.actor)
    if arrival.visit is not None:
        booking_desk.visit_told(bot, arrival)
    if not arrival.marked and booking.status != BookingStatus.ARRIVED:
        return _panel(request, booking, outcome=_not_active(booking))
    lines = []
    if arrival.visit is not None:
        lines.append(f"已用{arrival.visit.card.name} 1 次"
                     f"{'（此前已扣，未重复扣次）' if arrival.visit.duplicate else ''}，"
                     f"剩余 {arrival.visit.remaining} 次。")
    elif arrival.marked:
        lines.append(f"{'会员没有可用的' + arrival.product.name + '，' if arrival.product else ''}"
                     "本次服务请到收银台结算。")
    text = "已登记到店。" if arrival.marked else "已经登记过到店了，未重复登记。"
    return _panel(request, booking, outcome=Outcome(text, "ok", tuple(lines)),
                  changed=arrival.marked)


@routes.post(r"/bookings/{id}/no-show", name="booking_no_show")
async def no_show(request: web.Request) -> web.StreamResponse:
    user = require(request, DESK)
    bot = bot_of(request)
    booking = await _booking(request, user)
    if booking.status == BookingStatus.ACTIVE and booking.starts_at > bot.now():
        return _panel(request, booking, outcome=Outcome("预约还没开始，现在不能登记爽约。",
                                                        "error"))
    result = await booking_desk.no_show(bot, booking, actor=user.actor)
    if not result.marked and booking.status != BookingStatus.NO_SHOW:
        return _panel(request, booking, outcome=_not_active(booking))
    lines = [f"近 {result.days} 天爽约 {result.count} 次（上限 {result.limit} 次）。"]
    if result.via_staff:
        lines.append("已达上限：该会员现在只能由门店员工代约。")
    text = "已登记爽约。" if result.marked else "已经登记过爽约了，未重复登记。"
    return _panel(request, booking, outcome=Outcome(text, "ok", tuple(lines)),
                  changed=result.marked)


@routes.post(r"/bookings/{id}/cancel", name="booking_cancel")
async def cancel(request: web.Request) -> web.StreamResponse:
    user = require(request, FOR_MEMBER)
    bot = bot_of(request)
    booking = await _booking(request, user)
    if await bookings.cancel(bot, booking, actor=user.actor):
        return _panel(request, booking, outcome=Outcome("已取消预约，已通知会员。"),
                      changed=True)
    await booking.refresh_from_db(fields=["status"])
    if booking.status == BookingStatus.CANCELLED:
        return _panel(request, booking, outcome=Outcome("这个预约已经取消过了。"))
    return _panel(request, booking, outcome=_not_active(booking))


# --- 改约: a new free time from free_times, within the horizon ---

async def _resources_here(user: ConsoleUser, booking: Booking) -> list[Resource]:
    """The resources that serve the booking's service and this user may book on (the chat's
    代改 offers the same)."""
    return [r for r in await bookings.resources_of(booking.service)
            if booking_desk.may_handle(user.actor, r.store_id)]


def _chosen(text: str, rows: list[Resource]) -> Resource | None:
    return next((r for r in rows if str(r.id) == text), None)


async def _move_form(request: web.Request, user: ConsoleUser, booking: Booking, *,
                     day: dt.date | None = None, resource: Resource | None = None,
                     outcome: Outcome | None = None) -> web.Response:
    bot = bot_of(request)
    tz = bot.config.shop.tz
    days = bookings.bookable_days(bot)
    booked_day = booking.starts_at.astimezone(tz).date()
    if day not in days:
        day = booked_day if booked_day in days else days[0]
    here = await _resources_here(user, booking)
    if resource is None:
        resource = _chosen(str(booking.resource_id), here) or (here[0] if here else None)
    times = await bookings.free_times(bot, booking.service, day, resource=resource, staff=True) \
        if resource else []
    context = {
        "b": shown(bot, booking), "days": days, "day": day, "resources": here,
        "resource": resource, "weekday": weekday, "outcome": outcome,
        "times": [(t.start, t.start.astimezone(tz), t.places) for t in times],
        "nonce": secrets.token_urlsafe(12)}
    if request.headers.get("HX-Request"):
        return render(request, "_booking_move.j2", context)
    # Opened as a page (a new tab, a reload, a long press in WeChat): the menu around it, and
    # the #panel its day and person pickers swap into.
    return render(request, "booking.j2", context | {"inner": "_booking_move.j2"})


@routes.get(r"/bookings/{id}/move", name="booking_move_form")
async def move_form(request: web.Request) -> web.StreamResponse:
    user = require(request, FOR_MEMBER)
    booking = await _booking(request, user)
    if booking.status != BookingStatus.ACTIVE:
        return _panel(request, booking, outcome=_not_active(booking))
    here = await _resources_here(user, booking)
    return await _move_form(request, user, booking,
                            day=_day_of(request.query.get("day", ""), dt.date.min),
                            resource=_chosen(request.query.get("resource", ""), here))


def _start_of(text: str) -> dt.datetime | None:
    try:
        start = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return start.astimezone(dt.UTC) if start.tzinfo is not None else None


@routes.post(r"/bookings/{id}/move", name="booking_move")
async def move(request: web.Request) -> web.StreamResponse:
    user = require(request, FOR_MEMBER)
    bot = bot_of(request)
    booking = await _booking(request, user)
    form = await request.post()
    nonce, start = str(form.get("nonce", "")), _start_of(str(form.get("start", "")))
    here = await _resources_here(user, booking)
    resource = _chosen(str(form.get("resource", "")), here)
    if not _NONCE.fullmatch(nonce) or start is None or resource is None:
        raise web.HTTPBadRequest(text="nonce, start and resource are needed")
    key = f"console:move:{booking.id}:{nonce}"
    previous = await Booking.get_or_none(key=key)
    if previous is None:  # a repeat of a move made finds it below, whatever time it names
        if start < bot.now():
            return await _move_form(request, user, booking, resource=resource,
                                    day=start.astimezone(bot.config.shop.tz).date(),
                                    outcome=Outcome("这个时间已经过去了，请换一个时间。",
                                                    "error"))
        if start.astimezone(bot.config.shop.tz).date() not in bookings.bookable_days(bot):
            return await _move_form(request, user, booking, resource=resource,
                                    outcome=Outcome("只能改到可预约的日子里。", "error"))
    try:
        moved = await bookings.reschedule(bot, booking, start, key=key, resource=resource,
                                          actor=user.actor)
    except BookingRefused as exc:
        made = await Booking.get_or_none(key=key)  # a concurrent copy of this form moved it
        if made is not None:
            moved = bookings.Booked(await bookings.by_number(made.id), duplicate=True)
        elif exc.reason == "booking_gone.j2":
            await booking.refresh_from_db(fields=["status"])
            return _panel(request, booking, outcome=_not_active(booking))
        else:
            return await _move_form(request, user, booking, resource=resource,
                                    day=start.astimezone(bot.config.shop.tz).date(),
                                    outcome=_refusal(bot, exc))
    new = moved.booking
    new.member = booking.member
    tz = bot.config.shop.tz
    local = new.starts_at.astimezone(tz)
    text = (f"已改约：#{booking.id} → #{new.id} {local:%m-%d} {weekday(local.date())} "
            f"{local:%H:%M} {new.resource.name}")
    text += "（重复提交，未重复改约）" if moved.duplicate else "，已通知会员。"
    return _panel(request, new, outcome=Outcome(text), changed=not moved.duplicate)


def _refusal(bot, exc: BookingRefused) -> Outcome:
    tz = bot.config.shop.tz
    if exc.reason == "booking_full.j2":
        near = [t.start.astimezone(tz) for t in exc.values.get("nearest", [])]
        return Outcome("这个时间没有空位了（已约满、不在营业时间或休息），没有改约。", "error",
                       (("最近的空闲时间：" + "、".join(f"{t:%m-%d %H:%M}" for t in near))
                        if near else "近期没有空闲时间。",))
    if exc.reason == "booking_twice.j2":
        return Outcome("会员在这个时间已经有别的预约了，没有改约。", "error")
    return Outcome(f"没有改约（{exc.reason.removesuffix('.j2')}），请核对后再试。", "error")
