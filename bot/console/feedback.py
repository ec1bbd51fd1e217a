"""评价: what members said of their visits, newest first: the stars, the comment, the visit,
the member (phone masked) and when. Filters: at most so many stars, a date range, a store (an
owner's choice; a manager sees their own). A low rating shows the state of the support thread
it opened (bot/services/ratings.py), so a manager sees whether someone answered the member."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web
from tortoise.functions import Count, Sum

from bot.console import query
from bot.console.pages import render, require
from bot.console.session import bot_of
from bot.infra.vault import mask_phone
from bot.models import Booking, Purchase, Rating
from bot.models.staff import Role
from bot.models.support import ThreadStatus
from bot.rules import ratings as rating_rules
from bot.services import members

PAGE = 30
THREAD_STATES = {ThreadStatus.WAITING: "待接待", ThreadStatus.OPEN: "处理中",
                 ThreadStatus.CLOSED: "已结束"}
routes = web.RouteTableDef()


@dataclass(frozen=True)
class Row:
    rating: Rating
    phone: str  # masked
    visit: str  # what the visit was: 消费 #12 ¥88.00 / 预约 剪发
    low: bool
    thread: str  # the support thread's state, "" without one


def masked_phone(bot, member) -> str:
    if member.erased_at or not member.phone_enc:
        return "—"
    return mask_phone(members.phone_of(bot, member))


async def _visits(ratings: list[Rating]) -> dict[str, str]:
    """What each rated visit was, two queries for the page."""
    ids: dict[str, list[int]] = {"purchase": [], "booking": []}
    for rating in ratings:
        kind, _, number = rating.visit.partition(":")
        if kind in ids and number.isdigit():
            ids[kind].append(int(number))
    out: dict[str, str] = {}
    for serial, amount, voided in await Purchase.filter(id__in=ids["purchase"]).values_list(
            "id", "amount", "voided_at"):
        out[f"purchase:{serial}"] = f"消费 #{serial} ¥{amount / 100:,.2f}" + (
            "（已撤销）" if voided else "")
    for booking_id, service in await Booking.filter(id__in=ids["booking"]).values_list(
            "id", "service__name"):
        out[f"booking:{booking_id}"] = f"预约 {service}"
    return out


@routes.get("/feedback", name="feedback")
async def page(request: web.Request) -> web.StreamResponse:
    user = require(request, Role.MANAGER)
    bot = bot_of(request)
    tz = bot.config.shop.tz
    dates = query.dates(request)
    store_id, store_code = await query.store_of(request, user)
    max_stars = query.number(request, "stars", most=5)
    before = query.number(request, "before", most=query.INT_MAX)

    found = Rating.all()
    if store_id is not None:
        found = found.filter(store_id=store_id)
    if max_stars is not None:
        found = found.filter(stars__lte=max_stars)
    if (since := dates.since(tz)) is not None:
        found = found.filter(created_at__gte=since)
    if (until := dates.until(tz)) is not None:
        found = found.filter(created_at__lt=until)
    # Summed, not averaged in SQL: tortoise casts an average back to the column's integer.
    summary = await found.annotate(count=Count("id"), stars=Sum("stars")) \
        .values("count", "stars")
    paged = found.filter(id__lt=before) if before else found
    ratings = list(await paged.order_by("-id").limit(PAGE + 1)
                   .select_related("member", "store", "thread"))
    more = len(ratings) > PAGE
    ratings = ratings[:PAGE]
    visits = await _visits(ratings)
    alert_at = bot.config.ratings.alert_at_most
    rows = [Row(rating, masked_phone(bot, rating.member), visits.get(rating.visit, rating.visit),
                rating_rules.alerts(rating.stars, alert_at),
                THREAD_STATES.get(rating.thread.status, rating.thread.status)
                if rating.thread else "")
            for rating in ratings]
    count = summary[0]["count"] or 0 if summary else 0
    average = summary[0]["stars"] / count if count else None
    return render(request, "feedback.j2", {
        "rows": rows, "tz": tz, "dates": dates, "store": store_code, "stars": max_stars,
        "count": count, "average": average,
        "stores": await query.stores_for(user),
        "next": query.next_link(request, ratings[-1].id) if more else None,
        "first": query.next_link(request) if before else None})
