"""What the command groups share: the one error a command raises, a segment mistake pointed at,
text laid out in terminal columns, finding a member, and the WeChat API client for the commands
that call WeChat."""

from __future__ import annotations

import contextlib
import unicodedata
from collections.abc import AsyncIterator

import aiohttp

from bot.config import Config
from bot.infra.db import close_database, open_database
from bot.models import Member
from bot.notifications.wechat_api import WeChatAPI
from bot.services import Refused, members, segments


class CliError(Exception):
    """A command could not do its job. main() prints `memberbot: <message>` once, on stderr,
    and exits with `status` (1: refused or failed, 2: a usage problem)."""

    def __init__(self, message: str, status: int = 1):
        super().__init__(message)
        self.message = message
        self.status = status


def width(text: str) -> int:
    """Columns a terminal gives the text: two for each wide (CJK) character."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def clip(text: str, columns: int) -> str:
    """The longest start of the text that fits in `columns`."""
    used = 0
    for n, ch in enumerate(text):
        used += width(ch)
        if used > columns:
            return text[:n]
    return text


def pad(text: str, columns: int) -> str:
    """The text filled with spaces to `columns` (a longer text is left whole): str.ljust for a
    table that lines up with Chinese text, which ljust counts one column a character."""
    return text + " " * max(0, columns - width(text))


def pointed(text: str, error: segments.SegmentSyntaxError) -> str:
    """The error, then the text with a caret under the position it names."""
    return f"{error}\n  {text}\n  {' ' * width(text[:error.position])}^"


def segment_refusal(text: str, error: segments.UnknownSegment) -> CliError:
    """A segment the command cannot use (exit 2): pointed at when the error knows where."""
    if isinstance(error, segments.SegmentSyntaxError):
        return CliError(pointed(text, error), 2)
    return CliError(str(error), 2)


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
