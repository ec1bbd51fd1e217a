"""Members' rights over their data (PIPL): see it (我的数据), erase it (注销), refuse marketing
(退订) and accept it again (订阅); and re-encrypting every phone number under a new data key
without downtime.

Erasure removes what identifies the person (phone, name, birthday, attribution to an employee)
and unbinds their WeChat account. The member row, its card number and its ledger entries stay,
anonymised, so the shop's totals still add up; the card number is never reused.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from tortoise.transactions import in_transaction

from bot.infra.paging import value_batches
from bot.models import (
    Conversation,
    Coupon,
    CouponStatus,
    Delivery,
    Follower,
    Member,
    PointsKind,
    ProfileChange,
    PunchCard,
    Purchase,
    Rating,
    SmsCode,
    Store,
    SupportMessage,
    SupportThread,
    ThreadStatus,
)
from bot.services import Refused, loyalty, profile
from bot.services.staff import Actor, audit


class ErasureRefused(Refused):
    """Erasure has to wait: money or visits are still on the card."""


@dataclass(frozen=True)
class DataSummary:
    member: Member
    phone: str
    store: Store | None
    purchases: int
    last_purchase: Purchase | None
    coupons: int
    punch_cards: int
    following: bool
    changes: list[ProfileChange]  # the latest changes to name, phone, birthday


async def summary(bot, member: Member) -> DataSummary:
    follower = await Follower.get_or_none(member_id=member.id)
    return DataSummary(
        member=member,
        phone=bot.vault.decrypt(member.phone_enc),
        store=await Store.get_or_none(id=member.store_id) if member.store_id else None,
        purchases=await Purchase.filter(member_id=member.id).count(),
        last_purchase=await Purchase.filter(member_id=member.id).order_by("-id").first(),
        coupons=await Coupon.filter(member_id=member.id).count(),
        punch_cards=await PunchCard.filter(member_id=member.id).count(),
        following=bool(follower and follower.following),
        changes=await profile.history(member),
    )


async def check_erasable(bot, member: Member) -> None:
    """Money or visits still on the card must be settled at the store first."""
    if member.stored_value > 0:
        raise ErasureRefused("erase_has_balance.j2", balance=member.stored_value)
    if await PunchCard.exists(member_id=member.id, remaining__gt=0,
                              expires_on__gte=bot.today()):
        raise ErasureRefused("erase_has_punch_cards.j2")


async def erase(bot, member: Member) -> None:
    await check_erasable(bot, member)
    now = bot.now()
    phone_hashes = [member.phone_hash]
    follower = await Follower.get_or_none(member_id=member.id)
    async with in_transaction():
        points = await loyalty.spendable(member.id)
        if points > 0:
            # Through the ledger, so balance == sum of entries still holds for the row.
            await loyalty.append_points(member.id, -points, kind=PointsKind.ADJUST,
                                        reason="会员注销", key=f"erase:{member.id}")
        await Member.filter(id=member.id, erased_at=None).update(
            name="", phone_enc="", phone_hash=f"erased:{member.id}", birth_year=None,
            birth_month=None, birth_day=None, staff_ref=None, erased_at=now,
            marketing_opt_out_at=now)
        if follower:
            await Follower.filter(id=follower.id).update(member_id=None, scene=None)
            await Conversation.filter(user=f"wechat:{follower.openid}").delete()
        await SmsCode.filter(phone_hash__in=phone_hashes).delete()
        # Old names, numbers and birthdays are personal data too.
        await ProfileChange.filter(member_id=member.id).delete()
        await Delivery.filter(phone_hash__in=phone_hashes).update(phone_hash=None)
        # What they wrote to the shop is theirs too: rating comments, messages to staff.
        await Rating.filter(member_id=member.id).update(comment="")
        threads = await SupportThread.filter(member_id=member.id).values_list("id", flat=True)
        await SupportMessage.filter(thread_id__in=threads, from_member=True).update(text="")
        await SupportThread.filter(member_id=member.id, open_member__not_isnull=True).update(
            status=ThreadStatus.CLOSED, open_member=None, closed_at=now, closed_by="member")
        # Revoke unused coupons: nobody can present them any more.
        await Coupon.filter(member_id=member.id, status="issued").update(
            status=CouponStatus.REVOKED)
        await audit(Actor(None, None, f"member:{member.id}"), "erase", member=member.id,
                    detail="personal data erased at the member's request")


async def opt_out(member: Member, now: dt.datetime) -> bool:
    """True if this changed anything (a second 退订 is harmless)."""
    return bool(await Member.filter(id=member.id, marketing_opt_out_at=None).update(
        marketing_opt_out_at=now))


async def opt_in(member: Member, now: dt.datetime) -> bool:
    """订阅 after a 退订: marketing consent given back, stamped with its time. The opt-out it
    ends goes to the audit log, so the history of consent survives the row's one pair of
    columns. False if there was nothing to give back (never opted out, or erased)."""
    async with in_transaction():
        opted_out_at = await Member.filter(
            id=member.id, erased_at=None, marketing_opt_out_at__not_isnull=True
        ).first().values_list("marketing_opt_out_at", flat=True)
        if opted_out_at is None:
            return False
        # Conditional: of two 订阅 at once, one records it.
        if not await Member.filter(id=member.id, marketing_opt_out_at__not_isnull=True).update(
                marketing_opt_out_at=None, marketing_opt_in_at=now):
            return False
        await audit(Actor(None, None, f"member:{member.id}"), "marketing_opt_in",
                    member=member.id, before={"marketing_opt_out_at": opted_out_at.isoformat()},
                    after={"marketing_opt_in_at": now.isoformat()})
    return True


async def rotate_key(bot, batch: int = 500) -> tuple[int, int]:
    """Re-encrypt and re-hash every phone under the current key. Run it after the new key is
    current and the old one is listed in security.previous_keys; safe to stop and run again.
    Returns (rewritten, already current)."""
    vault = bot.vault
    rewritten = current = 0
    async for rows in value_batches(Member.filter(erased_at=None), "id", "phone_enc",
                                    "phone_hash", size=batch):
        for member_id, sealed, phone_hash in rows:
            phone = vault.decrypt(sealed)
            if vault.key_id_of(sealed) == vault.key_id and phone_hash == vault.lookup_hash(phone):
                current += 1
                continue
            # Conditional on what we read: a row changed meanwhile is left for the next run.
            rewritten += await Member.filter(id=member_id, phone_enc=sealed).update(
                phone_enc=vault.encrypt(phone), phone_hash=vault.lookup_hash(phone))
    return rewritten, current
