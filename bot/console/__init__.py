"""The owner's web console at /console: server-rendered Jinja2 (aiohttp-jinja2), htmx for
partial updates and ECharts for charts, both vendored in static/ (no CDN, no build step).

A sub-application of the webhook's app: `create_console(BOT)` is mounted at /console by
bot/app.py. It reaches the bot through the key it is given (the parent app's), so it needs
nothing from above its layer.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web

from bot.console import (
    audit,
    auth,
    bookings,
    campaigns,
    changes,
    exports,
    feedback,
    home,
    members,
    rfm,
    staff,
)
from bot.console.pages import FILTERS, MenuItem, render
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


# What a refused page says to the shop, in its words: the reason the code gives is for the log.
ERROR_PAGES = {
    400: ("请求有误", "这一页收到的内容不完整或有误，请返回上一页刷新后再试。"),
    403: ("没有权限", "您的角色不能打开这一页。需要的话，请老板在「员工」里调整您的角色。"),
    404: ("没有找到", "没有这一页，或它不属于您能查看的门店。"),
    409: ("已无法操作", "这项已被处理或已变化，请返回刷新后再看。"),
}


@web.middleware
async def error_pages(request: web.Request,
                      handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                      ) -> web.StreamResponse:
    """A page the browser opens (not an htmx fragment) that is refused gets a page in Chinese
    with the menu, under the same status, instead of the code's English reason as bare text."""
    try:
        return await handler(request)
    except web.HTTPException as refused:
        if refused.status not in ERROR_PAGES or request.headers.get("HX-Request"):
            raise
        heading, advice = ERROR_PAGES[refused.status]
        return render(request, "error.j2",
                      {"status": refused.status, "heading": heading, "advice": advice},
                      status=refused.status)


def create_console(bot_key: web.AppKey[Bot]) -> web.Application:
    app = web.Application(middlewares=[guard, error_pages])
    app[BOT_KEY] = bot_key
    env = aiohttp_jinja2.setup(app, loader=jinja2.PackageLoader("bot.console", "templates"),
                               autoescape=True, filters=FILTERS)
    # An audit entry in the shop's words (日志, a member's 操作记录).
    env.globals.update(change=changes.change, note=changes.note, who=changes.who)
    for page in PAGES:
        app.add_routes(page.routes)
    app.router.add_static("/static", STATIC, name="static")
    return app


async def redirect_to_console(request: web.Request) -> web.Response:
    raise web.HTTPFound("/console/")
