"""Routers in WeChat's vocabulary, after aiogram's: each conversation area is a module with its own
Router; handlers register with filters (keyword, menu key, event, dialog state); the root router
includes the others, and a message goes to the first handler whose filters all pass.

    router = Router("card")

    @router.text("积分", "余额")
    @router.click("MY_CARD")
    async def show_card(ctx: Context) -> Reply: ...
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot.notifications.replies import Reply
from bot.rules.parsing import normalize_text

if TYPE_CHECKING:
    from bot.chat.context import Context

Handler = Callable[["Context"], Awaitable[Reply | None]]
Predicate = Callable[["Context"], bool]

# State filters: NO_DIALOG matches only outside any dialog, ANY_STATE matches always.
ANY_STATE = "*"
NO_DIALOG = None


class SkipHandler(Exception):
    """Raised by a handler that looked and declined; routing continues with the next one."""


@dataclass(frozen=True)
class Route:
    handler: Handler
    predicate: Predicate
    states: tuple[str | None, ...]

    def matches(self, ctx: Context) -> bool:
        return _state_matches(self.states, ctx.dialog.state) and self.predicate(ctx)


def _state_matches(states: tuple[str | None, ...], current: str | None) -> bool:
    for wanted in states:
        if wanted in (ANY_STATE, current):
            return True
        if wanted and wanted.endswith(".*") and current and current.startswith(wanted[:-1]):
            return True
    return False


def command_word(text: str) -> str:
    """The first word of a message, the way commands like `消费 138… 12` are matched."""
    return normalize_text(text).split(maxsplit=1)[0] if text.strip() else ""


class Router:
    def __init__(self, name: str):
        self.name = name
        self._routes: list[Route] = []
        self._children: list[Router] = []

    def include(self, *routers: Router) -> None:
        self._children.extend(routers)

    def routes(self) -> Iterator[Route]:
        yield from self._routes
        for child in self._children:
            yield from child.routes()

    async def dispatch(self, ctx: Context) -> Reply | None:
        for route in self.routes():
            if not route.matches(ctx):
                continue
            try:
                return await route.handler(ctx)
            except SkipHandler:
                continue
        return None

    # --- registration decorators ---

    def _register(
        self, predicate: Predicate, state: str | tuple[str | None, ...] | None
    ) -> Callable[[Handler], Handler]:
        states = state if isinstance(state, tuple) else (state,)

        def decorator(handler: Handler) -> Handler:
            self._routes.append(Route(handler, predicate, states))
            return handler

        return decorator

    def text(self, *words: str, state: str | tuple | None = ANY_STATE):
        """Text (typed, or recognised from voice) that is exactly one of `words`."""
        wanted = frozenset(words)
        return self._register(
            lambda ctx: ctx.inbound.kind == "text" and ctx.text in wanted, state
        )

    def command(self, *words: str, state: str | tuple | None = ANY_STATE):
        """Text whose first word is one of `words`; the handler parses the rest."""
        wanted = frozenset(words)
        return self._register(
            lambda ctx: ctx.inbound.kind == "text" and command_word(ctx.text) in wanted, state
        )

    def message(self, *, state: str | tuple | None, kinds: tuple[str, ...] = ("text",)):
        """Any message of these kinds in the given dialog state: one step of a dialog."""
        return self._register(lambda ctx: ctx.inbound.kind in kinds, state)

    def click(self, *keys: str, state: str | tuple | None = ANY_STATE):
        """A custom-menu button of type click."""
        wanted = frozenset(keys)
        return self._register(
            lambda ctx: ctx.inbound.kind == "click" and ctx.inbound.text in wanted, state
        )

    def event(self, *kinds: str, state: str | tuple | None = ANY_STATE):
        """subscribe, unsubscribe, scan, view, scancode, location_report, template_finish, ..."""
        wanted = frozenset(kinds)
        return self._register(lambda ctx: ctx.inbound.kind in wanted, state)

    def when(self, predicate: Predicate, state: str | tuple | None = ANY_STATE):
        return self._register(predicate, state)

    def fallback(self):
        """Whatever nothing else took."""
        return self._register(lambda ctx: True, ANY_STATE)
