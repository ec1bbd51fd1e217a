"""人工: a member talks with a person. 人工 / 转人工 / 客服 opens a thread (the relay dialog,
Support in bot/chat/states.py): from then on every message goes to the staff on duty, the words
of the global commands too, until 取消 or 结束 (or the thread closes: 结束 <n> by staff, or idle).
With nobody on duty the member hears the shop's hours and the messages wait for the next one.
With [service] mode = "wechat" the shop answers on WeChat's own workbench: 人工 hands the
message over (transfer_customer_service) and the bot stays out of it.

Staff, in the same chat: 上班 / 下班 (members' messages reach whoever is on duty), 会话 (the open
threads, and messages that waited), 回复 <n> <文字> (a customer-service message to the member;
when WeChat would refuse it they are told why), 结束 <n>."""

from __future__ import annotations

import functools

from bot.chat import commands
from bot.chat.context import Context
from bot.chat.routing import Router
from bot.chat.staff_commands import staff_command as _staff_command
from bot.chat.states import Support
from bot.notifications.replies import Reply, Transfer
from bot.notifications.support import member_label
from bot.services import Refused, support
from bot.services.staff import Actor

router = Router("support")
# The staff side apart, so that 员工帮助 lists it after the till's commands.
staff_router = Router("support_staff")
staff_command = functools.partial(_staff_command, on=staff_router)

# The words that end the relay (取消's, and 结束): nothing else is the bot's while it lasts.
ENDING = (*commands.CANCEL.words, "结束", "结束对话")
# What staff read for a message that is not text.
NOT_TEXT = {"image": "[图片，请在公众号后台查看]", "voice": "[语音，请在公众号后台查看]",
            "location": "[位置] {text}", "media": "[视频或文件，请在公众号后台查看]"}
REPLY_USAGE = "回复 <会话号> <内容>"
CLOSE_USAGE = "结束 <会话号>"


# --- the member ---

@router.global_command(commands.SUPPORT, help="support")
async def ask_for_person(ctx: Context) -> Reply:
    if ctx.inbound.channel != "wechat":
        return ctx.reply("support_wechat_only.j2")
    if ctx.bot.config.service.mode == "wechat":
        return Transfer()
    if ctx.member is None:
        return ctx.not_registered()
    asked = await support.ask(ctx.bot, ctx.member, key=ctx.key)
    ctx.dialog.clear()
    ctx.dialog.set(Support.talking)
    if asked.reached:
        return ctx.reply("support_connected.j2", created=asked.created)
    return ctx.reply("support_nobody.j2", hours=ctx.bot.config.service.hours)


@router.text(*ENDING, state=Support.talking)
async def end_talk(ctx: Context) -> Reply:
    ctx.dialog.clear()
    if ctx.member is not None:
        await support.end_by_member(ctx.bot, ctx.member, key=ctx.key)
    return ctx.reply(Support.cancelled)


@router.message(state=Support.talking, kinds=("text", "voice", "image", "location", "media",
                                               "click"))
async def relay(ctx: Context) -> Reply | None:
    thread = await support.thread_of(ctx.member.id) if ctx.member else None
    if thread is None:
        # Closed meanwhile (结束 <n>, idle): the message is the bot's again.
        ctx.dialog.clear()
        return await ctx.router.dispatch(ctx)
    if ctx.inbound.kind == "click":
        return ctx.reply("support_menu_hint.j2")
    text = ctx.inbound.text.strip() if ctx.inbound.kind == "text" else \
        NOT_TEXT[ctx.inbound.kind].format(text=ctx.inbound.text)
    relayed = await support.relay_from_member(ctx.bot, ctx.member, thread, text, key=ctx.key)
    if relayed.first_kept:
        return ctx.reply("support_kept.j2", hours=ctx.bot.config.service.hours)
    return None


# --- staff ---

def _number(text: str, usage: str) -> int:
    digits = text.lstrip("#＃")
    if not digits.isascii() or not digits.isdigit() or len(digits) > 9:
        raise Refused("staff_usage.j2", usage=usage)
    return int(digits)


async def _threads(ctx: Context, actor: Actor, template: str, **values) -> Reply:
    """An answer that hands over the messages that waited and lists the open threads."""
    handed, more = await support.take_pending(ctx.bot, actor)
    threads = await support.live_threads(actor)
    return ctx.reply(template, handed=handed, more=more, threads=threads, label=member_label,
                     tz=ctx.bot.config.shop.tz, **values)


@staff_command("上班", action="support", usage="上班", args=(0, 0))
async def on_duty(ctx: Context, actor: Actor, parts: list[str]) -> Reply:
    changed = await support.go_on_duty(ctx.bot, actor)
    return await _threads(ctx, actor, "support_on_duty.j2", changed=changed)


@staff_command("下班", action="support", usage="下班", args=(0, 0))
async def off_duty(ctx: Context, actor: Actor, parts: list[str]) -> Reply:
    changed = await support.go_off_duty(ctx.bot, actor)
    return ctx.reply("support_off_duty.j2", changed=changed,
                     threads=await support.live_threads(actor))


@staff_command("会话", action="support", usage="会话", args=(0, 0))
async def threads(ctx: Context, actor: Actor, parts: list[str]) -> Reply:
    return await _threads(ctx, actor, "support_threads.j2")


@staff_command("回复", action="support", usage=REPLY_USAGE, args=(2, 2))
async def answer(ctx: Context, actor: Actor, parts: list[str]) -> Reply:
    number = _number(parts[0], REPLY_USAGE)
    replied = await support.reply_from_staff(ctx.bot, actor, number, parts[1], key=ctx.key)
    if not replied.outcome.ok:
        return ctx.reply("support_not_sent.j2", number=number, code=replied.outcome.code)
    if replied.openid is not None:
        # The member's next words come back here (a low rating's thread: they were in no
        # dialog). A member in another dialog keeps it; 人工 brings them to the thread.
        dialog = await ctx.bot.dialogs.load(f"wechat:{replied.openid}")
        if dialog.state is None:
            dialog.set(Support.talking)
            await ctx.bot.dialogs.save(dialog)
    return ctx.reply("support_sent.j2", number=number)


@staff_command("结束", action="support", usage=CLOSE_USAGE, args=(1, 1))
async def close(ctx: Context, actor: Actor, parts: list[str]) -> Reply:
    number = _number(parts[0], CLOSE_USAGE)
    await support.close_by_staff(ctx.bot, actor, number, key=ctx.key)
    return ctx.reply("support_closed.j2", number=number)
