"""Stored value (储值, integer fen) and punch cards (次卡). Every change is one transaction with
an idempotency key; every decrease is a conditional update, so balances and visits never go
below zero whatever the concurrency.

Selling a punch card is a sale: its price ([[punch_cards]] price), paid in cash or from stored
value, is a purchase in the member's history like any other (points and tier spend included,
whatever paid for it), recorded with the card in one transaction. Its visits, used later, are
not purchases again.

退款 (refund) puts a stored-value payment back on the card; it can never return more than the
member has paid with stored value and not yet had refunded, so it cannot mint money.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from tortoise.expressions import F
from tortoise.functions import Sum

from bot.config import PunchProductConfig
from bot.infra import idempotent
from bot.infra.db import IntegrityError
from bot.models import Member, PunchCard, PunchUse, StoredValueEntry, StoredValueKind
from bot.rules import earning
from bot.services import Refused, move_balance, purchases
from bot.services.staff import Actor, audit


class WalletRefused(Refused):
    """A stored-value or punch-card rule refused."""


@dataclass(frozen=True)
class StoredValueResult:
    member: Member
    amount: int
    bonus: int
    balance: int
    duplicate: bool = False


async def append_stored_value(member_id: int, delta: int, *, kind: StoredValueKind, reason: str,
                              key: str, actor: Actor) -> int:
    """One stored-value entry and the cached sum with it, for callers that hold the transaction;
    returns the balance after. A decrease that does not fit is refused."""
    balance = await move_balance(member_id, "stored_value", delta)
    if balance is None:
        raise WalletRefused("stored_value_insufficient.j2")
    await StoredValueEntry.create(member_id=member_id, delta=delta, kind=kind, reason=reason,
                                  idempotency_key=key, balance_after=balance,
                                  store=actor.store, staff=actor.staff)
    return balance


async def _replay(key: str) -> StoredValueResult | None:
    entries = await StoredValueEntry.filter(idempotency_key__in=[key, f"{key}:bonus"])
    if not entries:
        return None
    member = await Member.get(id=entries[0].member_id)
    main = next(e for e in entries if e.idempotency_key == key)
    bonus = sum(e.delta for e in entries if e.kind == StoredValueKind.BONUS)
    return StoredValueResult(member, abs(main.delta), bonus, member.stored_value, duplicate=True)


# (delta, kind, reason, key) of each entry one change appends
Entries = list[tuple[int, StoredValueKind, str, str]]


async def _apply(member: Member, entries: Entries, *, actor: Actor, action: str, amount: int,
                 bonus: int) -> StoredValueResult:
    balance = member.stored_value
    for delta, kind, reason, entry_key in entries:
        balance = await append_stored_value(member.id, delta, kind=kind, reason=reason,
                                            key=entry_key, actor=actor)
    await audit(actor, action, member=member, before={"stored_value": member.stored_value},
                after={"stored_value": balance, "amount": amount, "bonus": bonus})
    return StoredValueResult(await Member.get(id=member.id), amount, bonus, balance)


# WalletRefused too: a concurrent repeat of the key may have taken the balance first.
_CONFLICTS = (IntegrityError, WalletRefused)


async def _change(member: Member, entries: Entries, *, actor: Actor, action: str, key: str,
                  amount: int, bonus: int = 0) -> StoredValueResult:
    return await idempotent.once(
        lambda: _replay(key),
        lambda: _apply(member, entries, actor=actor, action=action, amount=amount, bonus=bonus),
        conflicts=_CONFLICTS)


async def top_up(bot, member: Member, amount_fen: int, *, actor: Actor,
                 key: str) -> StoredValueResult:
    bonuses = [earning.TopUpBonus(b.min * 100, b.bonus * 100) for b in bot.config.topup_bonus]
    bonus = earning.topup_bonus(amount_fen, bonuses)
    entries: Entries = [(amount_fen, StoredValueKind.TOPUP,
                         f"充值 ¥{earning.fen_to_yuan(amount_fen)}", key)]
    if bonus:
        entries.append((bonus, StoredValueKind.BONUS, f"充值赠送 ¥{earning.fen_to_yuan(bonus)}",
                        f"{key}:bonus"))
    return await _change(member, entries, actor=actor, action="stored_value_topup", key=key,
                         amount=amount_fen, bonus=bonus)


async def pay(bot, member: Member, amount_fen: int, *, actor: Actor,
              key: str) -> StoredValueResult:
    return await _change(member, [(-amount_fen, StoredValueKind.PAY,
                                   f"储值消费 ¥{earning.fen_to_yuan(amount_fen)}", key)],
                         actor=actor, action="stored_value_pay", key=key, amount=amount_fen)


async def refund(bot, member: Member, amount_fen: int, *, actor: Actor,
                 key: str) -> StoredValueResult:
    # Check and refund in one transaction, the member's row locked (SQLite serialises the
    # transaction instead): two refunds at once must not both see the same refundable amount.
    # (.only, not .values_list: tortoise drops FOR UPDATE from values queries.)
    async def act() -> StoredValueResult:
        await Member.filter(id=member.id).select_for_update().only("id")
        rows = await (StoredValueEntry.filter(member_id=member.id, kind__in=["pay", "refund"])
                      .group_by("kind").annotate(total=Sum("delta")).values("kind", "total"))
        totals = {row["kind"]: int(row["total"] or 0) for row in rows}
        refundable = -totals.get("pay", 0) - totals.get("refund", 0)
        if amount_fen > refundable:
            raise WalletRefused("stored_value_refund_too_much.j2", refundable=refundable)
        return await _apply(member, [(amount_fen, StoredValueKind.REFUND,
                                      f"储值退款 ¥{earning.fen_to_yuan(amount_fen)}", key)],
                            actor=actor, action="stored_value_refund", amount=amount_fen,
                            bonus=0)

    return await idempotent.once(lambda: _replay(key), act, conflicts=_CONFLICTS)


# --- punch cards ---

def product_named(products: list[PunchProductConfig], text: str) -> PunchProductConfig | None:
    text = text.strip().upper()
    for product in products:
        if text in (product.code.upper(), product.name.upper()):
            return product
    return None


PAYMENTS = ("cash", "stored_value")


@dataclass(frozen=True)
class PunchSale:
    card: PunchCard
    paid_with: str  # one of PAYMENTS
    price: int  # fen
    purchase: purchases.PurchaseResult | None  # the sale in the history; None when free
    balance: int | None  # stored value left, when it paid
    duplicate: bool = False


async def punch_sale(key: str) -> PunchSale | None:
    """The sale an earlier run with this key made (reported as a repeat), or None."""
    card = await PunchCard.get_or_none(idempotency_key=key)
    if card is None:
        return None
    purchase = await purchases.replayed(f"{key}:purchase")
    paid = await StoredValueEntry.get_or_none(idempotency_key=f"{key}:pay")
    return PunchSale(card, "stored_value" if paid else "cash",
                     purchase.purchase.amount if purchase else 0, purchase,
                     paid.balance_after if paid else None, duplicate=True)


async def sell_punch_card(bot, member: Member, product: PunchProductConfig, *, actor: Actor,
                          key: str, paid_with: str = "cash") -> PunchSale:
    """Sell a card at its price, paid in cash or from stored value (refused when the balance
    does not cover it: nothing is sold then)."""
    if paid_with not in PAYMENTS:
        raise ValueError(paid_with)
    expires_on = bot.today() + dt.timedelta(days=product.valid_days)
    price = round(product.price * 100)

    async def act() -> PunchSale:
        card = await PunchCard.create(member_id=member.id, product=product.code,
                                      name=product.name, visits=product.visits,
                                      remaining=product.visits, expires_on=expires_on,
                                      idempotency_key=key, store=actor.store, staff=actor.staff)
        sale, balance = None, None
        if price:
            if paid_with == "stored_value":
                balance = await append_stored_value(
                    member.id, -price, kind=StoredValueKind.PAY, reason=f"开卡 {product.name}",
                    key=f"{key}:pay", actor=actor)
            note = f"开卡 {product.name}" + ("（储值支付）" if paid_with == "stored_value" else "")
            sale = await purchases.record_in_transaction(bot, member, price, actor=actor,
                                                         note=note, key=f"{key}:purchase")
        await audit(actor, "punch_sell", member=member,
                    after={"card": card.id, "product": product.code,
                           "visits": product.visits, "expires_on": expires_on.isoformat(),
                           "price": price, "paid_with": paid_with})
        return PunchSale(card, paid_with, price, sale, balance)

    result = await idempotent.once(lambda: punch_sale(key), act, conflicts=_CONFLICTS)
    if result.purchase and not result.duplicate:
        await purchases.after_commit(bot, result.purchase)
    return result


async def active_punch_cards(member_id: int, today: dt.date) -> list[PunchCard]:
    return await PunchCard.filter(member_id=member_id, remaining__gt=0,
                                  expires_on__gte=today).order_by("expires_on", "id")


@dataclass(frozen=True)
class PunchResult:
    card: PunchCard
    remaining: int
    duplicate: bool = False


async def use_punch_card(bot, member: Member, product: PunchProductConfig | None, *,
                         actor: Actor, key: str) -> PunchResult:
    """One visit off the card that expires soonest (of this product, if named). The conditional
    update (remaining > 0) is what lets only one of two clerks use the last visit."""
    async def used() -> PunchResult | None:
        use = await PunchUse.get_or_none(idempotency_key=key).select_related("card")
        return PunchResult(use.card, use.remaining_after, duplicate=True) if use else None

    async def take_visit(card: PunchCard) -> PunchResult | None:
        if not await PunchCard.filter(id=card.id, remaining__gt=0, expires_on__gte=today).update(
                remaining=F("remaining") - 1):
            return None  # someone used this card's last visit; try the next card
        remaining = await PunchCard.get(id=card.id).values_list("remaining", flat=True)
        await PunchUse.create(card_id=card.id, idempotency_key=key, remaining_after=remaining,
                              store=actor.store, staff=actor.staff)
        await audit(actor, "punch_use", member=member,
                    before={"card": card.id, "remaining": remaining + 1},
                    after={"card": card.id, "remaining": remaining})
        return PunchResult(card, remaining)

    repeat = await used()
    if repeat:
        return repeat
    today = bot.today()
    cards = await active_punch_cards(member.id, today)
    if product:
        cards = [c for c in cards if c.product == product.code]
    elif len({c.product for c in cards}) > 1:
        raise WalletRefused("punch_which.j2", names=sorted({c.name for c in cards}))
    for card in cards:
        result = await idempotent.once(used, lambda card=card: take_visit(card),
                                       look_first=False)
        if result:
            return result
    repeat = await used()
    if repeat:  # a repeat of this key, running at the same time, took the last visit
        return repeat
    raise WalletRefused("punch_none.j2", product=product.name if product else "")
