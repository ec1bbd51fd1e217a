"""Staff: invites, binding a WeChat account, roles, and the audit log every staff action writes."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from tortoise.transactions import in_transaction

from bot.clock import utcnow
from bot.infra.db import IntegrityError
from bot.infra.ratelimit import Limit
from bot.models import AuditEntry, ConsoleSession, Member, Staff, StaffInvite, Store
from bot.models.staff import ROLES, Role

INVITE_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"  # no 0/O, 1/I
INVITE_LENGTH = 8
INVITE_TTL = dt.timedelta(hours=24)
INVITE_PREFIX = "invite:"  # the scene of the QR code the console shows with an invite
# Guessing invite codes must not pay: a few tries an hour per WeChat account, by 绑定 <code>
# or by scanning an invite's QR code alike.
BIND_LIMIT = [Limit(5, 3600)]

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


def invite_code_for(secret: str, nonce: str) -> str:
    """A code derived from a secret and a request's nonce: the same request (a double submit,
    a retry) names the same code, which create_invite then makes once."""
    digest = hmac.new(secret.encode(), f"invite:{nonce}".encode(), hashlib.sha256).digest()
    return "".join(INVITE_ALPHABET[b % len(INVITE_ALPHABET)] for b in digest[:INVITE_LENGTH])


def invite_scene(code: str) -> str:
    """The QR scene that binds whoever scans it with the invite (bot/handlers/console.py)."""
    return INVITE_PREFIX + code


def invite_code(scene: str | None) -> str | None:
    """The invite code of a scene invite:<code>, or None for any other scene."""
    if not scene or not scene.startswith(INVITE_PREFIX):
        return None
    return scene[len(INVITE_PREFIX):][:INVITE_LENGTH * 2]


async def create_invite(store_code: str, role: str, name: str, now: dt.datetime, *,
                        actor: Actor | None = None, code: str | None = None) -> str:
    """A one-time code, valid 24 h; only its hash is stored. With `code` (invite_code_for) a
    repeat of the same request returns the code without making a second invite."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    store = await Store.get_or_none(code=store_code)
    if store is None:
        raise LookupError(f"no store {store_code!r}")
    if code is not None and await StaffInvite.exists(code_hash=_hash(code)):
        return code
    code = code or "".join(secrets.choice(INVITE_ALPHABET) for _ in range(INVITE_LENGTH))
    try:
        async with in_transaction():
            await StaffInvite.create(code_hash=_hash(code), store=store, role=role, name=name,
                                     expires_at=now + INVITE_TTL)
            await audit(actor or Actor.cli(store), "staff_invite",
                        after={"role": role, "store": store.code},
                        detail=f"role={role} name={name}")
    except IntegrityError:  # the same code at once: the other request made it
        if not await StaffInvite.exists(code_hash=_hash(code)):
            raise
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


async def revoke(staff_id: int, now: dt.datetime | None = None, *,
                 actor: Actor | None = None) -> bool:
    """The employee's access ends at once: in chat, and every console session they have.
    False when there was nobody active to revoke (a repeat changes nothing)."""
    async with in_transaction():
        staff = await Staff.get_or_none(id=staff_id).select_related("store")
        if staff is None or not staff.active:
            return False
        if not await Staff.filter(id=staff_id, active=True).update(active=False):
            return False
        await ConsoleSession.end_all(staff_id, now or utcnow(), "revoked")
        await audit(actor or Actor.cli(staff.store), "staff_revoke",
                    before={"role": staff.role}, after={"active": False},
                    detail=f"staff:{staff.id} {staff.name}")
    return True


async def set_role(staff_id: int, role: str, now: dt.datetime, *, actor: Actor) -> bool:
    """Give an active employee another role; their console sessions (opened with the old one)
    end at once. False when nothing changed (already that role, revoked, or a repeat)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    async with in_transaction():
        staff = await Staff.get_or_none(id=staff_id, active=True)
        if staff is None or staff.role == role:
            return False
        if not await Staff.filter(id=staff_id, active=True, role=staff.role).update(role=role):
            return False
        await ConsoleSession.end_all(staff_id, now, "role_changed")
        await audit(actor, "staff_role", before={"role": staff.role}, after={"role": role},
                    detail=f"staff:{staff.id} {staff.name}")
    return True
