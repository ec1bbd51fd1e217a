"""Bookings set up from the shell (`memberbot booking`): services and resources beyond
config.toml's, weekly hours, closures (holidays, leave).

config.toml owns the services and resources it names: start-up writes them back from the file
(bookings.sync_setup), so adding, changing hours of or disabling one of those here would be
undone at the next start. Those are refused, saying where to make the change. Closures are
different: start-up only adds the file's, so any resource may get more here.

A refusal is a SetupRefused whose message is for the operator at the terminal.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from bot.config import WEEKDAYS, Config, parse_closure, parse_ranges
from bot.models import Booking, Closure, Resource, Service, Store
from bot.services.bookings import HOLDING


class SetupRefused(Exception):
    """The set-up change was not made; the message says why, for the operator."""


def _owned(config: Config, kind: str, code: str) -> None:
    entries = config.services if kind == "service" else config.resources
    if any(e.code == code for e in entries):
        raise SetupRefused(
            f"{kind} {code!r} is defined in config.toml, which is written back at every start: "
            f"edit its [[{kind}s]] entry there (and restart) instead")


# --- services ---

async def all_services() -> list[Service]:
    return await Service.all().order_by("id")


async def add_service(config: Config, code: str, name: str, *, minutes: int,
                      resources: list[str], price: int = 0, punch_card: str = "") -> Service:
    """A new service (`price` in fen); a disabled one added again comes back with these values."""
    _owned(config, "service", code)
    step = config.booking.slot_minutes
    if not code or not name:
        raise SetupRefused("a service needs a code and a name")
    if minutes < 1 or minutes % step:
        raise SetupRefused(f"--minutes: a multiple of booking.slot_minutes ({step})")
    if price < 0:
        raise SetupRefused("--price: yuan, not negative")
    if not resources:
        raise SetupRefused("--resources: name at least one resource code")
    found = set(await Resource.filter(code__in=resources, active=True)
                .values_list("code", flat=True))
    missing = [r for r in resources if r not in found]
    if missing:
        raise SetupRefused(f"--resources: no active resource {missing[0]!r} "
                           "(memberbot booking resource list)")
    if punch_card and punch_card not in {p.code for p in config.punch_cards}:
        raise SetupRefused(f"--punch-card: no [[punch_cards]] {punch_card!r} in config.toml")
    fields = {"name": name, "minutes": minutes, "price": price, "resources": list(resources),
              "punch_card": punch_card, "active": True}
    existing = await Service.get_or_none(code=code)
    if existing is None:
        return await Service.create(code=code, **fields)
    if existing.active:
        raise SetupRefused(f"a service {code!r} exists already")
    await Service.filter(id=existing.id).update(**fields)
    return await Service.get(id=existing.id)


async def disable_service(config: Config, code: str) -> Service:
    """Members can no longer book it; bookings already made stay."""
    _owned(config, "service", code)
    service = await Service.get_or_none(code=code)
    if service is None:
        raise SetupRefused(f"no service {code!r}")
    await Service.filter(id=service.id).update(active=False)
    service.active = False
    return service


# --- resources ---

async def all_resources() -> list[Resource]:
    return await Resource.all().order_by("id").select_related("store")


async def add_resource(config: Config, code: str, name: str, *, store: str,
                       capacity: int = 1) -> Resource:
    """A new resource, closed every day until its hours are set."""
    _owned(config, "resource", code)
    if not code or not name:
        raise SetupRefused("a resource needs a code and a name")
    if capacity < 1:
        raise SetupRefused("--capacity: at least 1")
    shop = await Store.get_or_none(code=store)
    if shop is None:
        raise SetupRefused(f"--store: no store {store!r}")
    fields = {"name": name, "store_id": shop.id, "capacity": capacity, "active": True}
    existing = await Resource.get_or_none(code=code)
    if existing is None:
        return await Resource.create(code=code, hours={}, **fields)
    if existing.active:
        raise SetupRefused(f"a resource {code!r} exists already")
    await Resource.filter(id=existing.id).update(**fields)
    return await Resource.get(id=existing.id)


async def find_resource(code: str) -> Resource:
    resource = await Resource.get_or_none(code=code).select_related("store")
    if resource is None:
        raise SetupRefused(f"no resource {code!r}")
    return resource


async def upcoming_on(resource: Resource, now: dt.datetime) -> list[Booking]:
    """The places still held on a resource from now on."""
    return await Booking.filter(resource_id=resource.id, status__in=HOLDING,
                                ends_at__gt=now).order_by("starts_at")


async def disable_resource(config: Config, code: str, now: dt.datetime
                           ) -> tuple[Resource, list[Booking]]:
    """Nothing new is booked on it; the bookings it still holds are returned, for the operator
    to move or cancel (they are not touched)."""
    _owned(config, "resource", code)
    resource = await find_resource(code)
    await Resource.filter(id=resource.id).update(active=False)
    resource.active = False
    return resource, await upcoming_on(resource, now)


def week_of(resource: Resource) -> list[tuple[str, str]]:
    """(mon … sun, hours text, "" when closed)."""
    return [(day, resource.hours.get(str(n), "")) for n, day in enumerate(WEEKDAYS, start=1)]


async def set_hours(config: Config, code: str, changes: dict[str, str]) -> Resource:
    """Weekly hours by weekday name (mon … sun); an empty text closes that day. The days not
    named keep their hours."""
    _owned(config, "resource", code)
    resource = await find_resource(code)
    hours = dict(resource.hours)
    for day, text in changes.items():
        if day not in WEEKDAYS:
            raise SetupRefused(f"{day!r}: a weekday, one of {', '.join(WEEKDAYS)}")
        try:
            ranges = parse_ranges(text)
        except ValueError as exc:
            raise SetupRefused(f"{day}: {exc}") from None
        number = str(WEEKDAYS.index(day) + 1)
        if ranges:
            hours[number] = text.replace("，", ",").replace(" ", "")
        else:
            hours.pop(number, None)
    await Resource.filter(id=resource.id).update(hours=hours)
    resource.hours = hours
    return resource


# --- closures ---

def local_time(t: dt.time | None) -> dt.time | None:
    """A closure's time as written (SQLite reads a TimeField back with tortoise's UTC label,
    PostgreSQL without: both mean the shop's local time)."""
    return t.replace(tzinfo=None) if t is not None else None


@dataclass(frozen=True)
class Closed:
    closure: Closure
    created: bool  # False: that closure was there already
    held: list[Booking]  # bookings inside it, made before it: the shop should call them


def _span(day: dt.date, opens: str, closes: str) -> tuple[dt.time, dt.time] | None:
    if not opens and not closes:
        return None
    if not (opens and closes):
        raise SetupRefused("--from and --until go together (neither: the whole day)")
    try:
        _, span = parse_closure(f"{day.isoformat()} {opens}-{closes}")
    except ValueError as exc:
        raise SetupRefused(str(exc)) from None
    return span


async def add_closure(bot, code: str, day: dt.date, *, opens: str = "", closes: str = "",
                      reason: str = "") -> Closed:
    """Close a resource for a day, or part of it (local times). Bookings already inside the
    closure keep their places: they are returned, so the shop can call those members."""
    resource = await find_resource(code)
    if day < bot.today():
        raise SetupRefused(f"{day.isoformat()} is in the past")
    span = _span(day, opens, closes)
    start, end = span or (None, None)
    existing = next((c for c in await Closure.filter(resource_id=resource.id, day=day)
                     if local_time(c.opens) == start), None)
    created = existing is None
    closure = existing or await Closure.create(resource_id=resource.id, day=day, opens=start,
                                               closes=end, reason=reason[:64])
    tz = bot.config.shop.tz
    since = dt.datetime.combine(day, start or dt.time(), tz).astimezone(dt.UTC)
    until = (dt.datetime.combine(day, end, tz) if end and end != dt.time.max
             else dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tz)) \
        .astimezone(dt.UTC)
    held = await Booking.filter(resource_id=resource.id, status__in=HOLDING,
                                starts_at__lt=until, ends_at__gt=since) \
        .order_by("starts_at").select_related("service")
    return Closed(closure, created, held)


async def closures_of(code: str, since: dt.date | None = None) -> list[Closure]:
    resource = await find_resource(code)
    query = Closure.filter(resource_id=resource.id)
    if since is not None:
        query = query.filter(day__gte=since)
    return await query.order_by("day", "opens")


async def remove_closure(config: Config, code: str, day: dt.date, *, opens: str = "") -> int:
    """Reopen: the closures of that day (only the one starting at `opens`, when given). One
    written from config.toml would come back at the next start, so it is refused."""
    resource = await find_resource(code)
    found = await Closure.filter(resource_id=resource.id, day=day)
    if opens:
        try:
            start = dt.time.fromisoformat(opens)
        except ValueError:
            raise SetupRefused(f"--from: a time like 14:00, not {opens!r}") from None
        found = [c for c in found if local_time(c.opens) == start]
    owned = {parse_closure(text)[0] for r in config.resources if r.code == code
             for text in r.closed}
    if any(c.day in owned for c in found):
        raise SetupRefused(f"the closure of {code} on {day.isoformat()} is in config.toml, "
                           "which start-up writes back: remove it from the file instead")
    return await Closure.filter(id__in=[c.id for c in found]).delete()
