"""Joining: consent → phone → SMS code → name → birthday → card number and welcome points.

取消 leaves at any step. A dialog left alone for a while asks "continue or start over?" when the
member comes back. The phone number is kept encrypted in the dialog data, like everywhere else.
"""

from __future__ import annotations

import datetime as dt
import re

from bot.chat.context import Context
from bot.chat.routing import NO_DIALOG, Router
from bot.infra.vault import mask_phone
from bot.notifications.replies import Reply
from bot.rules.parsing import normalize_phone, parse_birthday, parse_code
from bot.services import coupons, members, verification

router = Router("registration")

STEPS = ("reg.consent", "reg.phone", "reg.code", "reg.name", "reg.birthday")
STEP_LABELS = {
    "reg.consent": "同意隐私政策",
    "reg.phone": "填写手机号",
    "reg.code": "填写短信验证码",
    "reg.name": "填写称呼",
    "reg.birthday": "填写生日",
}
PURPOSE = "register"
_NAME_RE = re.compile(r"[\w\u00b7\u3400-\u9fff· .'-]{1,20}")


async def start(ctx: Context) -> Reply:
    """The greeting with the privacy notice; the member answers 同意 to go on."""
    ctx.dialog.clear()
    ctx.dialog.set("reg.consent")
    return ctx.reply("reg_greeting.j2", returning=False)


def prompt(ctx: Context, state: str | None) -> Reply:
    """The question of a step, asked again (after 继续, or when a menu tap interrupts)."""
    phone = _phone(ctx)
    templates = {
        "reg.consent": ("reg_consent.j2", {}),
        "reg.phone": ("reg_ask_phone.j2", {}),
        "reg.code": ("reg_ask_code.j2", {"masked": mask_phone(phone) if phone else ""}),
        "reg.name": ("reg_ask_name.j2", {}),
        "reg.birthday": ("reg_ask_birthday.j2", {"name": ctx.dialog.data.get("name", "")}),
    }
    name, values = templates.get(state or "", ("reg_consent.j2", {}))
    return ctx.reply(name, **values)


def _phone(ctx: Context) -> str | None:
    sealed = ctx.dialog.data.get("phone")
    if not sealed:
        return None
    try:
        return ctx.bot.vault.decrypt(sealed)
    except ValueError:  # sealed under a key retired since: ask for the number again
        return None


def _stale(ctx: Context) -> bool:
    limit = dt.timedelta(minutes=ctx.bot.config.shop.resume_after_minutes)
    return ctx.dialog.idle(ctx.now) > limit


# --- entering and leaving ---

@router.text("注册", "加入", "加入会员", "会员注册", "办会员", "入会", state=NO_DIALOG)
@router.click("JOIN", state=(NO_DIALOG, "reg.resume"))
async def join(ctx: Context) -> Reply:
    if ctx.member:
        return ctx.reply("already_member.j2", member=ctx.member)
    return await start(ctx)


@router.text("取消", "退出", "算了", state="reg.*")
async def cancel(ctx: Context) -> Reply:
    ctx.dialog.clear()
    return ctx.reply("reg_cancelled.j2")


@router.when(lambda ctx: ctx.inbound.kind == "text" and _stale(ctx), state=STEPS)
async def offer_resume(ctx: Context) -> Reply:
    step = ctx.dialog.state
    ctx.dialog.set("reg.resume", resume_to=step)
    return ctx.reply("reg_resume.j2", step=STEP_LABELS.get(step, ""))


@router.text("继续", state="reg.resume")
async def resume(ctx: Context) -> Reply:
    step = ctx.dialog.data.get("resume_to", "reg.consent")
    ctx.dialog.set(step)
    return prompt(ctx, step)


@router.text("重新开始", "重新", "从头开始", state="reg.resume")
async def start_over(ctx: Context) -> Reply:
    return await start(ctx)


@router.message(state="reg.resume")
async def resume_unclear(ctx: Context) -> Reply:
    step = ctx.dialog.data.get("resume_to", "")
    return ctx.reply("reg_resume.j2", step=STEP_LABELS.get(step, ""))


# --- consent ---

@router.text("同意", "我同意", "好的", "好", "可以", "是", state="reg.consent")
async def consent(ctx: Context) -> Reply:
    ctx.dialog.set("reg.phone", consent_at=ctx.now.isoformat())
    return ctx.reply("reg_ask_phone.j2")


@router.text("不同意", "拒绝", "不", "否", state="reg.consent")
async def decline(ctx: Context) -> Reply:
    ctx.dialog.clear()
    return ctx.reply("reg_declined.j2")


@router.message(state="reg.consent")
async def consent_unclear(ctx: Context) -> Reply:
    return ctx.reply("reg_consent.j2")


# --- phone and code ---

@router.message(state="reg.phone")
async def phone_given(ctx: Context) -> Reply:
    phone = normalize_phone(ctx.text)
    if phone is None and ctx.text in ("重发", "重新发送", "没收到") and _phone(ctx):
        return await resend(ctx)  # the first send failed and its message said 「重发」
    if phone is None:
        return ctx.reply("reg_bad_phone.j2")
    owner = await members.phone_owner(ctx.bot, phone, ctx.inbound.user)
    if owner == "taken":
        return ctx.reply("reg_phone_taken.j2", masked=mask_phone(phone))
    ctx.dialog.update(phone=ctx.bot.vault.encrypt(phone))
    return await _send_code(ctx, phone)


async def _send_code(ctx: Context, phone: str) -> Reply:
    result = await verification.send_code(ctx.bot, phone, ctx.inbound.user, PURPOSE)
    if not result.sent:
        return ctx.reply(result.template, retry_after=result.retry_after)
    ctx.dialog.set("reg.code")
    return ctx.reply("reg_code_sent.j2", masked=mask_phone(phone),
                     minutes=ctx.bot.config.sms_limits.code_ttl_seconds // 60)


@router.text("重发", "重新发送", "没收到", state="reg.code")
async def resend(ctx: Context) -> Reply:
    phone = _phone(ctx)
    if phone is None:
        ctx.dialog.set("reg.phone")
        return ctx.reply("reg_ask_phone.j2")
    return await _send_code(ctx, phone)


@router.text("换号", "换手机号", "修改手机号", state="reg.code")
async def change_phone(ctx: Context) -> Reply:
    ctx.dialog.set("reg.phone")
    return ctx.reply("reg_ask_phone.j2")


@router.message(state="reg.code")
async def code_given(ctx: Context) -> Reply:
    phone = _phone(ctx)
    code = parse_code(ctx.text)
    if phone is None:
        ctx.dialog.set("reg.phone")
        return ctx.reply("reg_ask_phone.j2")
    if code is None:
        return ctx.reply("reg_bad_code.j2")
    check = await verification.check_code(ctx.bot, phone, ctx.inbound.user, PURPOSE, code)
    if not check.ok:
        return ctx.reply(f"reg_code_{check.status}.j2", attempts_left=check.attempts_left)
    try:
        linked = await members.link_existing(ctx.bot, ctx.inbound.user, phone)
    except members.PhoneTaken:
        ctx.dialog.set("reg.phone")
        return ctx.reply("reg_phone_taken.j2", masked=mask_phone(phone))
    if linked:
        ctx.dialog.clear()
        return ctx.reply("reg_linked.j2", member=linked.member)
    ctx.dialog.set("reg.name", verified=True)
    return ctx.reply("reg_ask_name.j2")


# --- name and birthday ---

@router.message(state="reg.name")
async def name_given(ctx: Context) -> Reply:
    name = ctx.text
    if not _NAME_RE.fullmatch(name) or name.isdigit():
        return ctx.reply("reg_bad_name.j2")
    ctx.dialog.set("reg.birthday", name=name)
    return ctx.reply("reg_ask_birthday.j2", name=name)


@router.text("跳过", "不填", "略过", state="reg.birthday")
async def birthday_skipped(ctx: Context) -> Reply:
    return await _finish(ctx, None)


@router.message(state="reg.birthday")
async def birthday_given(ctx: Context) -> Reply:
    birthday = parse_birthday(ctx.text, ctx.bot.today())
    if birthday is None:
        return ctx.reply("reg_bad_birthday.j2")
    return await _finish(ctx, birthday)


async def _finish(ctx: Context, birthday) -> Reply:
    phone = _phone(ctx)
    if phone is None or not ctx.dialog.data.get("verified"):
        ctx.dialog.set("reg.phone")
        return ctx.reply("reg_ask_phone.j2")
    consent_at = dt.datetime.fromisoformat(ctx.dialog.data.get("consent_at", ctx.now.isoformat()))
    try:
        registration = await members.register(ctx.bot, ctx.inbound.user, phone,
                                              ctx.dialog.data.get("name", ""), birthday,
                                              consent_at)
    except members.PhoneTaken:
        ctx.dialog.set("reg.phone")
        return ctx.reply("reg_phone_taken.j2", masked=mask_phone(phone))
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
