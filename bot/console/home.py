"""The home page: today, 7 and 30 days against the period before (环比); what stands now (the
points liability in ¥, the stored value the shop owes, members per tier); charts of daily new
members and sales, and of tier moves. An owner sees every store; a manager and a clerk their
own store, and a clerk no money figures (sales, points, coupons, the liabilities)."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from bot.console import auth
from bot.console.pages import at_least, render, require, store_scope
from bot.console.session import bot_of, user_of
from bot.models.staff import Role
from bot.rules import reports as report_rules
from bot.services import reports
from bot.services.console_auth import ConsoleUser

CHART_SPANS = (7, 30)
routes = web.RouteTableDef()


@dataclass(frozen=True)
class Row:
    name: str  # a Figures attribute
    label: str
    unit: str = ""  # "yuan" for fen shown as yuan, "rate" for a ratio shown in %
    least: Role = Role.CLERK


ROWS = (
    Row("new_members", "新会员"),
    Row("active_members", "活跃会员"),
    Row("sales", "销售额", "yuan", Role.MANAGER),
    Row("average_spend", "客单价", "yuan", Role.MANAGER),
    Row("points_issued", "发放积分", least=Role.MANAGER),
    Row("points_redeemed", "兑换积分", least=Role.MANAGER),
    Row("points_expired", "过期积分", least=Role.MANAGER),
    Row("coupon_rate", "券核销率", "rate", Role.MANAGER),
    Row("tier_ups", "升级会员"),
    Row("tier_downs", "降级会员"),
    Row("bookings", "预约"),
    Row("no_shows", "爽约"),
    Row("average_rating", "平均评分", "stars"),
)


def rows_for(role: str) -> list[Row]:
    return [row for row in ROWS if at_least(role, row.least)]


def _money(user: ConsoleUser) -> bool:
    return at_least(user.role, Role.MANAGER)


@routes.get("/", name="home")
async def page(request: web.Request) -> web.StreamResponse:
    user = user_of(request)
    if user is None:
        return await auth.login_page(request)
    bot = bot_of(request)
    tiers = reports.tier_names(bot.config)
    home = await reports.home(bot.today(), bot.config.shop.tz, store_scope(user), tiers)
    standing = await reports.standing(bot.config, store_scope(user))
    period = report_rules.ending(bot.today(), 30)
    return render(request, "home.j2", {
        "compared": home.compared, "rows": rows_for(user.role), "money": _money(user),
        "standing": standing, "tiers": {"names": [name for name, _ in standing.tiers],
                                        "members": [n for _, n in standing.tiers]},
        "chart": _chart(user, reports.daily_of(home.days, period)), "spans": CHART_SPANS})


def _chart(user: ConsoleUser, daily: reports.Daily) -> dict:
    data = {"dates": [d.strftime("%m-%d") for d in daily.dates],
            "new_members": daily.new_members,
            "sales": [round(fen / 100, 2) for fen in daily.sales] if _money(user) else None}
    moves = {"dates": data["dates"], "ups": daily.tier_ups, "downs": daily.tier_downs}
    return {"days": len(daily.dates), "data": data, "moves": moves}


@routes.get("/chart", name="chart")
async def chart(request: web.Request) -> web.StreamResponse:
    """The chart alone, for htmx's 7 / 30 day switch."""
    user = require(request)
    try:
        days = int(request.query.get("days", "30"))
    except ValueError:
        days = 30
    days = days if days in CHART_SPANS else 30
    bot = bot_of(request)
    period = report_rules.ending(bot.today(), days)
    daily = await reports.daily(period, bot.today(), bot.config.shop.tz, store_scope(user),
                                reports.tier_names(bot.config))
    return render(request, "_chart.j2", {"chart": _chart(user, daily), "spans": CHART_SPANS})
