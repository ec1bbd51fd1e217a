"""`memberbot booking service|resource|hours|closed|list`: what members can book, who serves it
and when, closures (holidays, leave), and a day's bookings.

Services and resources named in config.toml are written back from it at every start, so the
changes that would be undone (add, hours, disable) are refused for them; closures may be added to
any resource. The work is in bot/services/booking_setup.py; this module parses and prints.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import itertools

from bot.cli.common import CliError, pad
from bot.config import Config
from bot.infra.vault import mask_phone
from bot.models import BookingStatus, Store
from bot.runtime import open_bot
from bot.services import booking_setup, bookings, members
from bot.services.booking_setup import SetupRefused

STATUS = {BookingStatus.ACTIVE: "booked", BookingStatus.OFFERED: "held (waitlist)",
          BookingStatus.ARRIVED: "arrived", BookingStatus.NO_SHOW: "no-show"}


def register(commands: argparse._SubParsersAction) -> None:
    booking = commands.add_parser("booking", help="bookable services, resources, hours, "
                                                  "closures and the day's bookings")
    actions = booking.add_subparsers(dest="action", required=True)

    service = actions.add_parser("service", help="what members book")
    service_actions = service.add_subparsers(dest="service_action", required=True)
    service_actions.add_parser("list", help="all services").set_defaults(
        run=_run_service_list, needs="database")
    add = service_actions.add_parser("add", help="a new service")
    add.add_argument("code")
    add.add_argument("name")
    add.add_argument("--minutes", type=int, required=True,
                     help="how long it takes: a multiple of booking.slot_minutes")
    add.add_argument("--resources", required=True,
                     help="comma-separated resource codes that serve it, in the order offered")
    add.add_argument("--price", type=float, default=0.0, help="yuan, shown to members")
    add.add_argument("--punch-card", default="",
                     help="a [[punch_cards]] code whose visits cover it (到店 uses one)")
    add.set_defaults(run=_run_service_add, needs="database")
    disable = service_actions.add_parser("disable", help="stop taking bookings for a service")
    disable.add_argument("code")
    disable.set_defaults(run=_run_service_disable, needs="database")

    resource = actions.add_parser("resource", help="who or what serves: a stylist, a room")
    resource_actions = resource.add_subparsers(dest="resource_action", required=True)
    resource_actions.add_parser("list", help="all resources").set_defaults(
        run=_run_resource_list, needs="database")
    add = resource_actions.add_parser("add", help="a new resource (closed until its hours are set)")
    add.add_argument("code")
    add.add_argument("name")
    add.add_argument("--store", required=True, help="store code, e.g. S001")
    add.add_argument("--capacity", type=int, default=1, help="places at once (a class: > 1)")
    add.set_defaults(run=_run_resource_add, needs="database")
    disable = resource_actions.add_parser("disable", help="stop taking bookings on a resource")
    disable.add_argument("code")
    disable.set_defaults(run=_run_resource_disable, needs="database")

    hours = actions.add_parser("hours", help="a resource's weekly hours: mon=10:00-20:00 tue= …")
    hours.add_argument("code")
    hours.add_argument("days", nargs="*", metavar="DAY=HOURS",
                       help="mon … sun = 10:00-12:00,13:00-20:00 (empty: closed that day); "
                            "none: show the week")
    hours.set_defaults(run=_run_hours, needs="database")

    closed = actions.add_parser("closed", help="close a resource for a day or part of it")
    closed.add_argument("code")
    closed.add_argument("date", nargs="?", help="YYYY-MM-DD")
    closed.add_argument("--from", dest="opens", default="", help="closed from (14:00)")
    closed.add_argument("--until", dest="closes", default="", help="… until (18:00)")
    closed.add_argument("--reason", default="", help="休假, 培训 …")
    which = closed.add_mutually_exclusive_group()
    which.add_argument("--list", action="store_true", help="the closures from today on")
    which.add_argument("--remove", action="store_true", help="reopen that day")
    closed.set_defaults(run=_run_closed, needs="database")

    day = actions.add_parser("list", help="a day's bookings, by resource")
    day.add_argument("--date", help="YYYY-MM-DD (default: today)")
    day.add_argument("--store", help="store code (default: all stores)")
    day.set_defaults(run=_run_list, needs="database")


def _date(text: str, option: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise CliError(f"{option}: a date like 2026-12-25, not {text!r}", 2) from None


def _run_service_list(args: argparse.Namespace, config: Config) -> None:
    asyncio.run(service_list(config))


def _run_service_add(args: argparse.Namespace, config: Config) -> None:
    resources = [r.strip() for r in args.resources.split(",") if r.strip()]
    asyncio.run(service_add(config, args.code, args.name, args.minutes, resources,
                            args.price, args.punch_card))


def _run_service_disable(args: argparse.Namespace, config: Config) -> None:
    asyncio.run(service_disable(config, args.code))


def _run_resource_list(args: argparse.Namespace, config: Config) -> None:
    asyncio.run(resource_list(config))


def _run_resource_add(args: argparse.Namespace, config: Config) -> None:
    asyncio.run(resource_add(config, args.code, args.name, args.store, args.capacity))


def _run_resource_disable(args: argparse.Namespace, config: Config) -> None:
    asyncio.run(resource_disable(config, args.code))


def _run_hours(args: argparse.Namespace, config: Config) -> None:
    changes = {}
    for text in args.days:
        day, sep, ranges = text.partition("=")
        if not sep:
            raise CliError(f"{text!r}: DAY=HOURS, like mon=10:00-20:00 (or mon= to close)", 2)
        changes[day.strip().lower()] = ranges.strip()
    asyncio.run(hours(config, args.code, changes))


def _run_closed(args: argparse.Namespace, config: Config) -> None:
    if args.list:
        asyncio.run(closed_list(config, args.code))
        return
    if args.date is None:
        raise CliError("booking closed: give a date (YYYY-MM-DD), or --list", 2)
    day = _date(args.date, "date")
    if args.remove:
        asyncio.run(closed_remove(config, args.code, day, args.opens))
    else:
        asyncio.run(closed_add(config, args.code, day, args.opens, args.closes, args.reason))


def _run_list(args: argparse.Namespace, config: Config) -> None:
    day = _date(args.date, "--date") if args.date else None
    asyncio.run(day_list(config, day, args.store))


# --- services ---

async def service_list(config: Config) -> None:
    owned = {s.code for s in config.services}
    async with open_bot(config, scheduler=False):
        for s in await booking_setup.all_services():
            state = "active" if s.active else "disabled"
            where = "config.toml" if s.code in owned else "cli"
            price = f"¥{s.price / 100:g}"
            card = f"card {s.punch_card}" if s.punch_card else "-"
            print(f"{s.code:<10} {pad(s.name, 12)} {s.minutes:>4} min {price:>8}  "
                  f"{','.join(s.resources):<16} {card:<14} {state:<8} {where}")


async def service_add(config: Config, code: str, name: str, minutes: int, resources: list[str],
                      price: float, punch_card: str) -> None:
    async with open_bot(config, scheduler=False):
        try:
            service = await booking_setup.add_service(
                config, code, name, minutes=minutes, resources=resources,
                price=round(price * 100), punch_card=punch_card)
        except SetupRefused as exc:
            raise CliError(str(exc)) from None
    print(f"Service {service.code} ({service.name}, {service.minutes} min) added, served by "
          f"{', '.join(service.resources)}.")


async def service_disable(config: Config, code: str) -> None:
    async with open_bot(config, scheduler=False):
        try:
            await booking_setup.disable_service(config, code)
        except SetupRefused as exc:
            raise CliError(str(exc)) from None
    print(f"Service {code} disabled: no new bookings; those already made stay.")


# --- resources ---

async def resource_list(config: Config) -> None:
    owned = {r.code for r in config.resources}
    async with open_bot(config, scheduler=False):
        for r in await booking_setup.all_resources():
            state = "active" if r.active else "disabled"
            where = "config.toml" if r.code in owned else "cli"
            days = " ".join(day for day, text in booking_setup.week_of(r) if text) or "no hours"
            print(f"{r.code:<10} {pad(r.name, 12)} {r.store.code:<6} capacity {r.capacity:<3} "
                  f"{days:<28} {state:<8} {where}")


async def resource_add(config: Config, code: str, name: str, store: str, capacity: int) -> None:
    async with open_bot(config, scheduler=False):
        try:
            await booking_setup.add_resource(config, code, name, store=store, capacity=capacity)
        except SetupRefused as exc:
            raise CliError(str(exc)) from None
    print(f"Resource {code} ({name}, {store}, {capacity} at once) added. It is closed until "
          f"its hours are set: memberbot booking hours {code} mon=10:00-20:00 …")


async def resource_disable(config: Config, code: str) -> None:
    async with open_bot(config, scheduler=False) as bot:
        try:
            _, held = await booking_setup.disable_resource(config, code, bot.now())
        except SetupRefused as exc:
            raise CliError(str(exc)) from None
        print(f"Resource {code} disabled: nothing new is booked on it.")
        if held:
            print(f"It still holds {len(held)} booking(s); move or cancel them in chat "
                  f"(代改 / 代取消): {', '.join(f'#{b.id}' for b in held)}")


# --- hours and closures ---

def _print_week(resource) -> None:
    print(f"{resource.code} ({resource.name}):")
    for day, text in booking_setup.week_of(resource):
        print(f"  {day}  {text or 'closed'}")


async def hours(config: Config, code: str, changes: dict[str, str]) -> None:
    async with open_bot(config, scheduler=False):
        try:
            if changes:
                resource = await booking_setup.set_hours(config, code, changes)
            else:
                resource = await booking_setup.find_resource(code)
        except SetupRefused as exc:
            raise CliError(str(exc)) from None
    _print_week(resource)


def _span(closure) -> str:
    if closure.opens is None:
        return "all day"
    closes = booking_setup.local_time(closure.closes)
    return f"{closure.opens:%H:%M}-{'24:00' if closes == dt.time.max else f'{closes:%H:%M}'}"


async def closed_add(config: Config, code: str, day: dt.date, opens: str, closes: str,
                     reason: str) -> None:
    async with open_bot(config, scheduler=False) as bot:
        try:
            closed = await booking_setup.add_closure(bot, code, day, opens=opens, closes=closes,
                                                     reason=reason)
        except SetupRefused as exc:
            raise CliError(str(exc)) from None
        tz = config.shop.tz
        what = "already closed" if not closed.created else "closed"
        print(f"{code} {what} on {day.isoformat()} {_span(closed.closure)}"
              f"{f' ({closed.closure.reason})' if closed.closure.reason else ''}.")
        if closed.held:
            print(f"{len(closed.held)} booking(s) made before keep their places; call those "
                  "members, then 代改 or 代取消 in chat:")
            for b in closed.held:
                print(f"  #{b.id}  {b.starts_at.astimezone(tz):%H:%M}  {b.service.name}")


async def closed_list(config: Config, code: str) -> None:
    async with open_bot(config, scheduler=False) as bot:
        try:
            found = await booking_setup.closures_of(code, since=bot.today())
        except SetupRefused as exc:
            raise CliError(str(exc)) from None
    if not found:
        print(f"{code}: no closures from today on.")
    for c in found:
        print(f"{c.day.isoformat()}  {_span(c):<12} {c.reason}".rstrip())


async def closed_remove(config: Config, code: str, day: dt.date, opens: str) -> None:
    async with open_bot(config, scheduler=False):
        try:
            removed = await booking_setup.remove_closure(config, code, day, opens=opens)
        except SetupRefused as exc:
            raise CliError(str(exc)) from None
    if not removed:
        raise CliError(f"{code} has no closure on {day.isoformat()}"
                       f"{f' from {opens}' if opens else ''}")
    print(f"{code} open again on {day.isoformat()} (its weekly hours apply).")


# --- the day's bookings ---

async def day_list(config: Config, day: dt.date | None, store_code: str | None) -> None:
    async with open_bot(config, scheduler=False) as bot:
        store = None
        if store_code:
            store = await Store.get_or_none(code=store_code)
            if store is None:
                raise CliError(f"--store: no store {store_code!r}", 2)
        day = day or bot.today()
        found = await bookings.day_list(bot, store, day)
        tz = config.shop.tz
        where = store.name if store else "all stores"
        print(f"{day.isoformat()} (周{'一二三四五六日'[day.weekday()]}), {where}: "
              f"{len(found) or 'no'} booking(s)")
        for _, rows in itertools.groupby(found, key=lambda b: b.resource_id):
            rows = list(rows)
            print(f"{rows[0].resource.name} ({rows[0].resource.code})")
            for b in rows:
                masked = mask_phone(members.phone_of(bot, b.member))
                print(f"  {b.starts_at.astimezone(tz):%H:%M}  #{b.id:<6} {pad(b.service.name, 10)} "
                      f"{masked}  {pad(b.member.name or '-', 8)} {STATUS.get(b.status, b.status)}")

