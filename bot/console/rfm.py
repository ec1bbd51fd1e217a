"""The RFM 2×2×2 grid for the home page: how many members are high or low on recency,
frequency and money (the segment language's rfm=…, against the shop's baselines), a click on
a cell lists its members (paged, phones masked), and 为这些会员创建群发 opens the campaign form
with the cell's segment. For managers (their store's members) and owners (every member).

The counts are one aggregate statement (segments.rfm_grid), never every member in Python; they
are exactly what the cell's segment counts, so the campaign reaches the members shown."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from urllib.parse import quote

from aiohttp import web

from bot.console.pages import render, require, store_scope
from bot.console.session import bot_of
from bot.infra.vault import mask_card, mask_phone
from bot.models import Member
from bot.models.staff import Role
from bot.rules.segments import RFM_CLASSES
from bot.services import members as member_service
from bot.services import segments
from bot.services.console_auth import ConsoleUser

routes = web.RouteTableDef()

PAGE_SIZE = 20
NAMES = {"r": ("近期来过", "很久没来"), "f": ("常来", "不常来"), "m": ("花得多", "花得少")}


@dataclass(frozen=True)
class Cell:
    name: str  # the RFM class, e.g. 重要价值
    high: tuple[bool, bool, bool]
    count: int
    segment: str  # what selects its members (with a manager's store)


def scope_text(user: ConsoleUser) -> str:
    """The members a user's grid covers, as a segment: a manager's store, or all."""
    return "all" if store_scope(user) is None else f"store={user.store.code}"


def cell_text(user: ConsoleUser, name: str) -> str:
    scope = scope_text(user)
    return f"rfm={name}" if scope == "all" else f"{scope} rfm={name}"


def _cell_of(request: web.Request) -> str:
    name = request.query.get("rfm", "")
    if name not in RFM_CLASSES:
        raise web.HTTPNotFound(text="no such RFM class")
    return name


@routes.get("/rfm", name="rfm")
async def grid(request: web.Request) -> web.StreamResponse:
    user = require(request, Role.MANAGER)
    bot = bot_of(request)
    scope = segments.parse(scope_text(user), bot.config)
    base, counts = await segments.rfm_grid(scope, today=bot.today())
    cells = {name: Cell(name, high, counts[name], cell_text(user, name))
             for name, high in RFM_CLASSES.items()}
    # Two 2×2 panels (money high, money low): rows frequency, columns recency.
    panels = [(m, [[_find(cells, (r, f, m)) for r in (True, False)] for f in (True, False)])
              for m in (True, False)]
    recency = (dt.datetime.fromtimestamp(int(base.recency), dt.UTC).astimezone(
        bot.config.shop.tz) if base.recency is not None else None)
    return render(request, "_rfm.j2", {
        "panels": panels, "base": base, "recency": recency, "names": NAMES,
        "total": sum(counts.values()), "days": scope.rfm_days, "kind": scope.rfm_baseline})


def _find(cells: dict[str, Cell], high: tuple[bool, bool, bool]) -> Cell:
    return next(cell for cell in cells.values() if cell.high == high)


@routes.get("/rfm/members", name="rfm_members")
async def cell_members(request: web.Request) -> web.StreamResponse:
    """One cell's members, PAGE_SIZE at a time in id order (keyset: after=<last id>)."""
    user = require(request, Role.MANAGER)
    bot = bot_of(request)
    name = _cell_of(request)
    after = request.query.get("after", "0")
    after_id = int(after) if after.isascii() and after.isdigit() and len(after) < 10 else 0
    text = cell_text(user, name)
    segment = segments.parse(text, bot.config)
    ids: list[int] = []
    async for batch in segments.id_batches(segment, today=bot.today(), size=PAGE_SIZE + 1,
                                           after=after_id):
        ids = batch
        break
    more = len(ids) > PAGE_SIZE
    ids = ids[:PAGE_SIZE]
    found = await Member.filter(id__in=ids).order_by("id") if ids else []
    rows = [{"id": m.id, "name": m.name, "tier": m.tier, "card": mask_card(m.card_no),
             "phone": mask_phone(member_service.phone_of(bot, m)) if m.phone_enc else ""}
            for m in found]
    return render(request, "_rfm_members.j2", {
        "name": name, "rows": rows, "segment": text, "after": after_id,
        "next": ids[-1] if more else None, "rfm_q": quote(name),
        "new_url": "/console/campaigns/new?segment=" + quote(text)})
