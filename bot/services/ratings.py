"""Members rate their visits: a purchase, or a booking marked arrived (到店), 1–5 stars and an
optional comment. One rating per visit whatever the retries or the concurrency: the visit
("purchase:<id>" / "booking:<id>") is unique in the rating table.

The question comes once after each visit (asked_after_visit, hooked into purchases.after_commit
and booking_desk.arrive); 评价 rates the member's last visit not yet rated. A rating of
[ratings] alert_at_most stars or fewer is sent, after its commit, to the store's managers and
the owners, and opens a support thread so that they can answer the member (回复 <n> <文字>)."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

from tortoise.transactions import in_transaction

from bot.infra.db import IntegrityError
from bot.infra.vault import mask_phone
from bot.models import Booking, BookingStatus, Member, Purchase, Rating
from bot.notifications import ratings as rating_notices
from bot.rules import ratings as rules
from bot.services import members, support

log = logging.getLogger("memberbot.ratings")

# How many recent purchases and arrivals 评价 looks through for one not rated yet.
RECENT = 20


@dataclass(frozen=True)
class Visit:
    key: str  # "purchase:<id>" | "booking:<id>"
    member_id: int
    store_id: int | None
    staff_id: int | None
    at: dt.datetime
    store_name: str
    amount: int | None = None  # fen: a purchase
    service: str | None = None  # a booking's service

    def summary(self, tz: dt.tzinfo) -> dict[str, Any]:
        """What the texts show of it (and the rating dialog keeps: plain JSON values)."""
        local = self.at.astimezone(tz)
        return {"month": local.month, "day": local.day, "store": self.store_name,
                "amount": self.amount, "service": self.service}


def _of_purchase(bot, purchase: Purchase) -> Visit:
    return Visit(rules.visit_key("purchase", purchase.id), purchase.member_id, purchase.store_id,
                 purchase.staff_id, purchase.created_at,
                 purchase.store.name if purchase.store else bot.config.shop.name,
                 amount=purchase.amount)


def _of_booking(booking: Booking) -> Visit:
    return Visit(rules.visit_key("booking", booking.id), booking.member_id, booking.store_id,
                 None, booking.starts_at, booking.store.name, service=booking.service.name)


async def find_visit(bot, key: str) -> Visit | None:
    """The visit a key names, while it is one: not a voided purchase, a booking marked arrived."""
    kind, _, number = key.partition(":")
    if not (number.isascii() and number.isdigit()):
        return None
    if kind == "purchase":
        purchase = await Purchase.get_or_none(id=int(number), voided_at=None) \
            .select_related("store")
        return _of_purchase(bot, purchase) if purchase else None
    if kind == "booking":
        booking = await Booking.get_or_none(id=int(number), status=BookingStatus.ARRIVED) \
            .select_related("store", "service")
        return _of_booking(booking) if booking else None
    return None


async def last_unrated_visit(bot, member: Member) -> Visit | None:
    """The member's most recent visit within [ratings] days that has no rating yet."""
    since = bot.now() - dt.timedelta(days=bot.config.ratings.days)
    bought = await Purchase.filter(member_id=member.id, voided_at=None, created_at__gte=since) \
        .order_by("-created_at").limit(RECENT).select_related("store")
    arrived = await Booking.filter(member_id=member.id, status=BookingStatus.ARRIVED,
                                   starts_at__gte=since) \
        .order_by("-starts_at").limit(RECENT).select_related("store", "service")
    visits = sorted([_of_purchase(bot, p) for p in bought] + [_of_booking(b) for b in arrived],
                    key=lambda v: v.at, reverse=True)
    if not visits:
        return None
    rated = set(await Rating.filter(visit__in=[v.key for v in visits])
                .values_list("visit", flat=True))
    return next((v for v in visits if v.key not in rated), None)


# --- the question after a visit ---

def asked_after_visit(bot, visit_key: str) -> None:
    """After a visit's commit: ask the member to rate it, in the background, once (the
    question's delivery is keyed by the visit), unless [ratings] ask is off."""
    if bot.config.ratings.ask:
        bot.spawn(_ask(bot, visit_key), rating_notices.ask_key(visit_key))


async def _ask(bot, visit_key: str) -> None:
    visit = await find_visit(bot, visit_key)
    if visit is None or await Rating.exists(visit=visit_key):
        return
    if await Member.exists(id=visit.member_id, erased_at__isnull=False):
        return
    await rating_notices.ask(bot, visit)


# --- rating ---

@dataclass(frozen=True)
class Rated:
    rating: Rating
    created: bool  # False: the visit was rated before
    repeat: bool = False  # the same request again (its key): the first answer stands


async def rate(bot, member: Member, visit: Visit, stars: int, comment: str, *,
               key: str) -> Rated:
    """Rate a visit of the member's, once: a retry (same key) or a second try finds the first
    rating. A low one is sent to the store's managers after the commit."""
    if stars not in rules.STARS:
        raise ValueError(f"stars must be 1–5, not {stars}")
    if visit.member_id != member.id:
        raise ValueError(f"visit {visit.key} is not member {member.id}'s")
    earlier = await _earlier(bot, visit.key, key)
    if earlier is not None:
        return earlier
    try:
        async with in_transaction():
            rating = await Rating.create(
                visit=visit.key, key=key, member_id=member.id, store_id=visit.store_id,
                staff_id=visit.staff_id, stars=stars, comment=rules.clean_comment(comment),
                created_at=bot.now())
    except IntegrityError:
        earlier = await _earlier(bot, visit.key, key)
        if earlier is None:
            raise
        return earlier
    if rules.alerts(stars, bot.config.ratings.alert_at_most):
        # Opened now, not with the alert: the member's next words go to it (the rating dialog
        # hands them to the thread), and may come before a background task would open it.
        rating.thread_id = (await _low_thread(bot, rating)).id
    _alert_if_low(bot, rating)
    return Rated(rating, created=True)


async def _earlier(bot, visit_key: str, key: str) -> Rated | None:
    rating = await Rating.get_or_none(visit=visit_key) or await Rating.get_or_none(key=key)
    if rating is None:
        return None
    # A low rating whose alert did not get through (the worker stopped): again, keyed, so the
    # managers are told once.
    _alert_if_low(bot, rating)
    return Rated(rating, created=False, repeat=rating.key == key)


def _alert_if_low(bot, rating: Rating) -> None:
    """The managers hear of a low rating once: the alert's sends are keyed by the rating, so a
    repeat (or a worker that died before telling them) asks again at no risk."""
    if rules.alerts(rating.stars, bot.config.ratings.alert_at_most):
        bot.spawn(alert_low_rating(bot, rating.id), f"rating-alert:{rating.id}")


async def _low_thread(bot, rating: Rating):
    """The support thread a low rating opens (linked on the rating), once."""
    thread, _ = await support.open_thread(bot, rating.member_id, store_id=rating.store_id,
                                          reason="low_rating", key=f"rating:{rating.id}")
    await Rating.filter(id=rating.id, thread_id=None).update(thread_id=thread.id)
    return thread


async def alert_low_rating(bot, rating_id: int) -> None:
    """Open the support thread a manager answers the member on (linked on the rating), and tell
    the managers and owners in chat: the member (phone masked), the visit and the comment."""
    rating = await Rating.get(id=rating_id).select_related("member", "store")
    member = rating.member
    thread = await _low_thread(bot, rating)
    visit = await find_visit(bot, rating.visit)
    if visit is not None:
        about = visit.summary(bot.config.shop.tz)
    else:  # voided since: what the rating itself knows
        local = rating.created_at.astimezone(bot.config.shop.tz)
        about = {"month": local.month, "day": local.day, "amount": None, "service": None,
                 "store": rating.store.name if rating.store else bot.config.shop.name}
    masked = "-" if member.erased_at or not member.phone_enc else \
        mask_phone(members.phone_of(bot, member))
    staff = await support.managers_of(rating.store_id)
    if not staff:
        log.warning("low rating %s: no manager or owner to tell", rating.id)
    await rating_notices.low_rating(bot, rating, about, masked, member.name, thread, staff)


# --- the owner's view ---

@dataclass(frozen=True)
class Feedback:
    ratings: list[Rating]  # newest first (at most `limit`), with member and store
    count: int  # all that match
    average: float | None


async def feedback(*, store_id: int | None = None, since: dt.datetime | None = None,
                   max_stars: int | None = None, limit: int = 200) -> Feedback:
    """Ratings, filtered: a store, since an instant, at most so many stars."""
    query = Rating.all()
    if store_id is not None:
        query = query.filter(store_id=store_id)
    if since is not None:
        query = query.filter(created_at__gte=since)
    if max_stars is not None:
        query = query.filter(stars__lte=max_stars)
    stars = await query.values_list("stars", flat=True)
    rows = await query.order_by("-created_at", "-id").limit(limit) \
        .select_related("member", "store")
    return Feedback(list(rows), len(stars), sum(stars) / len(stars) if stars else None)
