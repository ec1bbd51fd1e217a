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
        console,
        coupons,
        engagement,
        faq,
        follow,
        help,
        mass_events,
        privacy,
        profile,
        ratings,
        registration,
        staff,
        support,
        tags,
    )

    root = Router("root")
    # Dialog steps first: inside a dialog, an answer to its question wins; the global commands
    # come next and the dialogs' "not understood" replies after them (bot/chat/routing.py).
    # Staff commands pass anything from non-staff on, so members' words reach the others.
    # The shop's questions ([[faq]]) come last but for help: after every command, before the
    # "not understood" answer.
    # Support first: while a member talks with a person (a relay dialog) its catch-all takes
    # every message before any other area's words could.
    # The console's login scene is matched before follow's scan and subscribe see it.
    root.include(support.router, console.router,
                 registration.router, staff.router, tags.router, broadcast.router,
                 card_transfer.router, booking_desk.router, support.staff_router,
                 coupons.router, booking.router, privacy.router, profile.router, ratings.router,
                 mass_events.router, follow.router,
                 engagement.router, card.router, faq.router, help.router)
    return root
