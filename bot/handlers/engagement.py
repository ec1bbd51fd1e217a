"""Member extras: 签到 (daily points), 邀请 (a personal referral QR), 明细 (recent points)."""

from __future__ import annotations

import asyncio

from bot.chat import commands
from bot.chat.context import Context
from bot.chat.routing import Router
from bot.infra.ratelimit import Limit
from bot.notifications.poster import render_poster
from bot.notifications.replies import Image, Reply
from bot.notifications.wechat_api import WeChatAPIError
from bot.services import checkin, loyalty

router = Router("engagement")

REFERRAL_QR_SECONDS = 30 * 86400  # temporary codes: permanent ones are capped at 100,000


@router.global_command(commands.CHECKIN, help="checkin")
async def check_in(ctx: Context) -> Reply:
    if ctx.member is None:
        return ctx.not_registered()
    result = await checkin.check_in(ctx.bot, ctx.member)
    return ctx.reply("checkin.j2", result=result,
                     streak_days=ctx.bot.config.points.checkin_streak_days)


@router.global_command(commands.INVITE, help="invite")
async def invite(ctx: Context) -> Reply:
    """A personal QR (scene ref:<card_no>) sent as an image: whoever registers through it and
    buys something earns both of them the referral reward."""
    member = ctx.member
    if member is None:
        return ctx.not_registered()
    limits, now = {f"invite:{member.id}": [Limit(5, 3600)]}, ctx.now
    if await ctx.bot.limiter.hit(limits, now):
        return ctx.reply("invite_slow_down.j2")
    try:
        qr = await ctx.bot.wechat.create_qrcode(f"ref:{member.card_no}", temporary=True,
                                                expire_seconds=REFERRAL_QR_SECONDS)
        caption = f"{ctx.bot.config.shop.name} 会员专属邀请"
        png = await asyncio.to_thread(render_poster, qr["url"], caption,
                                      f"{member.name or '会员'} 邀请您加入")
        media_id = await ctx.bot.wechat.upload_image(f"invite-{member.card_no}.png", png)
    except WeChatAPIError:
        await ctx.bot.limiter.release(limits, now)  # nothing was sent: the try does not count
        return ctx.reply("invite_failed.j2")
    explanation = ctx.reply("invite.j2", points=ctx.bot.config.points.referral_points)
    await ctx.bot.outbox.wechat(ctx.inbound.user, explanation, key=f"invite-text:{ctx.key}",
                                purpose="reply")
    return Image(media_id)


@router.global_command(commands.POINTS_HISTORY, help="points_history")
async def history(ctx: Context) -> Reply:
    if ctx.member is None:
        return ctx.not_registered()
    entries = await loyalty.recent_entries(ctx.member.id, 10)
    return ctx.reply("history.j2", entries=entries, member=ctx.member,
                     tz=ctx.bot.config.shop.tz)
