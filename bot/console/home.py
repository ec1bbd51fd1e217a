"""The home page: today, 7 and 30 days against the period before (环比), and a chart of daily
new members and sales. An owner sees every store; a manager and a clerk their own store, and
a clerk no money figures."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from bot.console import auth
from bot.console.pages import render, require, store_scope
from bot.console.session import bot_of, user_of
from bot.models.staff import ROLES, Role
from bot.rules import reports as report_rules
from bot.services import reports
from bot.services.console_auth import ConsoleUser

CHART_SPANS = (7, 30)
routes = web.RouteTableDef()


@dataclass(frozen=True)
class Row:
    name: str  # a Figures attribute
    label: str
    unit: str = ""  # "yuan" for fen shown as yuan, "stars"
    least: Role = Role.CLERK


ROWS = (
    Row("new_members", "新会员"),
    Row("active_members", "活跃会员"),
    Row("sales", "销售额", "yuan", Role.MANAGER),
    Row("average_spend", "客单价", "yuan", Role.MANAGER),
    Row("points_issued", "发放积分", least=Role.MANAGER),
    Row("points_redeemed", "兑换积分", least=Role.MANAGER),
    Row("points_expired", "过期积分", least=Role.MANAGER),
    Row("bookings", "预约"),
    Row("no_shows", "爽约"),
    Row("average_rating", "平均评分", "stars"),
)


def rows_for(role: str) -> list[Row]:
    return [row for row in ROWS if ROLES.index(role) >= ROLES.index(row.least)]


@routes.get("/", name="home")
async def page(request: web.Request) -> web.StreamResponse:
    user = user_of(request)
    if user is None:
        return await auth.login_page(request)
    bot = bot_of(request)
    tz = bot.config.shop.tz
    compared = await reports.home(bot.today(), tz, store_scope(user))
    return render(request, "home.j2", {
        "compared": compared, "rows": rows_for(user.role),
        "chart": await _chart(request, user, 30), "spans": CHART_SPANS})


async def _chart(request: web.Request, user: ConsoleUser, days: int) -> dict:
    bot = bot_of(request)
    period = report_rules.ending(bot.today(), days)
    daily = await reports.daily(period, bot.config.shop.tz, store_scope(user))
    money = ROLES.index(user.role) >= ROLES.index(Role.MANAGER)
    data = {"dates": [d.strftime("%m-%d") for d in daily.dates],
            "new_members": daily.new_members,
            "sales": [round(fen / 100, 2) for fen in daily.sales] if money else None}
    return {"days": days, "data": data}


@routes.get("/chart", name="chart")
async def chart(request: web.Request) -> web.StreamResponse:
    """The chart alone, for htmx's 7 / 30 day switch."""
    user = require(request)
    try:
        days = int(request.query.get("days", "30"))
    except ValueError:
        days = 30
    days = days if days in CHART_SPANS else 30
    return render(request, "_chart.j2", {
        "chart": await _chart(request, user, days), "spans": CHART_SPANS})
