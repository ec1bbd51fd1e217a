"""One router per conversation area; the order below is the order a message tries them."""

from __future__ import annotations

from bot.routing import Router


def build_router() -> Router:
    from bot.handlers import card, follow, help, registration

    root = Router("root")
    # Dialog steps first: inside a dialog, what the member types answers its question.
    root.include(registration.router, follow.router, card.router, help.router)
    return root
