"""Routers in WeChat's vocabulary, after aiogram's: each conversation area is a module with its own
Router; handlers register with filters (keyword, menu key, event, dialog state); the root router
includes the others, and a message goes to the first handler whose filters all pass.

    router = Router("card")

    @router.global_command(commands.CARD, help="card")
    async def show_card(ctx: Context) -> Reply: ...

Routes are indexed by inbound kind, exact keyword, command word and menu key (and sorted out by
dialog state), so a message only tries the routes that could match it; among those the first in
declaration order wins.

Inside a dialog (the dialog engine), the order is the same with one exception: the global
commands (bot/chat/commands.py) are tried just before the first catch-all of the dialog
(`message`, `fallback`), so a dialog's own answers come first, then the global commands, then the
dialog's "I did not understand that" answers. An interrupting command ends the dialog (a
suspending one only sets it aside until it is done) and the message is routed again as if there
had been none; a non-interrupting one answers and the engine re-asks the dialog's current
question in the same reply. A staff command in a till dialog is re-asked after too, unless it
began a dialog of its own, which takes the till dialog's place. A relay dialog (`relay=True`,
人工's) is the one exception: no global command is tried in it; its own routes take everything.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from bot.chat import commands as globals_
from bot.chat.commands import GlobalCommand
from bot.chat.states import Dialogs, State, find
from bot.notifications.replies import Image, Reply, Text
from bot.rules.parsing import normalize_text

if TYPE_CHECKING:
    from bot.chat.context import Context

log = logging.getLogger("memberbot.routing")

Handler = Callable[["Context"], Awaitable[Reply | None]]
Predicate = Callable[["Context"], bool]
QuestionValues = Callable[["Context"], dict[str, Any]]
Dropped = Callable[["Context", dict[str, Any]], Awaitable[None]]
StateFilter = str | State | type[Dialogs] | None | tuple
Audience = Literal["members", "guests", "everyone"]  # guests: not members yet

# State filters: NO_DIALOG matches only outside any dialog, ANY_STATE matches always.
ANY_STATE = "*"
NO_DIALOG = None
# Where a dialog keeps the one a staff command set aside when the command began a dialog too.
SUSPENDED = "_suspended"

_SPACES = re.compile(r"\s+")


class SkipHandler(Exception):
    """Raised by a handler that looked and declined; routing continues with the next one."""


@dataclass(frozen=True)
class HelpEntry:
    """A member command as 帮助 lists it: `topic` names its line in help.j2, `shown` what to
    type."""

    topic: str
    shown: tuple[str, ...]
    audience: Audience = "members"


@dataclass(frozen=True)
class StaffSpec:
    """A staff command as 员工帮助 lists it (bot/chat/staff_commands.py)."""

    words: tuple[str, ...]
    action: str | None  # REQUIRED_ROLE key; None: any staff (员工帮助)
    usage: str


@dataclass(frozen=True, eq=False)
class Route:
    handler: Handler
    states: tuple[str | None, ...]
    predicate: Predicate | None = None
    kinds: frozenset[str] | None = None  # None: any kind
    words: frozenset[str] = frozenset()  # exact text, spaces inside ignored
    commands: frozenset[str] = frozenset()  # the first word of a text
    clicks: frozenset[str] = frozenset()  # custom-menu keys
    catch_all: bool = False  # a dialog's "not understood": after the global commands
    command: GlobalCommand | None = None
    help: HelpEntry | None = None
    staff: StaffSpec | None = None

    def matches(self, ctx: Context) -> bool:
        return _state_matches(self.states, ctx.dialog.state) and (
            self.predicate is None or self.predicate(ctx))

    def index_keys(self) -> Iterator[tuple]:
        if self.words or self.commands or self.clicks:
            yield from (("text", word) for word in self.words)
            yield from (("command", word) for word in self.commands)
            yield from (("click", key) for key in self.clicks)
        elif self.kinds is not None:
            yield from (("kind", kind) for kind in self.kinds)
        else:
            yield ("any",)


def _state_matches(states: tuple[str | None, ...], current: str | None) -> bool:
    for wanted in states:
        if wanted in (ANY_STATE, current):
            return True
        if wanted and wanted.endswith(".*") and current and current.startswith(wanted[:-1]):
            return True
    return False


def _states(state: StateFilter) -> tuple[str | None, ...]:
    wanted = state if isinstance(state, tuple) else (state,)
    out: list[str | None] = []
    for item in wanted:
        if isinstance(item, type) and issubclass(item, Dialogs):
            out.append(f"{item.prefix}.*")
        elif isinstance(item, State):
            out.append(item.name)
        else:
            out.append(item)
    return tuple(out)


def command_word(text: str) -> str:
    """The first word of a message, the way commands like `消费 138… 12` are matched."""
    return normalize_text(text).split(maxsplit=1)[0] if text.strip() else ""


def compact(text: str) -> str:
    """A typed keyword without the spaces an input method puts in it: 同 意, 同　意 → 同意."""
    return _SPACES.sub("", text)


class Router:
    def __init__(self, name: str):
        self.name = name
        self._routes: list[Route] = []
        self._children: list[Router] = []
        self._questions: dict[str, QuestionValues] = {}
        self._dropped: dict[str, Dropped] = {}
        self._index: dict[tuple, list[tuple[int, Route]]] | None = None
        self._lookups: dict[tuple, tuple[Route, ...]] = {}
        self._words: tuple[frozenset[str], frozenset[str]] | None = None

    def include(self, *routers: Router) -> None:
        self._children.extend(routers)
        self._forget_index()

    def routes(self) -> Iterator[Route]:
        yield from self._routes
        for child in self._children:
            yield from child.routes()

    # --- dispatching ---

    def _forget_index(self) -> None:
        self._index, self._lookups, self._words = None, {}, None

    def _build_index(self) -> dict[tuple, list[tuple[int, Route]]]:
        index: dict[tuple, list[tuple[int, Route]]] = {}
        for order, route in enumerate(self.routes()):
            for key in route.index_keys():
                index.setdefault(key, []).append((order, route))
        return index

    def candidates(self, ctx: Context) -> tuple[Route, ...]:
        """The routes that could match this message in its dialog state, in declaration
        order."""
        index = self._index
        if index is None:
            index = self._index = self._build_index()
        kind = ctx.inbound.kind
        keys: list[tuple] = [("kind", kind), ("any",)]
        if kind == "text":
            keys += [("text", compact(ctx.text)), ("command", command_word(ctx.text))]
        elif kind == "click":
            keys.append(("click", ctx.inbound.text))
        present = tuple(key for key in keys if key in index)
        state = ctx.dialog.state
        lookup = (present, state)
        found = self._lookups.get(lookup)
        if found is None:
            merged = sorted((entry for key in present for entry in index[key]),
                            key=lambda entry: entry[0])
            found = tuple(route for _, route in merged if _state_matches(route.states, state))
            if state is None or find(state) is not None:  # only declared states: a bounded cache
                self._lookups[lookup] = found
        return found

    async def dispatch(self, ctx: Context) -> Reply | None:
        suspended = ctx.dialog.data.get(SUSPENDED)
        reply = await self._dispatch(ctx)
        if suspended and ctx.dialog.state is None:
            # The dialog a staff command began is over: the one it set aside resumes.
            ctx.dialog.set(suspended["state"], **suspended["data"])
        return reply

    async def _dispatch(self, ctx: Context) -> Reply | None:
        if ctx.dialog.state is None:
            return await self._first_match(ctx, self.candidates(ctx))
        state = find(ctx.dialog.state)
        group = state.group if state else None
        if group is not None and group.idle is not None and ctx.dialog.idle(ctx.now) > group.idle:
            # Left alone too long: forget it and take the message as a fresh one.
            ctx.dialog.clear()
            return await self._first_match(ctx, self.candidates(ctx))
        return await self._in_dialog(ctx, state)

    async def _first_match(self, ctx: Context, routes: tuple[Route, ...]) -> Reply | None:
        for route in routes:
            if not route.matches(ctx):
                continue
            try:
                return await route.handler(ctx)
            except SkipHandler:
                continue
        return None

    async def _in_dialog(self, ctx: Context, state: State | None) -> Reply | None:
        routes = self.candidates(ctx)
        # A relay dialog (Dialogs relay=True) takes every message itself: no global command.
        commands_tried = state is not None and state.group.relay
        for route in routes:
            if route.command is not None or not route.matches(ctx):
                continue
            if route.catch_all and not commands_tried:
                commands_tried = True
                taken, reply = await self._global_command(ctx, routes, state)
                if taken:
                    return reply
            try:
                return await route.handler(ctx)
            except SkipHandler:
                continue
        if not commands_tried:
            taken, reply = await self._global_command(ctx, routes, state)
            if taken:
                return reply
        return None

    async def _global_command(self, ctx: Context, routes: tuple[Route, ...],
                              state: State | None) -> tuple[bool, Reply | None]:
        if (state is not None and ctx.inbound.kind == "text"
                and compact(ctx.text) in globals_.CANCEL.words):
            ctx.dialog.clear()
            return True, ctx.reply(state.group.cancelled)
        for route in routes:
            command = route.command
            if command is None or not route.matches(ctx):
                continue
            if command.staff and await ctx.staff_account() is None:
                continue  # a member typing 消费 … is answering the dialog
            if command.interrupts:
                if command.suspends and state is not None and state.group.staff:
                    return True, await self._beside_till_dialog(ctx, state)
                kept = (ctx.dialog.state, dict(ctx.dialog.data))
                ctx.dialog.clear()
                reply = await self._first_match(ctx, self.candidates(ctx))
                if command.suspends and ctx.dialog.state is None:
                    ctx.dialog.set(kept[0], **kept[1])
                elif command.suspends:  # it began a dialog of its own: ours waits inside it
                    ctx.dialog.update(**{SUSPENDED: {"state": kept[0], "data": kept[1]}})
                return True, reply
            before = ctx.dialog.state
            try:
                reply = await route.handler(ctx)
            except SkipHandler:
                continue
            if state is None or ctx.dialog.state != before:
                return True, reply
            return True, await self._reask(ctx, state, reply)
        return False, None

    async def _beside_till_dialog(self, ctx: Context, state: State) -> Reply | None:
        """A staff command while a till dialog waits for 确认 (or an amount): the command does
        its job and the question is asked again, the dialog kept; a command that asks a question
        of its own (another big 消费, another 群发) replaces the dialog, and says so."""
        kept = (ctx.dialog.state, dict(ctx.dialog.data))
        ctx.dialog.clear()
        reply = await self._first_match(ctx, self.candidates(ctx))
        if ctx.dialog.state is None:
            ctx.dialog.set(kept[0], **kept[1])
            return await self._reask(ctx, state, reply)
        dropped = self._dropped_handler(state.group)
        if dropped is not None:
            await dropped(ctx, kept[1])
        if SUSPENDED in kept[1] and SUSPENDED not in ctx.dialog.data:
            # A member's dialog set aside under the old one waits under the new one instead.
            ctx.dialog.update(**{SUSPENDED: kept[1][SUSPENDED]})
        if isinstance(reply, Text):
            return Text(ctx.render("dialog_replaced.j2", title=state.group.title,
                                   answer=reply.content))
        return reply

    async def _reask(self, ctx: Context, state: State, reply: Reply | None) -> Reply | None:
        def continued(answer: str) -> Text:
            return Text(ctx.render("dialog_continue.j2", answer=answer, title=state.group.title,
                                   question=self.ask(ctx, state).content))

        if isinstance(reply, Image):
            # An image cannot carry the question: it follows as a message of its own.
            if ctx.inbound.channel == "wechat":
                await ctx.bot.outbox.wechat(ctx.inbound.user, continued(""),
                                            key=f"reask:{ctx.key}", purpose="reply")
            return reply
        return continued(reply.content if isinstance(reply, Text) else "")

    # --- dialogs: questions and the words that are commands ---

    def question_values(self, *targets: State | type[Dialogs]):
        """Register what a state's question template needs (the masked phone, the member)."""

        def decorator(values: QuestionValues) -> QuestionValues:
            for target in targets:
                states = target.states if isinstance(target, type) else (target,)
                for state in states:
                    self._questions[state.name] = values
            return values

        return decorator

    def dropped(self, group: type[Dialogs]):
        """Register what undoes a till dialog's leftovers (群发's draft) when a staff command's own
        dialog takes its place; it gets the data the dialog kept."""

        def decorator(handler: Dropped) -> Dropped:
            self._dropped[group.prefix] = handler
            return handler

        return decorator

    def _dropped_handler(self, group: type[Dialogs]) -> Dropped | None:
        if group.prefix in self._dropped:
            return self._dropped[group.prefix]
        for child in self._children:
            found = child._dropped_handler(group)
            if found is not None:
                return found
        return None

    def _question_values(self, state: State) -> QuestionValues | None:
        if state.name in self._questions:
            return self._questions[state.name]
        for child in self._children:
            found = child._question_values(state)
            if found is not None:
                return found
        return None

    def ask(self, ctx: Context, state: State) -> Text:
        """The question of a dialog state, asked (again)."""
        values = self._question_values(state)
        return ctx.reply(state.question, **(values(ctx) if values else {}))

    def is_command(self, text: str) -> bool:
        """Whether a text is a keyword, or starts with a command word, that some route (or 取消)
        listens to."""
        if self._words is None:
            routes = list(self.routes())
            self._words = (
                frozenset(word for route in routes for word in route.words)
                | frozenset(globals_.CANCEL.words),
                frozenset(word for route in routes for word in route.commands))
        exact, first = self._words
        return compact(text) in exact or command_word(text) in first

    def help_entries(self) -> list[HelpEntry]:
        seen: dict[str, HelpEntry] = {}
        for route in self.routes():
            if route.help and route.help.topic not in seen:
                seen[route.help.topic] = route.help
        return list(seen.values())

    def staff_commands(self) -> list[StaffSpec]:
        return [route.staff for route in self.routes() if route.staff]

    # --- registration decorators ---

    def _register(self, state: StateFilter, **fields: Any) -> Callable[[Handler], Handler]:
        def decorator(handler: Handler) -> Handler:
            self._routes.append(Route(handler, _states(state), **fields))
            self._forget_index()
            return handler

        return decorator

    @staticmethod
    def _help(help: str | None, shown: tuple[str, ...] | None, words: tuple[str, ...],
              audience: Audience) -> HelpEntry | None:
        return HelpEntry(help, shown or words[:1], audience) if help else None

    def text(self, *words: str, state: StateFilter = ANY_STATE, help: str | None = None,
             shown: tuple[str, ...] | None = None, audience: Audience = "members"):
        """Text (typed, or recognised from voice) that is exactly one of `words`."""
        return self._register(state, words=frozenset(words),
                              help=self._help(help, shown, words, audience))

    def command(self, *words: str, state: StateFilter = ANY_STATE, help: str | None = None,
                shown: tuple[str, ...] | None = None, staff: StaffSpec | None = None,
                command: GlobalCommand | None = None):
        """Text whose first word is one of `words`; the handler parses the rest."""
        return self._register(state, commands=frozenset(words), staff=staff, command=command,
                              help=self._help(help, shown, words, "members"))

    def message(self, *, state: StateFilter, kinds: tuple[str, ...] = ("text",),
                when: Predicate | None = None):
        """Any message of these kinds in the given dialog state: the dialog's catch-all."""
        return self._register(state, kinds=frozenset(kinds), predicate=when, catch_all=True)

    def answer(self, state: StateFilter, *, fits: Predicate, kinds: tuple[str, ...] = ("text",)):
        """A message that fits the question of this dialog state (a phone number at the phone
        step): taken before the global commands, and even after a long pause."""
        return self._register(state, kinds=frozenset(kinds), predicate=fits)

    def click(self, *keys: str, state: StateFilter = ANY_STATE):
        """A custom-menu button of type click."""
        return self._register(state, clicks=frozenset(keys))

    def event(self, *kinds: str, state: StateFilter = ANY_STATE):
        """subscribe, unsubscribe, scan, view, scancode, location_report, template_finish, ..."""
        return self._register(state, kinds=frozenset(kinds))

    def when(self, predicate: Predicate, state: StateFilter = ANY_STATE,
             kinds: tuple[str, ...] | None = None, command: GlobalCommand | None = None):
        return self._register(state, predicate=predicate,
                              kinds=frozenset(kinds) if kinds else None, command=command)

    def global_command(self, command: GlobalCommand, *, help: str | None = None,
                       shown: tuple[str, ...] | None = None, audience: Audience = "members",
                       also: Predicate | None = None):
        """The handler that does a global command's job, in any dialog state or none. `also`
        takes messages that ask for it in other words ("我的积分还有多少")."""
        entry = self._help(help, shown, command.words or command.commands, audience)

        def decorator(handler: Handler) -> Handler:
            if command.words:
                self._register(ANY_STATE, words=frozenset(command.words), command=command,
                               help=entry)(handler)
            if command.commands:
                self._register(ANY_STATE, commands=frozenset(command.commands),
                               command=command, help=entry)(handler)
            if command.clicks:
                self._register(ANY_STATE, clicks=frozenset(command.clicks),
                               command=command)(handler)
            if also is not None:
                self._register(ANY_STATE, predicate=also, kinds=frozenset({"text"}),
                               command=command)(handler)
            return handler

        return decorator

    def fallback(self):
        """Whatever nothing else took."""
        return self._register(ANY_STATE, catch_all=True)
