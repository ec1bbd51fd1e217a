"""帮助, and the friendly answer to anything no other handler took."""

from __future__ import annotations

from bot.chat.context import Context
from bot.chat.routing import Router
from bot.notifications.replies import Reply

router = Router("help")


@router.text("帮助", "help", "HELP", "?", "？", "菜单", "你好", "您好", "在吗")
@router.click("HELP")
async def show_help(ctx: Context) -> Reply:
    return ctx.reply("help.j2", member=ctx.member)


@router.fallback()
async def not_understood(ctx: Context) -> Reply | None:
    if ctx.inbound.is_event:
        return None
    return ctx.reply("unknown.j2", kind=ctx.inbound.kind, member=ctx.member)
