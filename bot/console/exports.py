"""导出: members, purchases and the two ledgers as CSV for Excel (bot/services/exports.py),
streamed to the browser batch by batch. A manager exports their store, an owner every store
or one. The download is a GET (a link), but reading personal data out is recorded in the
audit log all the same: who exported what, for which store and dates."""

from __future__ import annotations

from aiohttp import web

from bot.console import query
from bot.console.pages import render, require
from bot.console.session import bot_of
from bot.models.staff import Role
from bot.services import exports
from bot.services.staff import audit

routes = web.RouteTableDef()


@routes.get("/exports", name="exports")
async def page(request: web.Request) -> web.StreamResponse:
    user = require(request, Role.MANAGER)
    return render(request, "exports.j2", {
        "kinds": list(exports.KINDS.values()), "stores": await query.stores_for(user)})


@routes.get("/exports/{kind}.csv", name="export")
async def download(request: web.Request) -> web.StreamResponse:
    user = require(request, Role.MANAGER)
    kind = exports.KINDS.get(request.match_info["kind"])
    if kind is None:
        raise web.HTTPNotFound(text="no such export")
    # A link on another site must not start an export in a logged-in browser.
    if request.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
        raise web.HTTPForbidden(text="cross-site export refused")
    bot = bot_of(request)
    tz = bot.config.shop.tz
    dates = query.dates(request)
    if dates.error:
        raise web.HTTPBadRequest(text=dates.error)
    store_id, store_code = await query.store_of(request, user)
    await audit(user.actor, "console_export",
                after={"export": kind.name, "store": store_code or "all",
                       "from": str(dates.first or ""), "to": str(dates.last or "")},
                detail=f"{kind.name} store={store_code or 'all'} {dates.label()}")
    filename = "-".join(part for part in (
        kind.name, store_code, dates.label() if dates.first or dates.last else "",
        bot.today().isoformat()) if part) + ".csv"
    response = web.StreamResponse(headers={
        "Content-Type": "text/csv; charset=utf-8",
        "Content-Disposition": f'attachment; filename="{filename}"',
        "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    async for chunk in exports.chunks(bot, kind, store_id=store_id, since=dates.since(tz),
                                      until=dates.until(tz)):
        await response.write(chunk)
    await response.write_eof()
    return response
