"""Staff commands in the same chat: 绑定, 消费, 撤销, 查询, 充值, 储值, 退款, 开卡, 核次, 调积分,
设等级, 员工帮助 (registered with bot/chat/staff_commands.py). A command from someone who never
was staff falls through to the member handlers ("not understood"); a revoked account is told its
access has ended; a command outside one's role gets a clear refusal."""

from __future__ import annotations

import functools

from bot.chat import commands
from bot.chat.context import Context
from bot.chat.routing import Router
from bot.chat.staff_commands import staff_answering, staff_help_lines, staff_text
from bot.chat.staff_commands import staff_command as _staff_command
from bot.chat.states import PunchSale, PurchaseCheck
from bot.infra.vault import mask_phone
from bot.models import Purchase
from bot.notifications import notices
from bot.notifications.replies import Reply
from bot.rules import earning, tiers
from bot.services import Refused, loyalty, members, purchases, tiering, wallet
from bot.services import staff as staff_service
from bot.services.staff import Actor

router = Router("staff")
staff_command = functools.partial(_staff_command, on=router)


def _amount(text: str, max_yuan: int) -> int | None:
    return earning.parse_yuan(text, max_yuan * 100)


def _who(ctx: Context, member) -> dict:
    return {"member": member, "masked": mask_phone(members.phone_of(ctx.bot, member))}


# --- binding ---

@router.global_command(commands.BIND)
async def bind(ctx: Context) -> Reply:
    parts = ctx.text.split()
    if len(parts) != 2:
        return ctx.reply("staff_bind_usage.j2")
    if await ctx.bot.limiter.hit({f"bind:{ctx.inbound.user}": staff_service.BIND_LIMIT},
                                 ctx.now):
        return ctx.reply("staff_bind_slow_down.j2")
    staff = await staff_service.bind(ctx.inbound.user, parts[1], ctx.now)
    if staff is None:
        return ctx.reply("staff_bind_failed.j2")
    store = await staff.store
    return ctx.reply("staff_bound.j2", staff=staff, store=store,
                     role=staff_service.ROLE_NAMES[staff.role])


@staff_text("员工帮助", "店员帮助", "员工菜单", on=router)
async def staff_help(ctx: Context, actor: Actor) -> Reply:
    """Generated from the staff commands registered and the role table."""
    role = actor.staff.role
    return ctx.reply("staff_help.j2", staff=actor.staff, store=actor.store,
                     role=staff_service.ROLE_NAMES[role],
                     commands=staff_help_lines(ctx.router, role))


# --- purchases ---

PURCHASE_USAGE = "消费 <手机号|卡号> <金额> [备注]"


@staff_command("消费", action="purchase", usage=PURCHASE_USAGE, args=(2, 3))
async def purchase(ctx: Context, actor: Actor, parts: list[str]) -> Reply:
    member = await members.lookup(ctx.bot, parts[0])
    amount = _amount(parts[1], ctx.bot.config.points.max_purchase)
    if amount is None:
        return ctx.reply("staff_bad_amount.j2", text=parts[1],
                         max=ctx.bot.config.points.max_purchase)
    note = parts[2] if len(parts) > 2 else ""
    limit = ctx.bot.config.points.confirm_above
    if limit and amount > limit * 100:
        # A typo here (100000 for 1000.00) makes someone 钻石会员 at once: ask first. The
        # purchase will carry this message's key, so a repeated 确认 records it once.
        who = _who(ctx, member)
        ctx.dialog.set(PurchaseCheck.confirm, card_no=member.card_no, amount=amount, note=note,
                       key=ctx.key, masked=who["masked"])
        return ctx.reply("purchase_confirm.j2", amount=amount, limit=limit,
                         points=purchases.points_preview(ctx.bot, member, amount), **who)
    return await _record_purchase(ctx, actor, member, amount, note, ctx.key)


async def _record_purchase(ctx: Context, actor: Actor, member, amount: int, note: str,
                           key: str) -> Reply:
    result = await purchases.record(ctx.bot, member, amount, actor=actor, note=note, key=key)
    # Also for a repeat: a copy that died after the commit may not have told the member yet.
    # The notice's key is the purchase's, so the outbox never sends it twice.
    ctx.bot.spawn(notices.purchase(ctx.bot, result, amount, actor.store, ctx.now),
                  f"notice:purchase:{result.purchase.id}")
    discount = tiers.config_of(ctx.bot.config.tiers, result.member.tier).discount
    return ctx.reply("purchase_staff.j2", result=result, amount=amount, discount=discount,
                     **_who(ctx, result.member))


@router.question_values(PurchaseCheck)
def _purchase_question(ctx: Context) -> dict:
    return {"amount": ctx.dialog.data.get("amount", 0), "masked": ctx.dialog.data.get("masked")}


@router.text("确认", "确定", "是", state=PurchaseCheck.confirm)
async def purchase_confirmed(ctx: Context) -> Reply:
    data, actor, refusal = await staff_answering(ctx, "purchase", PURCHASE_USAGE)
    if refusal is not None:
        return refusal
    try:
        member = await members.lookup(ctx.bot, data["card_no"])
    except members.MemberNotFound as exc:
        return ctx.reply(exc.reason, text=data["card_no"])
    return await _record_purchase(ctx, actor, member, data["amount"], data["note"], data["key"])


@router.message(state=PurchaseCheck.confirm)
async def purchase_unclear(ctx: Context) -> Reply:
    return ctx.ask(PurchaseCheck.confirm)


@staff_command("撤销", action="void_purchase", usage="撤销 <流水号>", args=(1, 1))
async def void(ctx: Context, actor: Actor, parts: list[str]) -> Reply:
    serial = parts[0].lstrip("#")
    if not serial.isascii() or not serial.isdigit() or len(serial) > 18:
        return ctx.reply("staff_usage.j2", usage="撤销 <流水号>（消费确认里的 # 号码）")
    result = await purchases.void(ctx.bot, int(serial), actor=actor)
    # Repeats too (see purchase): the key makes the outbox send it once.
    ctx.bot.spawn(ctx.bot.outbox.notify(
        result.member.id, ctx.render("void_member.j2", result=result),
        purpose="purchase_void", key=f"notice:void:{result.purchase.id}"),
        f"notice:void:{result.purchase.id}")
    return ctx.reply("void_staff.j2", result=result, **_who(ctx, result.member))


# --- looking members up ---

@staff_command("查询", action="lookup", usage="查询 <手机号|卡号>", args=(1, 1))
async def look_up(ctx: Context, actor: Actor, parts: list[str]) -> Reply:
    member = await members.lookup(ctx.bot, parts[0])
    # Reading a member's personal data is logged like any other staff action.
    await staff_service.audit(actor, "lookup", member=member)
    recent = await Purchase.filter(member_id=member.id).order_by("-id").limit(5)
    cards = await wallet.active_punch_cards(member.id, ctx.bot.today())
    discount = tiers.config_of(ctx.bot.config.tiers, member.tier).discount
    return ctx.reply("lookup.j2", purchases=recent, cards=cards, discount=discount,
                     **_who(ctx, member))


# --- points by hand, tiers ---

@staff_command("调积分", "调整积分", action="adjust_points",
               usage="调积分 <手机号|卡号> <+/-积分> <原因>", args=(3, 3))
async def adjust(ctx: Context, actor: Actor, parts: list[str]) -> Reply:
    member = await members.lookup(ctx.bot, parts[0])
    text = parts[1]
    sign = -1 if text.startswith("-") else 1
    digits = text[1:] if text[:1] in ("+", "-") else text  # one sign at most: not "+-50"
    if not digits.isascii() or not digits.isdigit() or not 0 < int(digits) <= 1_000_000:
        return ctx.reply("staff_usage.j2", usage="调积分 <手机号|卡号> <+/-积分> <原因>")
    delta = sign * int(digits)
    try:
        entry = await loyalty.adjust(ctx.bot, member, delta, reason=parts[2], actor=actor,
                                     key=ctx.key)
    except loyalty.InsufficientPoints:
        return ctx.reply("adjust_insufficient.j2", points=member.points, delta=delta)
    # Repeats too (see purchase): the entry's key makes it the same notice.
    ctx.bot.spawn(notices.points_adjusted(ctx.bot, entry, ctx.now), f"notice:adjust:{entry.id}")
    return ctx.reply("adjust_staff.j2", entry=entry, **_who(ctx, member))


@staff_command("设等级", "设置等级", action="set_tier", usage="设等级 <手机号|卡号> <等级>",
               args=(2, 2))
async def set_tier(ctx: Context, actor: Actor, parts: list[str]) -> Reply:
    member = await members.lookup(ctx.bot, parts[0])
    names = [t.name for t in ctx.bot.config.tiers]
    if parts[1] not in names:
        return ctx.reply("tier_unknown.j2", text=parts[1], names=names)
    done = await tiering.set_tier(ctx.bot, member, parts[1], actor=actor)
    return ctx.reply("tier_set_staff.j2", **_who(ctx, done.member))


# --- stored value ---

STORED_VALUE = {
    # command word: (service function, what staff see, the member's notice: notices.stored_value)
    "充值": (wallet.top_up, "充值", "topup"),
    "储值": (wallet.pay, "储值消费", "pay"),
    "退款": (wallet.refund, "储值退款", "refund"),
}


async def _stored_value(ctx: Context, actor: Actor, parts: list[str], word: str) -> Reply:
    operation, what, change = STORED_VALUE[word]
    member = await members.lookup(ctx.bot, parts[0])
    max_yuan = ctx.bot.config.stored_value.max_topup
    amount = _amount(parts[1], max_yuan)
    if amount is None:
        return ctx.reply("staff_bad_amount.j2", text=parts[1], max=max_yuan)
    result = await operation(ctx.bot, member, amount, actor=actor, key=ctx.key)
    # Repeats too (see purchase): the key makes the outbox send it once.
    key = f"notice:stored_value:{ctx.key}"
    ctx.bot.spawn(notices.stored_value(ctx.bot, result, change, ctx.now, key=key), key)
    return ctx.reply("stored_value_staff.j2", result=result, what=what, **_who(ctx, member))


@staff_command("充值", action="stored_value_topup", usage="充值 <手机号|卡号> <金额>", args=(2, 2))
async def top_up(ctx: Context, actor: Actor, parts: list[str]) -> Reply:
    return await _stored_value(ctx, actor, parts, "充值")


@staff_command("储值", "储值消费", action="stored_value_pay", usage="储值 <手机号|卡号> <金额>",
               args=(2, 2))
async def pay(ctx: Context, actor: Actor, parts: list[str]) -> Reply:
    return await _stored_value(ctx, actor, parts, "储值")


@staff_command("退款", "储值退款", action="stored_value_refund",
               usage="退款 <手机号|卡号> <金额>", args=(2, 2))
async def refund(ctx: Context, actor: Actor, parts: list[str]) -> Reply:
    return await _stored_value(ctx, actor, parts, "退款")


# --- punch cards ---

SELL_USAGE = "开卡 <手机号|卡号> <次卡> [现金|储值]"
TENDERS = {"现金": "cash", "储值": "stored_value", "储值卡": "stored_value", "余额": "stored_value"}


@staff_command("开卡", action="punch_sell", usage=SELL_USAGE, args=(2, 3))
async def sell_card(ctx: Context, actor: Actor, parts: list[str]) -> Reply:
    member = await members.lookup(ctx.bot, parts[0])
    product = wallet.product_named(ctx.bot.config.punch_cards, parts[1])
    if product is None:
        return ctx.reply("punch_unknown.j2", text=parts[1], products=ctx.bot.config.punch_cards)
    paid_with = TENDERS.get(parts[2]) if len(parts) > 2 else "cash"
    if paid_with is None:
        return ctx.reply("staff_usage.j2", usage=SELL_USAGE)
    repeat = await wallet.punch_sale(ctx.key)
    if repeat is not None:  # this very message sold it already (a retry)
        return _punch_sold(ctx, actor, member, repeat)
    held = [card for card in await wallet.active_punch_cards(member.id, ctx.bot.today())
            if card.product == product.code]
    if held:
        # A second card of the same kind is a real sale (the first is nearly used up) as often
        # as a double tap: ask, showing what is left, instead of selling or refusing.
        remaining = sum(card.remaining for card in held)
        ctx.dialog.set(PunchSale.confirm, card_no=member.card_no, product=product.code,
                       paid_with=paid_with, key=ctx.key, name=product.name, remaining=remaining)
        return ctx.reply("punch_sale_confirm.j2", product=product, cards=held,
                         remaining=remaining, price=round(product.price * 100),
                         paid_with=paid_with, **_who(ctx, member))
    sale = await wallet.sell_punch_card(ctx.bot, member, product, actor=actor, key=ctx.key,
                                        paid_with=paid_with)
    return _punch_sold(ctx, actor, member, sale)


def _punch_sold(ctx: Context, actor: Actor, member, sale: wallet.PunchSale) -> Reply:
    # The card and the purchase it recorded in one notice; repeats too (see purchase): the
    # notice's key is the card's.
    ctx.bot.spawn(notices.punch_sold(ctx.bot, sale, ctx.now), f"notice:punch-sold:{sale.card.id}")
    return ctx.reply("punch_sold.j2", card=sale.card, sale=sale, **_who(ctx, member))


@router.question_values(PunchSale)
def _punch_question(ctx: Context) -> dict:
    return {"name": ctx.dialog.data.get("name", ""),
            "remaining": ctx.dialog.data.get("remaining", 0)}


@router.text("确认", "确定", "是", state=PunchSale.confirm)
async def sell_card_confirmed(ctx: Context) -> Reply:
    data, actor, refusal = await staff_answering(ctx, "punch_sell", SELL_USAGE)
    if refusal is not None:
        return refusal
    product = wallet.product_named(ctx.bot.config.punch_cards, data.get("product", ""))
    if product is None:
        return ctx.reply("punch_unknown.j2", text=data.get("name", ""),
                         products=ctx.bot.config.punch_cards)
    try:
        member = await members.lookup(ctx.bot, data["card_no"])
        sale = await wallet.sell_punch_card(ctx.bot, member, product, actor=actor,
                                            key=data["key"], paid_with=data["paid_with"])
    except members.MemberNotFound as exc:
        return ctx.reply(exc.reason, text=data["card_no"])
    except Refused as exc:
        return ctx.reply(exc.reason, tz=ctx.bot.config.shop.tz, **exc.values)
    return _punch_sold(ctx, actor, member, sale)


@router.message(state=PunchSale.confirm)
async def sell_card_unclear(ctx: Context) -> Reply:
    return ctx.ask(PunchSale.confirm)


@staff_command("核次", "用次卡", action="punch_use", usage="核次 <手机号|卡号> [次卡]",
               args=(1, 2))
async def use_card(ctx: Context, actor: Actor, parts: list[str]) -> Reply:
    member = await members.lookup(ctx.bot, parts[0])
    product = None
    if len(parts) > 1:
        product = wallet.product_named(ctx.bot.config.punch_cards, parts[1])
        if product is None:
            return ctx.reply("punch_unknown.j2", text=parts[1],
                             products=ctx.bot.config.punch_cards)
    result = await wallet.use_punch_card(ctx.bot, member, product, actor=actor, key=ctx.key)
    # Repeats too (see purchase): the key makes the outbox send it once.
    ctx.bot.spawn(ctx.bot.outbox.notify(
        member.id, ctx.render("punch_used_member.j2", result=result), purpose="punch_use",
        key=f"notice:punch:{ctx.key}"), f"notice:punch:{ctx.key}")
    return ctx.reply("punch_used_staff.j2", result=result, **_who(ctx, member))

