"""What members and staff hear about ratings: the question after a visit (a customer-service
message while the member's window is open, never a template message or an SMS: a rating is not
a notice the member is owed), and the alert a low rating sends the store's managers.

The question starts the rating dialog only for a member in no dialog (bot/chat/dialogs.py
begin_unless_busy), so that a bare "5" answers it; a member in the middle of another dialog is
asked to send 评价 instead, and their dialog is left alone."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from bot.models import Delivery, Follower, Rating, Staff, SupportThread
from bot.notifications import cs_quota
from bot.notifications.outbox import Outcome
from bot.notifications.replies import Text

# bot.chat.states.Rating.stars: the chat layer sits above this one, so its name is spelled here
# (tests/handlers/test_ratings.py holds the two equal).
STARS_STATE = "rate.stars"


def ask_key(visit_key: str) -> str:
    return f"rating-ask:{visit_key}"


async def ask(bot, visit) -> Outcome | None:
    """Ask the member to rate a visit (a services.ratings.Visit), once: the delivery's key is the
    visit's, so a repeat asks nothing. None when there was nobody to ask (never followed, or
    already asked)."""
    key = ask_key(visit.key)
    follower = await Follower.get_or_none(member_id=visit.member_id)
    if follower is None or await Delivery.exists(key=key):
        return None
    about = visit.summary(bot.config.shop.tz)
    started = None
    if follower.following and \
            cs_quota.pick_window(cs_quota.windows_of(follower), bot.now()) is not None:
        started = await bot.dialogs.begin_unless_busy(f"wechat:{follower.openid}", STARS_STATE,
                                                      visit=visit.key, about=about)
    text = bot.templates.render("rating_ask.j2", about=about, answer_here=started is not None)
    outcome = await bot.outbox.wechat(follower.openid, Text(text), key=key, purpose="rating_ask")
    if started is not None and not outcome.ok and not outcome.duplicate:
        await bot.dialogs.withdraw(started)  # the question never reached them: no dialog
    return outcome


def alert_key(rating: Rating, staff: Staff) -> str:
    return f"rating-alert:{rating.id}:{staff.id}"


async def low_rating(bot, rating: Rating, about: dict[str, Any], masked_phone: str,
                     member_name: str, thread: SupportThread,
                     staff: Iterable[Staff]) -> list[Outcome]:
    """A low rating, to each of the store's managers and owners in chat (customer-service
    messages: they reach staff who wrote to the bot within 48 h; the rows say who was not)."""
    text = bot.templates.render("rating_alert_staff.j2", rating=rating, about=about,
                                masked=masked_phone, name=member_name, thread=thread)
    return [await bot.outbox.wechat(person.openid, Text(text), key=alert_key(rating, person),
                                    purpose="rating_alert")
            for person in staff]
