"""The owner's web console at /console: server-rendered Jinja2 (aiohttp-jinja2), htmx for
partial updates and ECharts for charts, both vendored in static/ (no CDN, no build step).

A sub-application of the webhook's app: `create_console(BOT)` is mounted at /console by
bot/app.py. It reaches the bot through the key it is given (the parent app's), so it needs
nothing from above its layer.
"""

from __future__ import annotations

from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web

from bot.console import (
    audit,
    auth,
    bookings,
    campaigns,
    exports,
    feedback,
    home,
    members,
    rfm,
    staff,
)
from bot.console.pages import FILTERS, MenuItem
from bot.console.session import BOT_KEY, guard
from bot.models.staff import Role
from bot.runtime import Bot

STATIC = Path(__file__).resolve().parent / "static"
# Each page is a module with its own `routes`; the menu shows a role the pages it may open.
PAGES = (auth, home, members, bookings, campaigns, rfm, feedback, staff, audit, exports)
MENU = (
    MenuItem("/console/", "首页", Role.CLERK),
    MenuItem("/console/members", "会员", Role.CLERK),
    MenuItem("/console/bookings", "预约", Role.CLERK),
    MenuItem("/console/campaigns", "群发", Role.MANAGER),
    MenuItem("/console/feedback", "评价", Role.MANAGER),
    MenuItem("/console/staff", "员工", Role.MANAGER),
    MenuItem("/console/audit", "日志", Role.MANAGER),
    MenuItem("/console/exports", "导出", Role.MANAGER),
)


def create_console(bot_key: web.AppKey[Bot]) -> web.Application:
    app = web.Application(middlewares=[guard])
    app[BOT_KEY] = bot_key
    aiohttp_jinja2.setup(app, loader=jinja2.PackageLoader("bot.console", "templates"),
                         autoescape=True, filters=FILTERS)
    for page in PAGES:
        app.add_routes(page.routes)
    app.router.add_static("/static", STATIC, name="static")
    return app


async def redirect_to_console(request: web.Request) -> web.Response:
    raise web.HTTPFound("/console/")
