"""我的数据 (what we store about you), 注销 (erase it, confirmed by an SMS code), 退订 (no more
marketing; also an SMS reply of TD / 退订 / T)."""

from __future__ import annotations

from bot.chat.context import Context
from bot.chat.routing import NO_DIALOG, Router
from bot.infra.vault import mask_phone
from bot.notifications.replies import Reply
from bot.rules.parsing import parse_code
from bot.services import members, privacy, verification

router = Router("privacy")

PURPOSE = "erase"
OPT_OUT_WORDS = ("退订", "TD", "td", "取消订阅", "不要推送")


def _sms_t(ctx: Context) -> bool:
    """A bare T is the SMS convention for unsubscribing; in chat it is just a typo."""
    return ctx.inbound.channel == "sms" and ctx.text.upper() == "T"


@router.text(*OPT_OUT_WORDS, state=NO_DIALOG)
@router.when(_sms_t)
async def opt_out(ctx: Context) -> Reply | None:
    if ctx.member is None:
        return ctx.reply("opt_out_not_member.j2") if ctx.inbound.channel == "wechat" else None
    await privacy.opt_out(ctx.member, ctx.now)
    return ctx.reply("opt_out_done.j2")


@router.text("我的数据", "个人信息", "我的信息", state=NO_DIALOG)
async def my_data(ctx: Context) -> Reply:
    if ctx.member is None:
        return ctx.reply("my_data_none.j2")
    data = await privacy.summary(ctx.bot, ctx.member)
    return ctx.reply("my_data.j2", data=data, masked=mask_phone(data.phone),
                     tz=ctx.bot.config.shop.tz)


@router.text("注销", "注销会员", "删除我的数据", state=NO_DIALOG)
async def erase_start(ctx: Context) -> Reply:
    if ctx.member is None:
        return ctx.reply("my_data_none.j2")
    try:
        await privacy.check_erasable(ctx.bot, ctx.member)
    except privacy.ErasureRefused as refused:
        return ctx.reply(refused.reason, **refused.values)
    ctx.dialog.set("erase.confirm")
    return ctx.reply("erase_warning.j2", member=ctx.member)


@router.text("取消", "算了", "不注销", state=("erase.confirm", "erase.code"))
async def erase_cancel(ctx: Context) -> Reply:
    ctx.dialog.clear()
    return ctx.reply("erase_cancelled.j2")


@router.text("确认注销", state="erase.confirm")
async def erase_confirm(ctx: Context) -> Reply:
    phone = members.phone_of(ctx.bot, ctx.member)
    sent = await verification.send_code(ctx.bot, phone, ctx.inbound.user, PURPOSE)
    if not sent.sent:
        ctx.dialog.clear()
        return ctx.reply(sent.template, retry_after=sent.retry_after)
    ctx.dialog.set("erase.code")
    return ctx.reply("erase_code_sent.j2", masked=mask_phone(phone))


@router.message(state="erase.confirm")
async def erase_confirm_unclear(ctx: Context) -> Reply:
    return ctx.reply("erase_warning.j2", member=ctx.member)


@router.message(state="erase.code")
async def erase_code(ctx: Context) -> Reply:
    code = parse_code(ctx.text)
    if code is None:
        return ctx.reply("reg_bad_code.j2")
    phone = members.phone_of(ctx.bot, ctx.member)
    check = await verification.check_code(ctx.bot, phone, ctx.inbound.user, PURPOSE, code)
    if not check.ok:
        if check.status in ("locked", "expired", "missing"):
            ctx.dialog.clear()
            return ctx.reply("erase_code_failed.j2")
        return ctx.reply("reg_code_wrong.j2", attempts_left=check.attempts_left)
    try:
        await privacy.erase(ctx.bot, ctx.member)
    except privacy.ErasureRefused as refused:
        ctx.dialog.clear()
        return ctx.reply(refused.reason, **refused.values)
    ctx.dialog.clear()
    return ctx.reply("erase_done.j2")
