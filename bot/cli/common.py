"""What the command groups share: the one error a command raises, finding a member, and the
WeChat API client for the commands that call WeChat."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import aiohttp

from bot.config import Config
from bot.infra.db import close_database, open_database
from bot.models import Member
from bot.notifications.wechat_api import WeChatAPI
from bot.services import Refused, members


class CliError(Exception):
    """A command could not do its job. main() prints `memberbot: <message>` once, on stderr,
    and exits with `status` (1: refused or failed, 2: a usage problem)."""

    def __init__(self, message: str, status: int = 1):
        super().__init__(message)
        self.message = message
        self.status = status


def refusal(bot, exc: Refused, status: int = 1) -> CliError:
    """A service's refusal, in the words its template gives the person who asked."""
    return CliError(bot.templates.render(exc.reason, **exc.values), status)


async def lookup_member(bot, who: str) -> Member:
    """The member a phone number or card number means; CliError (1) with the reason if none."""
    try:
        return await members.lookup(bot, who)
    except members.MemberNotFound as exc:
        raise CliError(bot.templates.render(exc.reason, text=who)) from None


@contextlib.asynccontextmanager
async def wechat_api(config: Config) -> AsyncIterator[WeChatAPI]:
    """The API client with the database open (the access token is shared through it). The
    command's needs="wechat" has checked the credentials."""
    await open_database(config.database.url)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session:
            yield WeChatAPI(session, config.wechat)
    finally:
        await close_database()
