"""Followers and members: following, attribution, registration and linking a phone."""

from __future__ import annotations

import datetime as dt
import functools
import re
from dataclasses import dataclass
from typing import Literal, cast

from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from bot.infra import idempotent, sql
from bot.infra.db import IntegrityError
from bot.infra.vault import Vault
from bot.models import (
    CardSerial,
    CardTransfer,
    Conversation,
    Follower,
    Member,
    PointsKind,
    Store,
)
from bot.rules import earning
from bot.rules.cards import card_number, is_valid_card_number
from bot.rules.parsing import Birthday, normalize_phone, normalize_text
from bot.services import Refused, loyalty
from bot.services.staff import Actor, audit

_SCENE_RE = re.compile(r"(store|staff|ref):([A-Za-z0-9_\-]{1,56})")
SceneKind = Literal["store", "staff", "ref"]


@dataclass(frozen=True)
class Scene:
    """Who brought a member in, from a QR scene: store:S001, staff:7 or ref:<card_no>."""

    kind: SceneKind
    value: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.value}"


def parse_scene(text: str | None) -> Scene | None:
    match = _SCENE_RE.fullmatch(text or "")
    return Scene(cast(SceneKind, match[1]), match[2]) if match else None


async def follow(openid: str, scene: Scene | None, now: dt.datetime) -> tuple[Follower, bool]:
    """Record a subscribe. Returns the follower and whether they had followed before."""
    fields = {"following": True, "subscribed_at": now}
    if scene:
        fields["scene"] = str(scene)
    follower, created = await ensure_follower(openid)
    await Follower.filter(id=follower.id).update(**fields)
    await follower.refresh_from_db()
    return follower, not created and follower.unsubscribed_at is not None


async def note_scan(openid: str, scene: Scene | None) -> None:
    if scene:
        await Follower.filter(openid=openid).update(scene=str(scene))


async def unfollow(openid: str, now: dt.datetime) -> None:
    """The member's data is kept; they are only marked as unreachable through WeChat."""
    await Follower.filter(openid=openid).update(following=False, unsubscribed_at=now)


async def ensure_follower(openid: str) -> tuple[Follower, bool]:
    """The follower row of this account, and whether this call made it (the openid is the key:
    two first messages at once make one row)."""
    async def known() -> tuple[Follower, bool] | None:
        follower = await Follower.get_or_none(openid=openid)
        return (follower, False) if follower else None

    async def make() -> tuple[Follower, bool]:
        return await Follower.create(openid=openid), True

    return await idempotent.once(known, make)


async def member_of(openid: str) -> tuple[Follower, Member | None]:
    """The follower row for this account (made on first contact) and its member, if any."""
    # Every message starts here: one hand-written JOIN, a quarter of what the ORM takes for
    # the same two rows (its select_related costs more than two separate queries).
    rows = await sql.fetch(_member_of_sql(False), openid)
    if not rows:
        follower, _ = await ensure_follower(openid)
        return follower, None
    return sql.model_from(Follower, rows[0], "f"), sql.model_from(Member, rows[0], "m")


async def member_with_conversation(
    openid: str, user: str
) -> tuple[Follower, Member | None, Conversation | None]:
    """member_of, and the stored dialog of `user` in the same statement: what every message
    needs when the dialogs live in the database (one round trip instead of two)."""
    rows = await sql.fetch(_member_of_sql(True), user, openid)
    if not rows:  # first contact: no follower row to join the dialog to
        follower, _ = await ensure_follower(openid)
        return follower, None, await Conversation.get_or_none(user=user)
    row = rows[0]
    return (sql.model_from(Follower, row, "f"), sql.model_from(Member, row, "m"),
            sql.model_from(Conversation, row, "c"))


@functools.cache
def _member_of_sql(with_conversation: bool) -> str:
    # Built on first use: the models know their foreign-key columns only once tortoise is up.
    if not with_conversation:
        return (f"SELECT {sql.columns(Follower, 'f')}, {sql.columns(Member, 'm')} "
                "FROM follower f LEFT JOIN member m ON m.id = f.member_id WHERE f.openid = $1")
    # conversation."user" is unique, so the row stays one row.
    return (f"SELECT {sql.columns(Follower, 'f')}, {sql.columns(Member, 'm')}, "
            f"{sql.columns(Conversation, 'c')} FROM follower f "
            "LEFT JOIN member m ON m.id = f.member_id "
            'LEFT JOIN conversation c ON c."user" = $1 WHERE f.openid = $2')


async def find_by_phone(bot, phone: str) -> Member | None:
    # Every key the vault holds: during a key rotation some rows still carry the old hash.
    return await Member.filter(phone_hash__in=bot.vault.lookup_hashes(phone)).first()


class PhoneTaken(Exception):
    """The phone belongs to a member bound to another WeChat account. Only raised once this
    account has proved the phone's SMS code: before that, a member's number and anyone else's
    get the same answer, so nobody learns who is a member."""


@dataclass(frozen=True)
class Registration:
    member: Member
    created: bool  # False: an existing member was linked (or this account was already one)


async def link_existing(bot, openid: str, phone: str) -> Registration | None:
    """Bind this WeChat account to the member who already has this phone (imported, or added at
    the till). None if no such member."""
    member = await find_by_phone(bot, phone)
    if member is None:
        return None
    async with in_transaction():
        follower, _ = await ensure_follower(openid)
        owner = await Follower.get_or_none(member_id=member.id)
        if owner and owner.openid != openid:
            raise PhoneTaken(phone)
        await Follower.filter(id=follower.id).update(member_id=member.id)
    return Registration(member, created=False)


# --- 换绑: moving a card to another WeChat account ---

# How long a proved phone waits for a manager's 换绑 (the member has to reach the store).
TRANSFER_TTL = dt.timedelta(hours=24)


class TransferRefused(Refused):
    """Why a 换绑 cannot be carried out; `reason` names the template for the staff member."""


@dataclass(frozen=True)
class Transfer:
    member: Member
    request: CardTransfer
    old_openid: str | None  # the account unbound (None: the card had no WeChat bound)
    new_openid: str
    old_following: bool = False  # whether the old account can still be told
    repeated: bool = False  # this key had already done it: nothing changed now


async def request_transfer(bot, openid: str, phone: str) -> CardTransfer | None:
    """This account proved the SMS code of a phone whose card is bound to another account:
    keep that proof for TRANSFER_TTL, for a manager's 换绑. A newer request for the card (from
    any account) replaces the older ones. None if the phone has no member (any more)."""
    member = await find_by_phone(bot, phone)
    if member is None:
        return None
    now = bot.now()
    async with in_transaction():
        await CardTransfer.filter(member_id=member.id, status="pending").update(status="void")
        return await CardTransfer.create(member_id=member.id, openid=openid, requested_at=now,
                                         expires_at=now + TRANSFER_TTL)


async def transfer_card(bot, member: Member, actor: Actor, key: str) -> Transfer:
    """A manager's 换绑: bind the card to the account that proved its phone's code (the latest
    pending request), unbind the old one, in one transaction. Needs both: a request without a
    manager waits, a manager without a request is refused. Repeating `key` returns the first
    result."""
    now = bot.now()

    async def done_before() -> Transfer | None:
        request = await CardTransfer.get_or_none(key=key)
        if request is None:
            return None
        old = (await Follower.get_or_none(openid=request.from_openid)
               if request.from_openid else None)
        return Transfer(await Member.get(id=request.member_id), request, request.from_openid,
                        request.openid, old_following=bool(old and old.following),
                        repeated=True)

    async def act() -> Transfer:
        request = await CardTransfer.filter(member_id=member.id, status="pending",
                                            expires_at__gt=now).order_by("-id").first()
        if request is None:
            raise TransferRefused("transfer_no_request.j2", hours=_hours(TRANSFER_TTL))
        target = await Follower.get_or_none(openid=request.openid)
        if target is None or (target.member_id and target.member_id != member.id):
            # That account joined as a member of its own meanwhile: one account, one card.
            raise TransferRefused("transfer_target_is_member.j2")
        old = await Follower.get_or_none(member_id=member.id)
        old_openid = old.openid if old and old.openid != request.openid else None
        # Conditional: of two 换绑 at once, one carries the request out.
        if not await CardTransfer.filter(id=request.id, status="pending").update(
                status="done", key=key, done_at=now, from_openid=old_openid,
                staff_id=actor.staff.id if actor.staff else None):
            raise IntegrityError("transfer request taken by a concurrent 换绑")
        if old_openid:
            await Follower.filter(id=old.id, member_id=member.id).update(member_id=None)
            # A dialog the old account had open was that member's (an exchange, an erasure).
            await Conversation.filter(user=f"wechat:{old_openid}").delete()
        if not await Follower.filter(Q(member_id=None) | Q(member_id=member.id),
                                     id=target.id).update(member_id=member.id):
            raise IntegrityError("the new account was bound meanwhile")
        await audit(actor, "card_transfer", member=member,
                    before={"wechat": _tail(old_openid)}, after={"wechat": _tail(request.openid)},
                    detail=f"phone proved by SMS code at {request.requested_at.isoformat()}")
        await request.refresh_from_db()
        return Transfer(member, request, old_openid, request.openid,
                        old_following=bool(old_openid and old.following))

    try:
        return await idempotent.once(done_before, act)
    except IntegrityError:
        # Another 换绑 (another key) carried the request out first.
        raise TransferRefused("transfer_no_request.j2", hours=_hours(TRANSFER_TTL)) from None


def _tail(openid: str | None) -> str | None:
    """Enough of an openid to tell accounts apart in the audit log (the whole one is in
    card_transfer)."""
    return f"…{openid[-6:]}" if openid else None


def _hours(delta: dt.timedelta) -> int:
    return int(delta.total_seconds() // 3600)


async def register(bot, openid: str, phone: str, name: str, birthday: Birthday | None,
                   consent_at: dt.datetime) -> Registration:
    """Create the member with a new card number and welcome points, in one transaction. Running
    it again for the same account returns the member it created."""
    follower, _ = await ensure_follower(openid)
    if follower.member_id:
        return Registration(await Member.get(id=follower.member_id), created=False)
    linked = await link_existing(bot, openid, phone)
    if linked:
        return linked
    scene = parse_scene(follower.scene)
    store_id, staff_ref, referrer_id = await _attribution(scene)
    if store_id is None:
        store_id = await Store.all().order_by("id").first().values_list("id", flat=True)
    async def act() -> Registration:
        member = await create_member(
            bot.vault, bot.config.shop.card_prefix, phone, name=name, birthday=birthday,
            store_id=store_id, tier=bot.config.tiers[0].name, staff_ref=staff_ref,
            referrer_id=referrer_id, privacy_consent_at=consent_at)
        # Conditional: only an account not yet bound gets bound (a concurrent copy loses).
        if not await Follower.filter(id=follower.id, member_id=None).update(member_id=member.id):
            raise IntegrityError("follower already registered")
        if bot.config.shop.welcome_points:
            await loyalty.append_points(member.id, bot.config.shop.welcome_points,
                                        kind=PointsKind.EARN, reason="新会员欢迎积分",
                                        key=f"welcome:{member.id}",
                                        expires_on=earning.expiry_for(
                                            bot.today(), bot.config.points.expiry,
                                            bot.config.points.expiry_months))
        return Registration(member, created=True)

    async def registered() -> Registration | None:
        member_id = await Follower.get(id=follower.id).values_list("member_id", flat=True)
        return Registration(await Member.get(id=member_id), created=False) if member_id else None

    try:
        # The follower row is the key: whoever binds it first registered this account.
        registration = await idempotent.once(registered, act, look_first=False)
    except IntegrityError:
        # Not this account registered meanwhile: this phone was, by someone else.
        raise PhoneTaken(phone) from None
    if registration.created:
        await registration.member.refresh_from_db()
    return registration


async def create_member(vault: Vault, card_prefix: str, phone: str, *, card_no: str | None = None,
                        name: str = "", birthday: Birthday | None = None,
                        store_id: int | None = None, tier: str, tier_floor: str | None = None,
                        staff_ref: str | None = None, referrer_id: int | None = None,
                        privacy_consent_at: dt.datetime | None = None,
                        registered_at: dt.datetime | None = None) -> Member:
    """The member row: a new card number unless one is kept (an import), the phone encrypted
    and hashed for lookup. Registration, the CSV import and the sandbox all make members here;
    callers that do more (points, binding) hold the transaction."""
    if card_no is None:
        serial = await CardSerial.create()
        card_no = card_number(card_prefix, serial.id)
    # Left out when unknown: the column's auto_now_add then stamps the time of creation.
    when = {"registered_at": registered_at} if registered_at else {}
    return await Member.create(
        **when, card_no=card_no, phone_hash=vault.lookup_hash(phone),
        phone_enc=vault.encrypt(phone), name=name,
        birth_year=birthday.year if birthday else None,
        birth_month=birthday.month if birthday else None,
        birth_day=birthday.day if birthday else None,
        store_id=store_id, tier=tier, tier_floor=tier_floor, staff_ref=staff_ref,
        referrer_id=referrer_id, privacy_consent_at=privacy_consent_at)


async def _attribution(scene: Scene | None) -> tuple[int | None, str | None, int | None]:
    if scene is None:
        return None, None, None
    if scene.kind == "store":
        store = await Store.get_or_none(code=scene.value)
        return (store.id if store else None), None, None
    if scene.kind == "staff":
        return None, scene.value, None
    referrer = await Member.get_or_none(card_no=scene.value)
    return (referrer.store_id if referrer else None), None, (referrer.id if referrer else None)


async def send_welcome_sms(bot, member: Member, phone: str) -> None:
    """The welcome SMS; its delivery key makes a second call for the same member a no-op."""
    template = bot.config.sms.template_welcome
    if not template:
        return
    await bot.outbox.sms(phone, member.phone_hash, template,
                         {"name": member.name or "会员", "card_no": member.card_no},
                         key=f"welcome-sms:{member.id}", purpose="welcome")


class MemberNotFound(Refused):
    """Why a phone-or-card-number did not find a member; `reason` names a template."""


async def lookup(bot, text: str) -> Member:
    """The member a staff member means by a phone number or a card number."""
    text = normalize_text(text)
    phone = normalize_phone(text)
    if phone:
        member = await find_by_phone(bot, phone)
    elif text.isascii() and text.isdigit() and len(text) >= 6:
        # An exact match first: cards imported from an older system keep their numbers, which
        # need not carry our check digit.
        member = await Member.get_or_none(card_no=text)
        if member is None and not is_valid_card_number(text):
            raise MemberNotFound("lookup_bad_card.j2")
    else:
        raise MemberNotFound("lookup_bad_input.j2")
    if member is None:
        raise MemberNotFound("lookup_not_found.j2")
    if member.erased_at:
        raise MemberNotFound("lookup_erased.j2")
    return member


def phone_of(bot, member: Member) -> str:
    return bot.vault.decrypt(member.phone_enc)
