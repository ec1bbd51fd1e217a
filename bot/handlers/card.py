"""The member's card: number, tier, points, stored value, and the way to the next tier."""

from __future__ import annotations

from bot.chat import commands
from bot.chat.context import Context
from bot.chat.routing import Router
from bot.notifications.replies import Reply
from bot.services import loyalty

router = Router("card")

# Spoken questions ("我的积分还有多少") arrive as recognised text; these words reveal the intent.
CARD_HINTS = ("积分", "余额", "会员卡", "卡号")


def _asks_for_card(ctx: Context) -> bool:
    return len(ctx.text) <= 20 and any(hint in ctx.text for hint in CARD_HINTS)


@router.global_command(commands.CARD, help="card", shown=("积分", "我的"),
                       audience="everyone", also=_asks_for_card)
async def show_card(ctx: Context) -> Reply:
    if ctx.member is None:
        return ctx.not_registered()
    card = await loyalty.card_summary(ctx.bot, ctx.member)
    # punch_cards and expiring by name too: shops' own card.j2 may use them.
    return ctx.reply("card.j2", card=card, punch_cards=card.punch_cards, expiring=card.expiring)
