"""Coupons in chat. Members: 优惠券 (wallet), 券 <n> (its QR code to show at the till), 历史券, and
兑换 (buy a coupon with points: choose a number, confirm). Staff: 核销 <券码> [金额] or a scan with
the STAFF_SCAN menu button, 撤销券 <券码> (same day, manager), 发券 <手机号|卡号> <模板> (manager).
"""

from __future__ import annotations

import asyncio
import re

from bot.chat import commands
from bot.chat.context import Context
from bot.chat.routing import Router
from bot.chat.staff_commands import staff_answering, staff_command
from bot.chat.states import CouponAmount, Exchange
from bot.infra.ratelimit import Limit
from bot.models import CouponTemplate
from bot.notifications import notices
from bot.notifications.poster import render_poster
from bot.notifications.replies import Image, Reply
from bot.notifications.wechat_api import WeChatAPIError
from bot.rules import coupons as coupon_rules
from bot.rules import earning
from bot.services import coupons, loyalty, members, redemption
from bot.services import staff as staff_service
from bot.services.coupons import CouponRefused
from bot.services.staff import Actor

router = Router("coupons")

# Guessing codes must not pay: after this many unknown or mistyped codes, a staff account waits.
MISSES = [Limit(10, 600), Limit(30, 86400)]


# --- the member's wallet ---

@router.global_command(commands.COUPONS, help="coupons")
async def show_wallet(ctx: Context) -> Reply:
    if ctx.member is None:
        return ctx.not_registered()
    held = await coupons.wallet(ctx.member.id, ctx.now)
    return ctx.reply("coupon_wallet.j2", coupons=held, tz=ctx.bot.config.shop.tz)


@router.global_command(commands.COUPON_HISTORY, help="coupon_history")
async def show_history(ctx: Context) -> Reply:
    if ctx.member is None:
        return ctx.not_registered()
    past = await coupons.history(ctx.member.id, ctx.now)
    return ctx.reply("coupon_history.j2", coupons=past, now=ctx.now, tz=ctx.bot.config.shop.tz)


@router.command("券", help="coupon_qr", shown=("券 序号",))
async def show_coupon_qr(ctx: Context) -> Reply:
    """券 <n>: the n-th coupon of the wallet as a QR image the clerk can scan."""
    if ctx.member is None:
        return ctx.not_registered()
    parts = ctx.text.split()
    held = await coupons.wallet(ctx.member.id, ctx.now)
    if len(parts) != 2 or not parts[1].isdigit() or not 1 <= int(parts[1]) <= len(held):
        return ctx.reply("coupon_pick.j2", count=len(held))
    coupon = held[int(parts[1]) - 1]
    caption = f"{coupon.template.name}  {coupon.code}"
    try:
        png = await asyncio.to_thread(render_poster, coupon.code, caption, "请出示给店员扫码核销")
        media_id = await ctx.bot.wechat.upload_image(f"coupon-{coupon.code}.png", png)
    except WeChatAPIError:
        return ctx.reply("coupon_qr_failed.j2", coupon=coupon)
    return Image(media_id)


# --- exchange: points for a coupon (10 minutes idle and it is forgotten: states.Exchange) ---

@router.question_values(Exchange)
def _exchange_question(ctx: Context) -> dict:
    return {"count": len(ctx.dialog.data.get("options", []))}


@router.text("不换了", state=Exchange)
async def exchange_cancel(ctx: Context) -> Reply:
    ctx.dialog.clear()
    return ctx.reply("exchange_cancelled.j2")


@router.global_command(commands.EXCHANGE, help="exchange")
async def exchange_start(ctx: Context) -> Reply:
    if ctx.member is None:
        return ctx.not_registered()
    offers = await coupons.exchangeable(ctx.member, ctx.bot.today())
    if not offers:
        return ctx.reply("exchange_nothing.j2")
    ctx.dialog.set(Exchange.choose, options=[t.id for t in offers])
    return ctx.reply("exchange_menu.j2", offers=offers, points=ctx.member.points)


def _a_number(ctx: Context) -> bool:
    return ctx.text.isascii() and ctx.text.isdigit()


@router.answer(Exchange.choose, fits=_a_number)
async def exchange_choose(ctx: Context) -> Reply:
    options = ctx.dialog.data.get("options", [])
    if not 1 <= int(ctx.text) <= len(options):
        return ctx.ask(Exchange.choose)
    template = await CouponTemplate.get_or_none(id=options[int(ctx.text) - 1], active=True)
    if template is None:
        ctx.dialog.clear()
        return ctx.reply("exchange_nothing.j2")
    if ctx.member.points < template.points_cost:
        return ctx.reply("exchange_not_enough.j2", template=template, points=ctx.member.points)
    ctx.dialog.set(Exchange.confirm, template_id=template.id)
    return ctx.reply("exchange_confirm.j2", template=template, points=ctx.member.points)


@router.message(state=Exchange.choose)
async def exchange_choose_unclear(ctx: Context) -> Reply:
    return ctx.ask(Exchange.choose)


@router.text("确认", "确定", "是", "好", "好的", state=Exchange.confirm)
async def exchange_confirm(ctx: Context) -> Reply:
    template = await CouponTemplate.get_or_none(id=ctx.dialog.data.get("template_id"))
    ctx.dialog.clear()
    if template is None:
        return ctx.reply("exchange_nothing.j2")
    try:
        coupon = await coupons.exchange(ctx.bot, ctx.member, template, key=ctx.key)
    except CouponRefused as refused:
        return ctx.reply(refused.reason, **refused.values)
    points = await loyalty.spendable(ctx.member.id)
    return ctx.reply("exchange_done.j2", template=template, coupon=coupon, points=points)


@router.message(state=Exchange.confirm)
async def exchange_unclear(ctx: Context) -> Reply:
    return ctx.ask(Exchange.confirm)


# --- staff: redemption, undo, issuing ---

def _split_codes_and_amount(parts: list[str], max_fen: int) -> tuple[list[str], int | None]:
    amount = earning.parse_yuan(parts[-1], max_fen) if len(parts) > 1 else None
    codes = parts[:-1] if amount is not None else parts
    return [coupon_rules.normalize_code(code) for code in codes], amount


async def _redeem(ctx: Context, actor: Actor, codes: list[str], amount: int | None, *,
                  confirmed: bool = False, key: str | None = None,
                  big_ok: bool = False) -> Reply:
    if CouponAmount.holds(ctx.dialog.state):
        ctx.dialog.clear()  # a scan while the amount was asked: this coupon's answer counts
    limit = ctx.bot.config.points.confirm_above
    if amount is not None and limit and amount > limit * 100 and not big_ok:
        # The amount records a purchase, as 消费 does: a typo must not mint points. Nothing is
        # used yet; the redemption will carry this message's key.
        ctx.dialog.set(CouponAmount.big, codes=codes, key=key or ctx.key, amount=amount)
        return ctx.reply("redeem_confirm_big.j2", amount=amount, limit=limit, codes=codes)
    misses = {f"coupon-miss:{actor.staff.id if actor.staff else actor.label}": MISSES}
    if await ctx.bot.limiter.blocked(misses, ctx.now):
        return ctx.reply("coupon_slow_down.j2")
    bad = next((code for code in codes if not coupon_rules.is_valid_code(code)), None)
    if bad is not None:
        await ctx.bot.limiter.hit(misses, ctx.now)
        return ctx.reply("coupon_bad_code.j2", code=bad)
    try:
        result = await redemption.redeem_or_explain(ctx.bot, codes, amount, actor=actor,
                                                    key=key or ctx.key, confirmed=confirmed)
    except redemption.AmountNeeded as needed:
        # Nothing used yet: the amount (or 确认) comes next. The redemption will carry this
        # message's key, so its purchase is recorded once whatever is repeated.
        ctx.dialog.set(CouponAmount.amount, codes=codes, key=key or ctx.key,
                       thresholds=_thresholds(needed.values["coupons"]))
        return ctx.reply("redeem_ask_amount_first.j2", coupons=needed.values["coupons"])
    except CouponRefused as refused:
        if refused.reason == "coupon_unknown.j2":
            await ctx.bot.limiter.hit(misses, ctx.now)
        return ctx.reply(refused.reason, tz=ctx.bot.config.shop.tz, **refused.values)
    member = result.coupons[0].member
    # One notice for the coupons and the purchase they paid for; its key is the redemption's.
    ctx.bot.spawn(notices.coupons_used(ctx.bot, result, actor.store, ctx.now,
                                       key=key or ctx.key),
                  f"notice:coupon:{result.coupons[0].id}")
    return ctx.reply("coupon_redeemed.j2", result=result, member=member)


def _thresholds(held) -> list[int]:
    return sorted({c.template.threshold for c in held if c.template.threshold})


@router.question_values(CouponAmount)
def _amount_question(ctx: Context) -> dict:
    return {"thresholds": ctx.dialog.data.get("thresholds", []),
            "amount": ctx.dialog.data.get("amount", 0)}


REDEEM_USAGE = "核销 <券码> [券码…] [消费金额]"


def _an_amount(ctx: Context) -> bool:
    return earning.parse_yuan(ctx.text, ctx.bot.config.points.max_purchase * 100) is not None


async def _answer_redemption(ctx: Context, amount: int | None, confirmed: bool) -> Reply:
    data, actor, refusal = await staff_answering(ctx, "redeem_coupon", REDEEM_USAGE)
    if refusal is not None:
        return refusal
    return await _redeem(ctx, actor, data.get("codes", []), amount, confirmed=confirmed,
                         key=data.get("key"))


@router.answer(CouponAmount.amount, fits=_an_amount)
async def redeem_with_amount(ctx: Context) -> Reply:
    amount = earning.parse_yuan(ctx.text, ctx.bot.config.points.max_purchase * 100)
    return await _answer_redemption(ctx, amount, confirmed=False)


@router.text("确认", "确定", state=CouponAmount.amount)
async def redeem_confirmed(ctx: Context) -> Reply:
    return await _answer_redemption(ctx, None, confirmed=True)


@router.message(state=CouponAmount.amount)
async def redeem_unclear(ctx: Context) -> Reply:
    return ctx.ask(CouponAmount.amount)


@router.text("确认", "确定", "是", state=CouponAmount.big)
async def redeem_big_confirmed(ctx: Context) -> Reply:
    data, actor, refusal = await staff_answering(ctx, "redeem_coupon", REDEEM_USAGE)
    if refusal is not None:
        return refusal
    return await _redeem(ctx, actor, data.get("codes", []), data.get("amount"),
                         key=data.get("key"), big_ok=True)


@router.message(state=CouponAmount.big)
async def redeem_big_unclear(ctx: Context) -> Reply:
    return ctx.ask(CouponAmount.big)


@staff_command("核销", "核券", action="redeem_coupon", usage="核销 <券码> [券码…] [消费金额]",
               args=(1, 6), on=router)
async def redeem_by_code(ctx: Context, actor: Actor, parts: list[str]) -> Reply:
    codes, amount = _split_codes_and_amount(parts, ctx.bot.config.points.max_purchase * 100)
    if amount is None and len(parts) > 1 and re.fullmatch(r"[¥￥]?-?[\d.]+元?", parts[-1]) \
            and not coupon_rules.is_valid_code(parts[-1]):  # an amount we can't take, not a code
        return ctx.reply("staff_bad_amount.j2", text=parts[-1],
                         max=ctx.bot.config.points.max_purchase)
    if not codes:
        return ctx.reply("staff_usage.j2", usage=REDEEM_USAGE)
    return await _redeem(ctx, actor, codes, amount)


@router.event("scancode")
async def redeem_by_scan(ctx: Context) -> Reply | None:
    """The staff menu's scancode_waitmsg button: WeChat sends what the camera read."""
    found = await ctx.staff_account()
    if found is None:
        return ctx.reply("scan_not_staff.j2")
    staff, store = found
    if not staff.active:
        return ctx.reply("staff_access_ended.j2", word="核销")
    if not staff_service.allowed(staff.role, "redeem_coupon"):
        return ctx.reply("staff_not_allowed.j2", role=staff_service.ROLE_NAMES[staff.role],
                         usage="核销")
    code = coupon_rules.normalize_code(ctx.inbound.text)
    return await _redeem(ctx, Actor.of(staff, store), [code], None)


@staff_command("撤销券", "撤销核销", action="undo_coupon", usage="撤销券 <券码>", args=(1, 1),
               on=router)
async def undo_redemption(ctx: Context, actor: Actor, parts: list[str]) -> Reply:
    code = coupon_rules.normalize_code(parts[0])
    try:
        coupon, void = await redemption.undo(ctx.bot, code, actor=actor)
    except CouponRefused as refused:
        return ctx.reply(refused.reason, tz=ctx.bot.config.shop.tz, **refused.values)
    ctx.bot.spawn(notices.coupon_undone(ctx.bot, coupon, void, ctx.now, key=ctx.key),
                  f"notice:coupon-undone:{coupon.id}")
    return ctx.reply("coupon_undone.j2", coupon=coupon, voided=void.purchase.id if void else None)


@staff_command("发券", action="issue_coupon", usage="发券 <手机号|卡号> <模板代码>", args=(2, 2),
               on=router)
async def give_coupon(ctx: Context, actor: Actor, parts: list[str]) -> Reply:
    member = await members.lookup(ctx.bot, parts[0])
    template = await CouponTemplate.get_or_none(code=parts[1].upper()) or \
        await CouponTemplate.get_or_none(name=parts[1])
    if template is None:
        names = await CouponTemplate.filter(active=True).values_list("code", flat=True)
        return ctx.reply("coupon_template_unknown.j2", text=parts[1], codes=names)
    try:
        coupon = await coupons.issue(ctx.bot, member, template, source="manual", key=ctx.key,
                                     actor=actor)
    except CouponRefused as refused:
        return ctx.reply(refused.reason, **refused.values)
    ctx.bot.spawn(notices.coupon_issued(ctx.bot, coupon, template),
                  f"notice:coupon-issued:{coupon.id}")
    return ctx.reply("coupon_issued_staff.j2", template=template, coupon=coupon,
                     member=member)
