"""The member's card: number, tier, points, stored value, and the way to the next tier."""

from __future__ import annotations

from bot.chat.context import Context
from bot.chat.routing import Router
from bot.handlers import registration
from bot.notifications.replies import Reply
from bot.services import loyalty

router = Router("card")

CARD_WORDS = ("积分", "余额", "会员卡", "我的", "我的积分", "查积分", "会员", "卡号", "我的会员卡")
# Spoken questions ("我的积分还有多少") arrive as recognised text; these words reveal the intent.
CARD_HINTS = ("积分", "余额", "会员卡", "卡号")


def _asks_for_card(ctx: Context) -> bool:
    return ctx.inbound.kind == "text" and len(ctx.text) <= 20 and any(
        hint in ctx.text for hint in CARD_HINTS
    )


@router.text(*CARD_WORDS)
@router.click("MY_CARD")
@router.when(_asks_for_card)
async def show_card(ctx: Context) -> Reply:
    if ctx.member is None:
        if ctx.dialog.state and ctx.dialog.state.startswith("reg."):
            return registration.prompt(ctx, ctx.dialog.state)
        return ctx.reply("not_registered.j2")
    card = await loyalty.card_summary(ctx.bot, ctx.member)
    # punch_cards and expiring by name too: shops' own card.j2 may use them.
    return ctx.reply("card.j2", card=card, punch_cards=card.punch_cards, expiring=card.expiring)
