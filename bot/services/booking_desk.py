"""At the shop's desk: arrivals (a punch card that covers the service pays one visit), no-shows
(counted against the member's right to book themselves), and whose bookings a staff member may
handle. Staff chat (bot/handlers/booking_desk.py) calls these; booking, moving and cancelling for
a member are bookings.book / reschedule / cancel with an actor."""

from __future__ import annotations

from dataclasses import dataclass

from bot.config import Config, PunchProductConfig
from bot.models import Booking, BookingStatus, Member, PunchUse, Service
from bot.models.staff import Role
from bot.notifications import notices
from bot.rules.ratings import visit_key
from bot.services import bookings, ratings, wallet
from bot.services.staff import Actor


def everywhere(actor: Actor) -> bool:
    """Owners handle every store's bookings (and the owner's shell, which has no staff row)."""
    return actor.staff is None or actor.staff.role == Role.OWNER


def may_handle(actor: Actor, store_id: int) -> bool:
    """Clerks and managers handle their own store's bookings."""
    return everywhere(actor) or (actor.store is not None and actor.store.id == store_id)


def covering_card(config: Config, service: Service) -> PunchProductConfig | None:
    """The [[punch_cards]] product whose visits pay for the service, if it has one."""
    if not service.punch_card:
        return None
    return next((p for p in config.punch_cards if p.code == service.punch_card), None)


def _visit_key(booking: Booking) -> str:
    # The booking's, not the message's: neither a WeChat retry nor a second 到店 by another
    # clerk for the same booking takes a second visit.
    return f"booking:{booking.id}:arrived"


async def _visit_taken(booking: Booking) -> wallet.PunchResult | None:
    use = await PunchUse.get_or_none(idempotency_key=_visit_key(booking)).select_related("card")
    return wallet.PunchResult(use.card, use.remaining_after, duplicate=True) if use else None


@dataclass(frozen=True)
class Arrival:
    booking: Booking  # its status as it is now
    marked: bool  # False: not marked now (arrived already, or no longer active)
    product: PunchProductConfig | None  # the card that covers the service
    visit: wallet.PunchResult | None  # the visit that paid (duplicate: an earlier 到店 took it)


async def arrive(bot, booking: Booking, *, actor: Actor) -> Arrival:
    """到店: the visit first, then the mark. A copy that stopped between the two (a worker
    killed mid-way) leaves the visit taken under the booking's key, and the next 到店 finds it
    and marks; the mark is what tells a later 到店 that the arrival was recorded."""
    service = booking.service if isinstance(booking.service, Service) else \
        await Service.get(id=booking.service_id)
    product = covering_card(bot.config, service)
    visit = None
    if product and booking.status == BookingStatus.ACTIVE:
        member = await Member.get(id=booking.member_id)
        if any(c.product == product.code
               for c in await wallet.active_punch_cards(member.id, bot.today())):
            try:
                visit = await wallet.use_punch_card(bot, member, product, actor=actor,
                                                    key=_visit_key(booking))
            except wallet.WalletRefused:
                visit = None  # its last visit went to another purchase meanwhile: the till
    marked = await bookings.mark(bot, booking, BookingStatus.ARRIVED, actor=actor)
    if marked:
        ratings.asked_after_visit(bot, visit_key("booking", booking.id))
    if not marked:
        await booking.refresh_from_db(fields=["status"])
        if visit is None and product and booking.status == BookingStatus.ARRIVED:
            visit = await _visit_taken(booking)
    return Arrival(booking, marked, product, visit)


def visit_told(bot, arrival: Arrival) -> None:
    """The member hears of the visit their card paid, in the background; a repeat (a second
    到店, in chat or the console) is the same notice under the same key."""
    key = f"notice:punch:booking:{arrival.booking.id}:arrived"
    bot.spawn(notices.booking_visit_paid(bot, arrival.booking, arrival.visit), key)


@dataclass(frozen=True)
class NoShow:
    booking: Booking
    marked: bool  # False: not marked now (marked already, or no longer active)
    count: int  # the member's no-shows within no_show_days
    limit: int
    days: int

    @property
    def via_staff(self) -> bool:
        """At the limit: the member now books only through staff."""
        return self.count >= self.limit


async def no_show(bot, booking: Booking, *, actor: Actor) -> NoShow:
    marked = await bookings.mark(bot, booking, BookingStatus.NO_SHOW, actor=actor)
    if not marked:
        await booking.refresh_from_db(fields=["status"])
    b = bot.config.booking
    count = await bookings.no_shows(booking.member_id, bookings.no_show_window(bot))
    return NoShow(booking, marked, count, b.no_show_limit, b.no_show_days)
