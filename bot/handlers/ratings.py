"""评价: a member rates a visit 1–5 and may add a comment. The same dialog answers the question
sent after a visit (bot/notifications/ratings.py starts it at the stars when the member is in
no other dialog), so a bare "5" is enough there."""

from __future__ import annotations

from bot.chat import commands
from bot.chat.context import Context
from bot.chat.routing import Router
from bot.chat.states import Rating, Support
from bot.notifications.replies import Reply
from bot.rules import ratings as rules
from bot.services import ratings

router = Router("ratings")


@router.question_values(Rating)
def _question(ctx: Context) -> dict:
    return {"about": ctx.dialog.data.get("about", {}), "stars": ctx.dialog.data.get("stars", 5)}


@router.global_command(commands.RATE, help="rate")
async def rate_last_visit(ctx: Context) -> Reply:
    if ctx.member is None:
        return ctx.not_registered()
    visit = await ratings.last_unrated_visit(ctx.bot, ctx.member)
    if visit is None:
        return ctx.reply("rating_no_visit.j2", days=ctx.bot.config.ratings.days)
    ctx.dialog.set(Rating.stars, visit=visit.key, about=visit.summary(ctx.bot.config.shop.tz))
    return ctx.ask(Rating.stars)


def _stars(ctx: Context) -> bool:
    return rules.parse_stars(ctx.text) is not None


@router.answer(Rating.stars, fits=_stars)
async def stars_given(ctx: Context) -> Reply:
    ctx.dialog.set(Rating.comment, stars=rules.parse_stars(ctx.text))
    return ctx.ask(Rating.comment)


@router.message(state=Rating.stars)
async def stars_unclear(ctx: Context) -> Reply:
    return ctx.ask(Rating.stars)


@router.text("跳过", "不用了", "没有", "无", "没了", state=Rating.comment)
async def comment_skipped(ctx: Context) -> Reply:
    return await _rate(ctx, "")


@router.message(state=Rating.comment)
async def comment_given(ctx: Context) -> Reply:
    return await _rate(ctx, ctx.text)


async def _rate(ctx: Context, comment: str) -> Reply:
    data = dict(ctx.dialog.data)
    ctx.dialog.clear()
    if ctx.member is None:
        return ctx.not_registered()
    visit = await ratings.find_visit(ctx.bot, data.get("visit", ""))
    if visit is None or visit.member_id != ctx.member.id:
        return ctx.reply("rating_gone.j2")
    rated = await ratings.rate(ctx.bot, ctx.member, visit, data["stars"], comment, key=ctx.key)
    if not rated.created and not rated.repeat:
        return ctx.reply("rating_already.j2", rating=rated.rating)
    low = rules.alerts(rated.rating.stars, ctx.bot.config.ratings.alert_at_most)
    if low and rated.rating.thread_id is not None:
        # What they say next goes to the manager the alert reached (回复 <n> answers them).
        ctx.dialog.set(Support.talking)
    return ctx.reply("rating_thanks.j2", rating=rated.rating, low=low)
