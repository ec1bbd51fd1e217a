"""Staff commands, registered from any conversation area: `@staff_command("核销", ...)`.

The sender must be active staff allowed to do `action`. Someone who never was staff passes the
message on (a member typing 消费 … is just not understood); a revoked account is told its access
has ended. Every staff command is a global command (bot/chat/commands.py: STAFF) and is listed
by 员工帮助 for the roles that may use it."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

from bot.chat import commands
from bot.chat.context import Context
from bot.chat.routing import Router, SkipHandler, StaffSpec
from bot.notifications.replies import Reply
from bot.services import Refused, members
from bot.services import staff as staff_service
from bot.services.staff import Actor

StaffHandler = Callable[[Context, Actor, list[str]], Awaitable[Reply]]


async def _staff_or_refusal(ctx: Context, word: str) -> tuple[Actor | None, Reply | None]:
    found = await ctx.staff_account()
    if found is None:
        raise SkipHandler
    staff, store = found
    if not staff.active:
        return None, ctx.reply("staff_access_ended.j2", word=word)
    return Actor.of(staff, store), None


async def staff_answering(ctx: Context, action: str, usage: str
                          ) -> tuple[dict[str, Any], Actor | None, Reply | None]:
    """For a staff dialog's answer (确认, an amount): the dialog ends and what it kept comes
    back, with the actor checked again as the command was (access may have ended, or the role
    changed, since the question), or the refusal."""
    data = dict(ctx.dialog.data)
    ctx.dialog.clear()
    actor, refusal = await _staff_or_refusal(ctx, usage.split()[0])
    if refusal is not None:
        return data, None, refusal
    if not staff_service.allowed(actor.staff.role, action):
        return data, None, ctx.reply("staff_not_allowed.j2",
                                     role=staff_service.ROLE_NAMES[actor.staff.role], usage=usage)
    return data, actor, None


def staff_command(*words: str, action: str, usage: str, args: tuple[int, int], on: Router):
    """Register a staff command on a router: the message must have between args[0] and args[1]
    words after the command."""
    spec = StaffSpec(words, action, usage)

    def decorator(handler: StaffHandler):
        @on.command(*words, staff=spec, command=commands.STAFF)
        @functools.wraps(handler)
        async def wrapper(ctx: Context) -> Reply:
            actor, refusal = await _staff_or_refusal(ctx, words[0])
            if refusal is not None:
                return refusal
            if not staff_service.allowed(actor.staff.role, action):
                return ctx.reply("staff_not_allowed.j2",
                                 role=staff_service.ROLE_NAMES[actor.staff.role], usage=usage)
            parts = ctx.text.split(maxsplit=args[1])[1:]
            if not args[0] <= len(parts) <= args[1]:
                return ctx.reply("staff_usage.j2", usage=usage)
            try:
                return await handler(ctx, actor, parts)
            except members.MemberNotFound as exc:
                return ctx.reply(exc.reason, text=parts[0])
            except Refused as exc:
                return ctx.reply(exc.reason, tz=ctx.bot.config.shop.tz, **exc.values)

        return handler

    return decorator


def staff_text(*words: str, on: Router):
    """A staff message with no arguments and no role requirement (员工帮助)."""
    spec = StaffSpec(words, None, words[0])

    def decorator(handler: Callable[[Context, Actor], Awaitable[Reply]]):
        @on.command(*words, staff=spec, command=commands.STAFF)
        @functools.wraps(handler)
        async def wrapper(ctx: Context) -> Reply:
            actor, refusal = await _staff_or_refusal(ctx, words[0])
            return refusal if refusal is not None else await handler(ctx, actor)

        return handler

    return decorator


def staff_help_lines(router: Router, role: str) -> list[StaffSpec]:
    """The staff commands a role may use, in the order they were registered."""
    return [spec for spec in router.staff_commands()
            if spec.action is not None and staff_service.allowed(role, spec.action)]
