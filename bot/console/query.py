"""What the console's list pages read from the query string: a date range in the shop's days,
the store an owner narrows to (a manager always has their own), numbers, and the link to the
next page of a keyset-paged list (`?before=<id>`: newest first, never OFFSET)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from urllib.parse import urlencode

from aiohttp import web

from bot.clock import local_midnight
from bot.models import Store
from bot.models.staff import Role
from bot.services.console_auth import ConsoleUser

STORE_CODE_MAX = Store._meta.fields_map["code"].max_length
ID_MAX = 2**63 - 1  # the largest id a database column holds (a ledger's bigint)
# The largest id of members, bookings, campaigns, staff and ratings (int columns): a larger one
# names nothing, and PostgreSQL would refuse it as a 500.
INT_MAX = 2**31 - 1


@dataclass(frozen=True)
class Dates:
    """A range of the shop's days, both ends included; either may be open."""

    first: dt.date | None = None
    last: dt.date | None = None
    error: str = ""

    def since(self, tz: dt.tzinfo) -> dt.datetime | None:
        return local_midnight(self.first, tz) if self.first else None

    def until(self, tz: dt.tzinfo) -> dt.datetime | None:
        """The instant after the range (the next day's midnight), for `< until`."""
        return local_midnight(self.last + dt.timedelta(days=1), tz) if self.last else None

    def label(self) -> str:
        if not (self.first or self.last):
            return "all"
        return f"{self.first or 'start'}_{self.last or 'now'}"


# The years a date filter may name: 0001-01-01 or 9999-12-31 would overflow the midnight
# computed from it (a 500), and no shop's records lie outside these.
YEARS = range(1900, 3000)


def _date(text: str) -> dt.date | None:
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        return None
    return day if day.year in YEARS else None


def dates(request: web.Request) -> Dates:
    """?from=YYYY-MM-DD&to=YYYY-MM-DD (what <input type=date> sends); a bad or reversed range
    is left out and said so, not an error page."""
    given = {name: request.query.get(name, "").strip() for name in ("from", "to")}
    first, last = (_date(given[name]) if given[name] else None for name in ("from", "to"))
    if (given["from"] and first is None) or (given["to"] and last is None):
        return Dates(error="日期格式应为 2026-03-01")
    if first and last and first > last:
        return Dates(error="开始日期晚于结束日期")
    return Dates(first, last)


def whole(text: str, *, least: int = 1, most: int = ID_MAX) -> int | None:
    """Digits as a number within [least, most], else None (a thousand digits included: they
    are refused before Python would refuse to convert them)."""
    if not (text.isascii() and text.isdigit()) or len(text) > len(str(most)):
        return None
    value = int(text)
    return value if least <= value <= most else None


def id_in_path(request: web.Request, name: str) -> int:
    """The id a URL names (an int column's): 404 when it could name nothing."""
    value = whole(request.match_info[name], most=INT_MAX)
    if value is None:
        raise web.HTTPNotFound()
    return value


def number(request: web.Request, name: str, *, least: int = 1,
           most: int = ID_MAX) -> int | None:
    return whole(request.query.get(name, "").strip(), least=least, most=most)


async def store_of(request: web.Request, user: ConsoleUser) -> tuple[int | None, str]:
    """The store a list shows: a manager's own, always; for an owner the one ?store=<code>
    names, or None (every store). The code is returned for the form."""
    if user.role != Role.OWNER:
        return user.store.id, user.store.code
    code = request.query.get("store", "").strip()
    if not code:
        return None, ""
    # Longer than any code: no store (the lookup would refuse it as a 500).
    store = await Store.get_or_none(code=code) if len(code) <= STORE_CODE_MAX else None
    if store is None:
        raise web.HTTPNotFound(text="no such store")
    return store.id, code


async def stores_for(user: ConsoleUser) -> list[Store]:
    """The stores an owner may narrow a list to; none for a manager (they have their own)."""
    return list(await Store.all().order_by("code")) if user.role == Role.OWNER else []


def next_link(request: web.Request, before: int | None = None) -> str:
    """This page's URL with ?before=<id>: the page after it; without: the first page."""
    params = [(k, v) for k, v in request.query.items() if k != "before"]
    if before is not None:
        params.append(("before", str(before)))
    return f"{request.path}?{urlencode(params)}"
