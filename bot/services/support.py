"""Member service threads: a member talking with a person (人工), and the threads a low rating
opens so a manager can answer. One open thread per member (the model's unique `open_member`).

- A member's message is relayed, as a customer-service message, to the staff member who
  answered the thread (until they go off duty), else to everyone on duty for the thread's store
  (owners act in every store). When it reaches nobody (nobody on duty, or WeChat refused every
  send) it waits with delivered_at NULL and is handed to the next staff member who says 上班
  or 会话. Messages are claimed (delivered_at set) before they are sent, so two staff coming on
  duty at once never both get them; a send that fails everywhere gives the claim back.
- `key` is the inbound message's key: a WeChat retry relays, answers or closes once.
- A staff member answers any waiting or open thread of their store (回复 <n>); the first answer
  opens the thread and makes it theirs. What WeChat said about the send comes back to them.
- A thread with no activity for [service] idle_minutes closes itself (close_idle, a tick),
  except while it still holds messages nobody received, or a low rating nobody answered yet.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from bot.infra.db import IntegrityError
from bot.models import Follower, Member, Staff, SupportMessage, SupportThread, ThreadStatus
from bot.models.staff import Role
from bot.notifications import support as notes
from bot.notifications.outbox import Outcome
from bot.services import Refused
from bot.services import staff as staff_service
from bot.services.staff import Actor

ASKED = "asked"
LOW_RATING = "low_rating"
LIVE = (ThreadStatus.WAITING, ThreadStatus.OPEN)
PENDING_BATCH = 10  # kept messages handed over per 上班 / 会话


async def open_thread(bot, member_id: int, *, store_id: int | None, reason: str,
                      key: str) -> tuple[SupportThread, bool]:
    """The member's open thread, or a new one (True) keyed on what opened it: a retry of the
    same message finds the thread it opened, and two at once open one."""
    earlier = await SupportThread.get_or_none(key=key)
    if earlier is not None:
        return earlier, False
    current = await SupportThread.get_or_none(open_member=member_id)
    if current is not None:
        return current, False
    now = bot.now()
    try:
        async with in_transaction():
            thread = await SupportThread.create(
                key=key, member_id=member_id, store_id=store_id, reason=reason,
                status=ThreadStatus.WAITING, open_member=member_id, opened_at=now,
                last_activity_at=now)
        return thread, True
    except IntegrityError:
        thread = await SupportThread.get_or_none(key=key) or \
            await SupportThread.get(open_member=member_id)
        return thread, False


# --- who sees a thread ---

def _store_filter(staff: Staff) -> Q:
    """The threads a staff member may answer: their store's (and those of no store); an owner's,
    every store's."""
    if staff.role == Role.OWNER:
        return Q()
    return Q(store_id=staff.store_id) | Q(store_id=None)


def serves(staff: Staff, thread: SupportThread) -> bool:
    return (staff.role == Role.OWNER or thread.store_id is None
            or thread.store_id == staff.store_id)


async def managers_of(store_id: int | None) -> list[Staff]:
    """Who hears of a low rating: the store's active managers, and every active owner."""
    who = Q(role=Role.OWNER)
    if store_id is not None:
        who |= Q(role=Role.MANAGER, store_id=store_id)
    return await Staff.filter(who, active=True).order_by("id")


async def recipients(thread: SupportThread) -> list[Staff]:
    """Who a member's message goes to: the staff member who answered (on duty or not: a manager
    answering a low rating is in the conversation) until they go off duty; before anyone
    answered a low rating, the managers its alert reached; else everyone on duty who serves the
    thread's store."""
    if thread.staff_id is not None:
        taken = await Staff.get_or_none(id=thread.staff_id, active=True)
        if taken is not None:
            return [taken]
    if thread.reason == LOW_RATING:
        return await managers_of(thread.store_id)
    return [s for s in await Staff.filter(active=True, on_duty_since__not_isnull=True)
            .order_by("id") if serves(s, thread)]


async def thread_of(member_id: int) -> SupportThread | None:
    """The member's open (waiting or open) thread."""
    return await SupportThread.get_or_none(open_member=member_id)


async def _visible(actor: Actor, number: int) -> SupportThread:
    thread = await SupportThread.get_or_none(id=number)
    if thread is None or thread.status not in LIVE or not serves(actor.staff, thread):
        raise Refused("support_no_thread.j2", number=number)
    return thread


async def live_threads(actor: Actor) -> list[SupportThread]:
    """会话: the waiting and open threads a staff member may answer, oldest activity first,
    with their member."""
    return await SupportThread.filter(_store_filter(actor.staff), status__in=LIVE) \
        .order_by("last_activity_at").select_related("member")


# --- the member's side ---

@dataclass(frozen=True)
class Asked:
    thread: SupportThread
    created: bool
    reached: int  # staff on duty told of it; 0: nobody is on duty


async def ask(bot, member: Member, *, key: str) -> Asked:
    """人工: the member's open thread, or a new one; the staff on duty hear of a new one."""
    thread, created = await open_thread(bot, member.id, store_id=member.store_id,
                                        reason=ASKED, key=key)
    await SupportThread.filter(id=thread.id).update(last_activity_at=bot.now())
    staff = await recipients(thread)
    if created:
        for person in staff:
            await notes.asked(bot, person, thread, member, key=f"support:asked:{thread.id}")
    return Asked(thread, created, len(staff))


@dataclass(frozen=True)
class Relayed:
    thread: SupportThread
    delivered: bool  # False: kept for the next staff member on duty
    first_kept: bool = False  # the first message of the thread that waits: tell the member
    duplicate: bool = False


async def relay_from_member(bot, member: Member, thread: SupportThread, text: str, *,
                            key: str) -> Relayed:
    """One message of the member's, relayed once whatever the retries (its key is unique)."""
    now = bot.now()
    waiting_before = await SupportMessage.filter(thread_id=thread.id, from_member=True,
                                                 delivered_at=None).exists()
    try:
        message = await SupportMessage.create(thread_id=thread.id, key=key, from_member=True,
                                              text=text, created_at=now)
    except IntegrityError:
        earlier = await SupportMessage.get(key=key)
        return Relayed(thread, earlier.delivered_at is not None, duplicate=True)
    await SupportThread.filter(id=thread.id).update(last_activity_at=now)
    delivered = await _hand_over(bot, thread, member, [message], await recipients(thread),
                                 key=f"support:relay:{key}")
    return Relayed(thread, delivered, first_kept=not delivered and not waiting_before)


async def _hand_over(bot, thread: SupportThread, member: Member,
                     messages: list[SupportMessage], staff: list[Staff], *, key: str) -> bool:
    """Claim the messages, send them to each staff member; if nobody got them, give the claim
    back so they wait for the next one on duty."""
    if not staff or not messages:
        return False
    ids = [m.id for m in messages]
    now = bot.now()
    if not await SupportMessage.filter(id__in=ids, delivered_at=None).update(delivered_at=now):
        return False  # someone else has just handed them over
    outcomes = [await notes.relay(bot, person, thread, member, messages, key=key)
                for person in staff]
    if any(outcome.ok for outcome in outcomes):
        return True
    await SupportMessage.filter(id__in=ids, delivered_at=now).update(delivered_at=None)
    return False


async def end_by_member(bot, member: Member, *, key: str) -> bool:
    """取消 / 结束 from the member: the thread closes and whoever had it is told."""
    thread = await thread_of(member.id)
    if thread is None:
        return False
    return await _close(bot, thread, "member", key=key)


# --- the staff side ---

@dataclass(frozen=True)
class Replied:
    thread: SupportThread
    outcome: Outcome
    openid: str | None  # the member's, for their dialog


async def reply_from_staff(bot, actor: Actor, number: int, text: str, *, key: str) -> Replied:
    """回复 <n> <文字>: the words go to the member as a customer-service message, if WeChat
    allows one (the member's 48 h window and its 5 sends); the outcome says why not."""
    thread = await _visible(actor, number)
    follower = await Follower.get_or_none(member_id=thread.member_id)
    openid = follower.openid if follower and follower.following else None
    now = bot.now()
    try:
        message = await SupportMessage.create(thread_id=thread.id, key=key, from_member=False,
                                              staff=actor.staff, text=text, created_at=now)
    except IntegrityError:
        earlier = await SupportMessage.get(key=key)
        sent = earlier.delivered_at is not None
        return Replied(thread, Outcome(sent, "" if sent else "duplicate", duplicate=True), openid)
    if openid is None:
        outcome = Outcome(False, "not_following")
    else:
        outcome = await notes.answer(bot, openid, actor.staff, text, key=f"support:reply:{key}")
    if not outcome.ok:
        return Replied(thread, outcome, openid)
    async with in_transaction():
        await SupportMessage.filter(id=message.id).update(delivered_at=now)
        await SupportThread.filter(id=thread.id, status__in=LIVE).update(
            status=ThreadStatus.OPEN, staff_id=actor.staff.id, last_activity_at=now)
        await staff_service.audit(actor, "support_reply", member=thread.member_id,
                                  detail=f"thread={thread.id}")
    return Replied(thread, outcome, openid)


async def close_by_staff(bot, actor: Actor, number: int, *, key: str) -> SupportThread:
    """结束 <n>: the thread closes and the member is told."""
    thread = await _visible(actor, number)
    if await _close(bot, thread, "staff", key=key):
        await staff_service.audit(actor, "support_close", member=thread.member_id,
                                  detail=f"thread={thread.id}")
    return thread


async def _close(bot, thread: SupportThread, by: str, *, key: str) -> bool:
    """Close a live thread (once, whoever else tries at the same moment) and tell the other
    side: the member when staff or the clock closed it, the staff member who had it (or those
    on duty) when the member did."""
    now = bot.now()
    closed = await SupportThread.filter(id=thread.id, status__in=LIVE).update(
        status=ThreadStatus.CLOSED, open_member=None, closed_at=now, closed_by=by)
    if not closed:
        return False
    member = await Member.get(id=thread.member_id)
    if by != "member":
        follower = await Follower.get_or_none(member_id=member.id)
        if follower is not None and follower.following:
            await notes.closed_to_member(bot, follower.openid, by,
                                         key=f"support:closed:{thread.id}")
    if by != "staff":
        for person in await recipients(thread):
            await notes.closed_to_staff(bot, person, thread, member, by,
                                        key=f"support:closed:{thread.id}")
    return True


async def close_idle(bot) -> int:
    """The tick: threads idle for [service] idle_minutes close, except a thread still holding
    messages nobody received (they wait for the next one on duty) and a low rating nobody has
    answered (a manager answers it when they can)."""
    cutoff = bot.now() - dt.timedelta(minutes=bot.config.service.idle_minutes)
    closed = 0
    for thread in await SupportThread.filter(status__in=LIVE, last_activity_at__lt=cutoff):
        if thread.status == ThreadStatus.WAITING and thread.reason != ASKED:
            continue
        if await SupportMessage.filter(thread_id=thread.id, from_member=True,
                                       delivered_at=None).exists():
            continue
        closed += await _close(bot, thread, "idle", key=f"support:idle:{thread.id}")
    return closed


# --- on duty ---

@dataclass(frozen=True)
class Handed:
    """Messages that waited, handed to a staff member in the answer to 上班 or 会话."""

    thread: SupportThread
    member: Member
    messages: list[SupportMessage]


async def go_on_duty(bot, actor: Actor) -> bool:
    """上班; False when they already were."""
    changed = await Staff.filter(id=actor.staff.id, on_duty_since=None).update(
        on_duty_since=bot.now())
    if changed:
        await staff_service.audit(actor, "duty_on")
    return bool(changed)


async def go_off_duty(bot, actor: Actor) -> bool:
    """下班: members' messages stop reaching them; the threads they had go back to whoever is
    on duty."""
    changed = await Staff.filter(id=actor.staff.id, on_duty_since__not_isnull=True).update(
        on_duty_since=None)
    await SupportThread.filter(staff_id=actor.staff.id, status__in=LIVE).update(staff_id=None)
    if changed:
        await staff_service.audit(actor, "duty_off")
    return bool(changed)


async def take_pending(bot, actor: Actor) -> tuple[list[Handed], int]:
    """The oldest messages that reached nobody, of the threads this staff member serves, claimed
    for them (at most PENDING_BATCH); and how many more still wait."""
    waiting = await SupportMessage.filter(
        from_member=True, delivered_at=None, thread__status__in=LIVE,
    ).order_by("id").select_related("thread", "thread__member")
    mine = [m for m in waiting if serves(actor.staff, m.thread)]
    batch = mine[:PENDING_BATCH]
    if not batch:
        return [], 0
    now = bot.now()
    ids = [m.id for m in batch]
    await SupportMessage.filter(id__in=ids, delivered_at=None).update(delivered_at=now)
    claimed = set(await SupportMessage.filter(id__in=ids, delivered_at=now)
                  .values_list("id", flat=True))
    handed: dict[int, Handed] = {}
    for message in batch:
        if message.id not in claimed:
            continue
        thread = message.thread
        entry = handed.setdefault(thread.id, Handed(thread, thread.member, []))
        entry.messages.append(message)
    return list(handed.values()), len(mine) - len(batch)
