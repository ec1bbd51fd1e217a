"""One router per conversation area; the order below is the order a message tries them."""

from __future__ import annotations

from bot.chat.routing import Router


def build_router() -> Router:
    from bot.handlers import (
        booking,
        booking_desk,
        broadcast,
        card,
        card_transfer,
        coupons,
        engagement,
        follow,
        help,
        mass_events,
        privacy,
        registration,
        staff,
        tags,
    )

    root = Router("root")
    # Dialog steps first: inside a dialog, an answer to its question wins; the global commands
    # come next and the dialogs' "not understood" replies after them (bot/chat/routing.py).
    # Staff commands pass anything from non-staff on, so members' words reach the others.
    root.include(registration.router, staff.router, tags.router, broadcast.router,
                 card_transfer.router, booking_desk.router,
                 coupons.router, booking.router, privacy.router, mass_events.router, follow.router,
                 engagement.router, card.router, help.router)
    return root
