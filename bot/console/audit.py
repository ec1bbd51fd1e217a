"""日志: the append-only audit log (bot/models/staff.py AuditEntry), newest first, paged by id
(keyset: ?before=<id>). Filters: who (an employee), the action, the member (card number or
id), a date range. A manager sees their store's entries; an owner every entry."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from bot.console import query
from bot.console.pages import render, require
from bot.console.session import bot_of
from bot.models import AuditEntry, Member, Staff
from bot.models.staff import Role

PAGE = 50
routes = web.RouteTableDef()


def _values(values: dict[str, Any] | None) -> str:
    if not values:
        return ""
    return json.dumps(values, ensure_ascii=False, sort_keys=True, default=str)


async def _member(text: str) -> int | None:
    """A member by card number, else by id; 0 (matches nothing) when there is none."""
    member_id = await Member.filter(card_no=text).first().values_list("id", flat=True)
    if member_id is None and text.isascii() and text.isdigit() and len(text) < 10:
        member_id = int(text)
    return member_id or 0


@routes.get("/audit", name="audit")
async def page(request: web.Request) -> web.StreamResponse:
    user = require(request, Role.MANAGER)
    bot = bot_of(request)
    tz = bot.config.shop.tz
    dates = query.dates(request)
    store_id, store_code = await query.store_of(request, user)
    staff_id = query.number(request, "staff")
    action = request.query.get("action", "").strip()[:32]
    member_text = request.query.get("member", "").strip()[:32]
    before = query.number(request, "before")

    found = AuditEntry.all()
    if store_id is not None:
        found = found.filter(store_code=store_code)
    if staff_id is not None:
        found = found.filter(staff_id=staff_id)
    if action:
        found = found.filter(action=action)
    if member_text:
        found = found.filter(member_id=await _member(member_text))
    if (since := dates.since(tz)) is not None:
        found = found.filter(created_at__gte=since)
    if (until := dates.until(tz)) is not None:
        found = found.filter(created_at__lt=until)
    if before is not None:
        found = found.filter(id__lt=before)
    entries = list(await found.order_by("-id").limit(PAGE + 1).select_related("member"))
    more = len(entries) > PAGE
    entries = entries[:PAGE]

    staff = Staff.all().order_by("id")
    if user.role != Role.OWNER:
        staff = staff.filter(store_id=user.store.id)
    return render(request, "audit.j2", {
        "entries": entries, "tz": tz, "dates": dates, "store": store_code,
        "staff_id": staff_id, "action": action, "member": member_text,
        "staff": await staff, "values": _values,
        "stores": await query.stores_for(user),
        "next": query.next_link(request, entries[-1].id) if more else None,
        "first": query.next_link(request) if before else None})
