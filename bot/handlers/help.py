"""帮助, and the friendly answer to anything no other handler took."""

from __future__ import annotations

from bot.chat import commands
from bot.chat.context import Context
from bot.chat.routing import NO_DIALOG, Router
from bot.notifications.replies import Reply

router = Router("help")


async def _help(ctx: Context) -> Reply:
    # Generated from the routes registered with a help topic, so it cannot fall behind them.
    # An employee is pointed to 员工帮助 too: their commands are listed there, not here.
    return ctx.reply("help.j2", member=ctx.member, entries=ctx.router.help_entries(),
                     staff=await ctx.staff() is not None, faq=_faq_topics(ctx))


def _faq_topics(ctx: Context) -> list[str]:
    """The shop's questions ([[faq]]) by the topic a member types to ask them."""
    return [entry.topic for entry in ctx.bot.config.faq]


@router.global_command(commands.HELP, help="help", audience="everyone")
async def show_help(ctx: Context) -> Reply:
    return await _help(ctx)


@router.text("你好", "您好", "在吗", state=NO_DIALOG)
async def greeted(ctx: Context) -> Reply:
    return await _help(ctx)


@router.text(*commands.CANCEL.words, state=NO_DIALOG, audience="everyone")
async def nothing_to_cancel(ctx: Context) -> Reply:
    # 取消 after a dialog already ended (a refusal ends one): not "I did not understand".
    return ctx.reply("nothing_to_cancel.j2")


@router.fallback()
async def not_understood(ctx: Context) -> Reply | None:
    if ctx.inbound.is_event:
        return None
    return ctx.reply("unknown.j2", kind=ctx.inbound.kind, member=ctx.member,
                     entries=ctx.router.help_entries(), staff=await ctx.staff() is not None,
                     faq=_faq_topics(ctx))
