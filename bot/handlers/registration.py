"""Joining: consent → phone → SMS code → name → birthday → card number and welcome points.

The states are declared in bot/chat/states.py (Registration); 取消 and the other global commands
are the engine's. A dialog left alone for a while asks "continue or start over?" when the member
comes back, unless the message answers the question anyway. The phone number is kept encrypted
in the dialog data, like everywhere else.

Each step lists its answers first and its "not understood" replies last: between the two, the
global commands get their turn (bot/chat/routing.py).
"""

from __future__ import annotations

import datetime as dt

from bot.chat import commands, phone_proof
from bot.chat.context import Context
from bot.chat.routing import NO_DIALOG, Router
from bot.chat.states import Registration, find
from bot.infra.vault import mask_phone
from bot.notifications.replies import Reply
from bot.rules.parsing import (
    BadBirthday,
    name_problem,
    normalize_phone,
    parse_code,
    read_birthday,
)
from bot.services import coupons, members, verification

router = Router("registration")

PURPOSE = "register"


@router.question_values(Registration)
def _question(ctx: Context) -> dict:
    phone = phone_proof.kept(ctx)
    paused = find(ctx.dialog.data.get("resume_to"))
    return {"masked": mask_phone(phone) if phone else "", "name": ctx.dialog.data.get("name", ""),
            "step": paused.label if paused else ""}



def _stale(ctx: Context) -> bool:
    limit = dt.timedelta(minutes=ctx.bot.config.shop.resume_after_minutes)
    return ctx.dialog.idle(ctx.now) > limit




def _a_name(ctx: Context) -> bool:
    # Almost any text could be a name, so after a long pause ("我回来了") it is not taken as one.
    return (name_problem(ctx.text) is None and not ctx.is_command(ctx.text)
            and not _stale(ctx))


def _a_birthday(ctx: Context) -> bool:
    try:
        read_birthday(ctx.text, ctx.bot.today())
    except BadBirthday:
        return False
    return True


# --- entering ---

@router.text("注册", "加入", "加入会员", "会员注册", "办会员", "入会", state=NO_DIALOG,
             help="join", audience="guests")
@router.global_command(commands.JOIN)
async def join(ctx: Context) -> Reply:
    if ctx.member:
        return ctx.reply("already_member.j2", member=ctx.member)
    return ctx.begin(Registration, returning=False)


# --- the answers of each step ---

@router.text("继续", state=Registration.resume)
async def resume(ctx: Context) -> Reply:
    step = find(ctx.dialog.data.get("resume_to")) or Registration.consent
    ctx.dialog.set(step)
    return ctx.ask(step)


@router.text("重新开始", "重新", "从头开始", state=Registration.resume)
async def start_over(ctx: Context) -> Reply:
    return ctx.begin(Registration, returning=False)


@router.text("同意", "我同意", "好的", "好", "可以", "是", state=Registration.consent)
async def consent(ctx: Context) -> Reply:
    ctx.dialog.set(Registration.phone, consent_at=ctx.now.isoformat())
    return ctx.reply("reg_ask_phone.j2")


@router.text("不同意", "拒绝", "不", "否", state=Registration.consent)
async def decline(ctx: Context) -> Reply:
    ctx.dialog.clear()
    return ctx.reply("reg_declined.j2")


@router.answer(Registration.phone, fits=phone_proof.a_phone)
async def phone_given(ctx: Context) -> Reply:
    # The same answer for every number, a member's or not: whether the card is bound to another
    # WeChat account is said only after the code proves the phone (code_given).
    phone = normalize_phone(ctx.text)
    phone_proof.keep(ctx, phone)
    return await _send_code(ctx, phone)


async def _send_code(ctx: Context, phone: str) -> Reply:
    return await phone_proof.send_code(ctx, phone, purpose=PURPOSE, code_step=Registration.code,
                                       sent="reg_code_sent.j2")


@router.text(*phone_proof.RESEND_WORDS, state=(Registration.phone, Registration.code))
async def resend(ctx: Context) -> Reply:
    """At the code step, or at the phone step when the first send failed and said 「重发」."""
    phone = phone_proof.kept(ctx)
    if phone is None:
        if ctx.dialog.state == Registration.phone:
            return ctx.reply("reg_bad_phone.j2")
        ctx.dialog.set(Registration.phone)
        return ctx.reply("reg_ask_phone.j2")
    return await _send_code(ctx, phone)


@router.text(*phone_proof.CHANGE_PHONE_WORDS, state=(Registration.phone, Registration.code))
async def change_phone(ctx: Context) -> Reply:
    ctx.dialog.set(Registration.phone)
    return ctx.reply("reg_ask_phone.j2")


@router.answer(Registration.code, fits=phone_proof.a_code)
async def code_given(ctx: Context) -> Reply:
    phone = phone_proof.kept(ctx)
    if phone is None:
        ctx.dialog.set(Registration.phone)
        return ctx.reply("reg_ask_phone.j2")
    code = parse_code(ctx.text)
    check = await verification.check_code(ctx.bot, phone, ctx.inbound.user, PURPOSE, code)
    if not check.ok:
        return ctx.reply(f"reg_code_{check.status}.j2", attempts_left=check.attempts_left)
    try:
        linked = await members.link_existing(ctx.bot, ctx.inbound.user, phone)
    except members.PhoneTaken:
        return await _bound_elsewhere(ctx, phone)
    if linked:
        ctx.dialog.clear()
        return ctx.reply("reg_linked.j2", member=linked.member)
    ctx.dialog.set(Registration.name, verified=True)
    return ctx.reply("reg_ask_name.j2")


@router.answer(Registration.name, fits=_a_name)
async def name_given(ctx: Context) -> Reply:
    name = ctx.text
    ctx.dialog.set(Registration.birthday, name=name)
    return ctx.reply("reg_ask_birthday.j2", name=name)


@router.text("跳过", "不填", "略过", state=Registration.birthday)
async def birthday_skipped(ctx: Context) -> Reply:
    return await _finish(ctx, None)


@router.answer(Registration.birthday, fits=_a_birthday)
async def birthday_given(ctx: Context) -> Reply:
    return await _finish(ctx, read_birthday(ctx.text, ctx.bot.today()))


# --- not understood (after the global commands) ---

@router.message(state=Registration.steps, when=_stale)
async def offer_resume(ctx: Context) -> Reply:
    step = find(ctx.dialog.state)
    ctx.dialog.set(Registration.resume, resume_to=step.name)
    return ctx.ask(Registration.resume)


@router.message(state=Registration.resume)
async def resume_unclear(ctx: Context) -> Reply:
    return ctx.ask(Registration.resume)


@router.message(state=Registration.consent)
async def consent_unclear(ctx: Context) -> Reply:
    return ctx.ask(Registration.consent)


@router.message(state=Registration.phone)
async def not_a_phone(ctx: Context) -> Reply:
    return ctx.reply("reg_bad_phone.j2")


@router.message(state=Registration.code)
async def not_a_code(ctx: Context) -> Reply:
    if phone_proof.kept(ctx) is None:
        ctx.dialog.set(Registration.phone)
        return ctx.reply("reg_ask_phone.j2")
    return ctx.reply("reg_bad_code.j2")


@router.message(state=Registration.name)
async def not_a_name(ctx: Context) -> Reply:
    problem = "command" if ctx.is_command(ctx.text) else name_problem(ctx.text)
    return ctx.reply("reg_bad_name.j2", problem=problem, text=ctx.text)


@router.message(state=Registration.birthday)
async def not_a_birthday(ctx: Context) -> Reply:
    try:
        read_birthday(ctx.text, ctx.bot.today())
    except BadBirthday as bad:
        return ctx.reply("reg_bad_birthday.j2", reason=bad.reason, text=ctx.text)
    return ctx.reply("reg_bad_birthday.j2", reason=BadBirthday.FORMAT, text=ctx.text)


async def _bound_elsewhere(ctx: Context, phone: str) -> Reply:
    """This account proved the phone, whose card is bound to another account: keep the proof
    for a manager's 换绑 (bot/handlers/card_transfer.py) and say how to get the card moved."""
    await members.request_transfer(ctx.bot, ctx.inbound.user, phone)
    ctx.dialog.clear()
    return ctx.reply("reg_phone_taken.j2", masked=mask_phone(phone),
                     hours=int(members.TRANSFER_TTL.total_seconds() // 3600))


async def _finish(ctx: Context, birthday) -> Reply:
    phone = phone_proof.kept(ctx)
    if phone is None or not ctx.dialog.data.get("verified"):
        ctx.dialog.set(Registration.phone)
        return ctx.reply("reg_ask_phone.j2")
    consent_at = dt.datetime.fromisoformat(ctx.dialog.data.get("consent_at", ctx.now.isoformat()))
    try:
        registration = await members.register(ctx.bot, ctx.inbound.user, phone,
                                              ctx.dialog.data.get("name", ""), birthday,
                                              consent_at)
    except members.PhoneTaken:  # registered by another account since this one proved the code
        return await _bound_elsewhere(ctx, phone)
    ctx.dialog.clear()
    member = registration.member
    coupon = None
    if registration.created:
        ctx.bot.spawn(members.send_welcome_sms(ctx.bot, member, phone), f"welcome:{member.id}")
        coupon = await coupons.issue_reward(ctx.bot, member, ctx.bot.config.coupon_rewards.welcome,
                                            source="welcome", key=f"welcome-coupon:{member.id}")
        if coupon:
            await coupon.fetch_related("template")
    return ctx.reply("reg_welcome.j2", member=member, birthday=birthday, coupon=coupon,
                     points=ctx.bot.config.shop.welcome_points if registration.created else 0)
