"""我的数据 (what we store about you), 注销 (erase it, confirmed by an SMS code), 退订 (no more
marketing; also an SMS reply of TD / 退订 / T) and 订阅 (marketing again, after a 退订)."""

from __future__ import annotations

from bot.chat import commands, phone_proof
from bot.chat.context import Context
from bot.chat.routing import Router
from bot.chat.states import Erasure
from bot.infra.vault import mask_phone
from bot.notifications.replies import Reply
from bot.rules.parsing import parse_code
from bot.services import members, privacy, verification

router = Router("privacy")

PURPOSE = "erase"


def _sms_t(ctx: Context) -> bool:
    """A bare T is the SMS convention for unsubscribing; in chat it is just a typo."""
    return ctx.inbound.channel == "sms" and ctx.text.upper() == "T"


@router.global_command(commands.OPT_OUT, help="opt_out", also=_sms_t)
async def opt_out(ctx: Context) -> Reply | None:
    if ctx.member is None:
        return ctx.reply("opt_out_not_member.j2") if ctx.inbound.channel == "wechat" else None
    await privacy.opt_out(ctx.member, ctx.now)
    return ctx.reply("opt_out_done.j2")


@router.global_command(commands.OPT_IN, help="opt_in")
async def opt_in(ctx: Context) -> Reply | None:
    if ctx.member is None:
        return ctx.reply("opt_in_not_member.j2") if ctx.inbound.channel == "wechat" else None
    if not await privacy.opt_in(ctx.member, ctx.now):
        return ctx.reply("opt_in_already.j2")
    return ctx.reply("opt_in_done.j2")


@router.global_command(commands.MY_DATA, help="my_data", audience="everyone")
async def my_data(ctx: Context) -> Reply:
    if ctx.member is None:
        return ctx.reply("my_data_none.j2")
    data = await privacy.summary(ctx.bot, ctx.member)
    return ctx.reply("my_data.j2", data=data, masked=mask_phone(data.phone),
                     tz=ctx.bot.config.shop.tz)


@router.global_command(commands.ERASE, help="erase")
async def erase_start(ctx: Context) -> Reply:
    if ctx.member is None:
        return ctx.reply("my_data_none.j2")
    try:
        await privacy.check_erasable(ctx.bot, ctx.member)
    except privacy.ErasureRefused as refused:
        return ctx.reply(refused.reason, **refused.values)
    ctx.dialog.set(Erasure.confirm)
    return ctx.ask(Erasure.confirm)


@router.question_values(Erasure)
def _erase_question(ctx: Context) -> dict:
    return {"member": ctx.member}


@router.text("不注销", state=Erasure)
async def erase_cancel(ctx: Context) -> Reply:
    ctx.dialog.clear()
    return ctx.reply("erase_cancelled.j2")


@router.text("确认注销", state=Erasure.confirm)
async def erase_confirm(ctx: Context) -> Reply:
    phone = members.phone_of(ctx.bot, ctx.member)
    sent = await verification.send_code(ctx.bot, phone, ctx.inbound.user, PURPOSE)
    if not sent.sent:
        ctx.dialog.clear()
        return ctx.reply(sent.template, retry_after=sent.retry_after)
    ctx.dialog.set(Erasure.code)
    return ctx.reply("erase_code_sent.j2", masked=mask_phone(phone))


@router.message(state=Erasure.confirm)
async def erase_confirm_unclear(ctx: Context) -> Reply:
    return ctx.ask(Erasure.confirm)


@router.answer(Erasure.code, fits=phone_proof.a_code)
async def erase_code(ctx: Context) -> Reply:
    code = parse_code(ctx.text)
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


@router.message(state=Erasure.code)
async def erase_bad_code(ctx: Context) -> Reply:
    return ctx.reply("reg_bad_code.j2")
