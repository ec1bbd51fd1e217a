"""One router per conversation area; the order below is the order a message tries them."""

from __future__ import annotations

from bot.chat.routing import Router


def build_router() -> Router:
    from bot.handlers import (
        card,
        coupons,
        engagement,
        follow,
        help,
        privacy,
        registration,
        staff,
    )

    root = Router("root")
    # Dialog steps first: inside a dialog, what the member types answers its question. Staff
    # commands pass anything from non-staff on, so members' words reach the others.
    root.include(registration.router, staff.router, coupons.router, privacy.router,
                 follow.router, engagement.router, card.router, help.router)
    return root
