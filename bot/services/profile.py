"""My details: a member's name, phone number and birthday, changed by the member (修改资料) or by
staff (改资料, 改生日), one transaction each, each change a ProfileChange row (the member's
history) and, when staff made it, an audit entry.

The rules:
* a new phone number stops finding the member at once (its lookup hash replaces the old one in
  the same statement); one that belongs to another member is refused, and the unique phone_hash
  makes a race with another member's registration of the same number fail cleanly;
* a birthday is added once by the member; after that only staff change it (改生日), so nobody
  collects birthday gifts twice a year by moving it.

Callers that talk to members decide when the phone may be tried: in chat only after its SMS
code was answered, so no answer tells whether a number is a member's (bot/handlers/profile.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.infra import idempotent
from bot.infra.db import IntegrityError
from bot.infra.vault import mask_phone
from bot.models import CardTransfer, Member, ProfileChange
from bot.rules.parsing import Birthday
from bot.services import Refused
from bot.services.members import find_by_phone
from bot.services.staff import Actor, audit

HISTORY_SHOWN = 10  # changes 我的数据 lists


class ProfileRefused(Refused):
    """Why a change was not made; `reason` names the template that says so."""


@dataclass(frozen=True)
class Change:
    member: Member  # as it is after the change
    change: ProfileChange
    repeated: bool = False  # this key had already made it: nothing changed now


def birthday_text(year: int | None, month: int | None, day: int | None) -> str | None:
    if not month:
        return None
    return str(Birthday(month, day, year))


def _birthday_of(member: Member) -> str | None:
    return birthday_text(member.birth_year, member.birth_month, member.birth_day)


async def _record(member: Member, field: str, before: str | None, after: str,
                  actor: Actor | None, key: str) -> ProfileChange:
    """The history row, and for staff the audit entry; inside the change's transaction. The
    audit entry names the field and the history row, not the values: those are personal data,
    which 注销 erases with the history, while the audit log is append-only."""
    by = actor.label[:64] if actor else f"member:{member.id}"
    row = await ProfileChange.create(member_id=member.id, field=field, before=before,
                                     after=after, by=by,
                                     staff=actor.staff if actor else None, key=key)
    if actor is not None:
        await audit(actor, f"profile_{field}", member=member.id,
                    detail=f"profile_change:{row.id}")
    return row


async def made_by(key: str) -> Change | None:
    """The change a message with this idempotency key made, if any (a retried message)."""
    row = await ProfileChange.get_or_none(key=key)
    if row is None:
        return None
    return Change(await Member.get(id=row.member_id), row, repeated=True)


async def _once(key: str, act) -> Change:
    return await idempotent.once(lambda: made_by(key), act)


async def _current(member: Member) -> Member:
    found = await Member.get_or_none(id=member.id, erased_at=None)
    if found is None:
        raise ProfileRefused("profile_member_gone.j2")
    return found


async def change_name(member: Member, name: str, *, key: str,
                      actor: Actor | None = None) -> Change:
    """A new 称呼 (already checked by rules.parsing.name_problem)."""
    async def act() -> Change:
        current = await _current(member)
        if current.name == name:
            raise ProfileRefused("profile_same.j2", field="name")
        await Member.filter(id=member.id).update(name=name)
        row = await _record(current, "name", current.name or None, name, actor, key)
        return Change(await Member.get(id=member.id), row)

    return await _once(key, act)


async def add_birthday(member: Member, birthday: Birthday, *, key: str) -> Change:
    """The member's own birthday, once: a birthday that is set changes only through staff."""
    async def act() -> Change:
        # Conditional: of two answers at once (or a birthday staff set meanwhile) one wins.
        if not await Member.filter(id=member.id, erased_at=None, birth_month=None).update(
                birth_year=birthday.year, birth_month=birthday.month, birth_day=birthday.day):
            raise ProfileRefused("profile_birthday_set.j2")
        current = await Member.get(id=member.id)
        row = await _record(current, "birthday", None, str(birthday), None, key)
        return Change(current, row)

    return await _once(key, act)


async def set_birthday(member: Member, birthday: Birthday, *, key: str, actor: Actor) -> Change:
    """改生日: staff set or correct a birthday (audited). The birthday gift stays once a year
    whatever the date (BirthdayGift is unique per member and year)."""
    async def act() -> Change:
        current = await _current(member)
        before = _birthday_of(current)
        if before == str(birthday):
            raise ProfileRefused("profile_same.j2", field="birthday")
        await Member.filter(id=member.id).update(
            birth_year=birthday.year, birth_month=birthday.month, birth_day=birthday.day)
        row = await _record(current, "birthday", before, str(birthday), actor, key)
        return Change(await Member.get(id=member.id), row)

    return await _once(key, act)


async def change_phone(bot, member: Member, phone: str, *, key: str,
                       actor: Actor | None = None) -> Change:
    """The member's phone becomes `phone` (already proved by its SMS code, or seen by staff).
    The old number stops finding the member in the same statement. Refused: the same number as
    now, or one that belongs to another member (also when that member registers it meanwhile:
    the unique phone_hash fails this transaction)."""
    async def act() -> Change:
        current = await _current(member)
        old = bot.vault.decrypt(current.phone_enc)
        if old == phone:
            raise ProfileRefused("profile_same.j2", field="phone")
        owner = await find_by_phone(bot, phone)
        if owner is not None and owner.id != member.id:
            raise ProfileRefused("profile_phone_taken.j2", masked=mask_phone(phone))
        # Conditional on the number read: of two changes at once, one moves it.
        if not await Member.filter(id=member.id, phone_hash=current.phone_hash).update(
                phone_hash=bot.vault.lookup_hash(phone), phone_enc=bot.vault.encrypt(phone)):
            raise ProfileRefused("profile_retry.j2")
        # A pending 换绑 proved the old number, which is no longer this card's.
        await CardTransfer.filter(member_id=member.id, status="pending").update(status="void")
        row = await _record(current, "phone", mask_phone(old), mask_phone(phone), actor, key)
        return Change(await Member.get(id=member.id), row)

    try:
        return await _once(key, act)
    except IntegrityError:
        # Another member took the number between the check and the update.
        raise ProfileRefused("profile_phone_taken.j2", masked=mask_phone(phone)) from None


async def history(member: Member, limit: int = HISTORY_SHOWN) -> list[ProfileChange]:
    """The member's latest changes, newest first."""
    return await ProfileChange.filter(member_id=member.id).order_by("-id").limit(limit)
