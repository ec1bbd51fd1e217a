"""Staff: invites, binding a WeChat account, roles, and the audit log every staff action writes."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

from tortoise.transactions import in_transaction

from bot.clock import utcnow
from bot.infra.db import IntegrityError
from bot.models import AuditEntry, ConsoleSession, Member, Staff, StaffInvite, Store
from bot.models.staff import ROLES, Role

INVITE_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"  # no 0/O, 1/I
INVITE_LENGTH = 8
INVITE_TTL = dt.timedelta(hours=24)

# The least role that may do each thing. Owners may do everything, in every store.
REQUIRED_ROLE: dict[str, Role] = {
    "purchase": Role.CLERK,
    "lookup": Role.CLERK,
    "stored_value_pay": Role.CLERK,
    "punch_sell": Role.CLERK,
    "punch_use": Role.CLERK,
    "redeem_coupon": Role.CLERK,
    "tag_member": Role.CLERK,
    "booking_desk": Role.CLERK,  # 今日预约, 到店, 爽约 (bot/handlers/booking_desk.py)
    "booking_for_member": Role.CLERK,  # 代约, 代改, 代取消
    "support": Role.CLERK,  # 上班, 下班, 会话, 回复 <n>, 结束 <n> (bot/handlers/support.py)
    "void_purchase": Role.MANAGER,
    "adjust_points": Role.MANAGER,
    "stored_value_topup": Role.MANAGER,
    "stored_value_refund": Role.MANAGER,
    "set_tier": Role.MANAGER,
    "broadcast": Role.MANAGER,
    "issue_coupon": Role.MANAGER,
    "undo_coupon": Role.MANAGER,
    "transfer_card": Role.MANAGER,
    "edit_profile": Role.MANAGER,  # 改资料: a member's name or phone (bot/handlers/profile.py)
    "set_birthday": Role.MANAGER,  # 改生日: the one way a birthday once set changes
}
ROLE_NAMES = {Role.CLERK: "店员", Role.MANAGER: "店长", Role.OWNER: "老板"}


def allowed(role: str, action: str) -> bool:
    return ROLES.index(role) >= ROLES.index(REQUIRED_ROLE[action])


@dataclass(frozen=True)
class Actor:
    """Who is acting, for the audit log: a staff member in chat, or the owner's shell."""

    staff: Staff | None
    store: Store | None
    label: str

    @classmethod
    def of(cls, staff: Staff, store: Store) -> Actor:
        return cls(staff, store, f"staff:{staff.id} {staff.name}".strip())

    @classmethod
    def cli(cls, store: Store | None = None) -> Actor:
        return cls(None, store, "cli")

    @property
    def name(self) -> str:
        return self.staff.name if self.staff and self.staff.name else self.label


async def audit(actor: Actor, action: str, *, member: Member | int | None = None,
                before: dict[str, Any] | None = None, after: dict[str, Any] | None = None,
                detail: str = "") -> AuditEntry:
    """Append one audit entry; call it inside the transaction of the action it records."""
    member_id = member.id if isinstance(member, Member) else member
    return await AuditEntry.create(
        staff=actor.staff, actor=actor.label[:64],
        store_code=actor.store.code if actor.store else None, action=action,
        member_id=member_id, before=before, after=after, detail=detail[:255],
    )


def _hash(code: str) -> str:
    return hashlib.sha256(code.strip().upper().encode()).hexdigest()


async def create_invite(store_code: str, role: str, name: str, now: dt.datetime) -> str:
    """A one-time code, valid 24 h; only its hash is stored."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    store = await Store.get_or_none(code=store_code)
    if store is None:
        raise LookupError(f"no store {store_code!r}")
    code = "".join(secrets.choice(INVITE_ALPHABET) for _ in range(INVITE_LENGTH))
    async with in_transaction():
        await StaffInvite.create(code_hash=_hash(code), store=store, role=role, name=name,
                                 expires_at=now + INVITE_TTL)
        await audit(Actor.cli(store), "staff_invite", detail=f"role={role} name={name}")
    return code


async def bind(openid: str, code: str, now: dt.datetime) -> Staff | None:
    """Redeem an invite for this WeChat account. None if the code is unknown, used or expired.
    The conditional update makes a code usable exactly once, however many try at once."""
    invite = await StaffInvite.get_or_none(code_hash=_hash(code)).select_related("store")
    if invite is None or invite.used_at or invite.expires_at <= now:
        return None
    async with in_transaction():
        if not await StaffInvite.filter(id=invite.id, used_at=None).update(used_at=now):
            return None
        staff = await Staff.get_or_none(openid=openid)
        fields = {"store_id": invite.store_id, "role": invite.role, "active": True}
        if invite.name:
            fields["name"] = invite.name
        if staff is None:
            try:
                staff = await Staff.create(openid=openid, **fields)
            except IntegrityError:
                return None
        else:
            if (staff.role, staff.store_id) != (invite.role, invite.store_id):
                # A new role or store: the console sessions opened with the old one end.
                await ConsoleSession.end_all(staff.id, now, "role_changed")
            await Staff.filter(id=staff.id).update(**fields)
            await staff.refresh_from_db()
        await StaffInvite.filter(id=invite.id).update(staff_id=staff.id)
        await audit(Actor.of(staff, invite.store), "staff_bind",
                    after={"role": invite.role, "store": invite.store.code})
    return staff


async def active_staff(openid: str) -> tuple[Staff, Store] | None:
    staff = await Staff.get_or_none(openid=openid, active=True).select_related("store")
    return (staff, staff.store) if staff else None


async def staff_account(openid: str) -> tuple[Staff, Store] | None:
    """The account's staff row, active or revoked (a revoked one is told its access ended)."""
    staff = await Staff.get_or_none(openid=openid).select_related("store")
    return (staff, staff.store) if staff else None


async def revoke(staff_id: int, now: dt.datetime | None = None) -> bool:
    """The employee's access ends at once: in chat, and every console session they have."""
    async with in_transaction():
        staff = await Staff.get_or_none(id=staff_id).select_related("store")
        if staff is None or not staff.active:
            return False
        await Staff.filter(id=staff_id).update(active=False)
        await ConsoleSession.end_all(staff_id, now or utcnow(), "revoked")
        await audit(Actor.cli(staff.store), "staff_revoke", before={"role": staff.role},
                    after={"active": False}, detail=f"staff:{staff.id} {staff.name}")
    return True
