"""`memberbot segment count|show "<expression>"`: who a segment holds (docs/segments.md), before a
campaign or a bulk coupon goes to them. `show` masks phone numbers, as staff views do."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt

from bot.cli.common import CliError, pad, segment_refusal
from bot.config import Config
from bot.infra.vault import mask_phone
from bot.runtime import Bot, open_bot
from bot.services import members, segments


def register(commands: argparse._SubParsersAction) -> None:
    segment = commands.add_parser("segment", help="count or list a segment's members "
                                                  "(docs/segments.md)")
    actions = segment.add_subparsers(dest="action", required=True)
    count = actions.add_parser("count", help="how many members a segment holds")
    show = actions.add_parser("show", help="list a segment's members (phones masked)")
    show.add_argument("--limit", type=int, default=20, help="at most this many (default 20)")
    for parser, run in ((count, _run_count), (show, _run_show)):
        parser.add_argument("expression", help='e.g. "tier=金卡会员 last_visit>30d"')
        parser.add_argument("--date", type=dt.date.fromisoformat,
                            help="the shop's date relative conditions count from "
                                 "(YYYY-MM-DD, default today)")
        parser.set_defaults(run=run, needs="database")


def _run_count(args: argparse.Namespace, config: Config) -> None:
    asyncio.run(count(config, args.expression, args.date))


def _run_show(args: argparse.Namespace, config: Config) -> None:
    if args.limit < 1:
        raise CliError("--limit is at least 1", 2)
    asyncio.run(show(config, args.expression, args.limit, args.date))


async def _segment(bot: Bot, text: str) -> segments.Segment:
    try:
        return await segments.parse_checked(text, bot.config)
    except segments.SegmentSyntaxError as exc:
        raise segment_refusal(text, exc) from None


async def count(config: Config, text: str, today: dt.date | None = None) -> None:
    async with open_bot(config, scheduler=False) as bot:
        segment = await _segment(bot, text)
        total = await segments.count(segment, today=today or bot.today())
    print(f"{total} member{'s' if total != 1 else ''} in {segment}")


async def show(config: Config, text: str, limit: int, today: dt.date | None = None) -> None:
    async with open_bot(config, scheduler=False) as bot:
        segment = await _segment(bot, text)
        today = today or bot.today()
        shown = 0
        batches = segments.members(segment, today=today, size=min(limit, 500))
        async with contextlib.aclosing(batches):
            async for batch in batches:
                for member in batch[:limit - shown]:
                    print(f"{member.card_no:<12} {mask_phone(members.phone_of(bot, member))}  "
                          f"{pad(member.tier, 10)} {member.name}".rstrip())
                    shown += 1
                if shown >= limit:
                    break
        total = await segments.count(segment, today=today)
    print(f"{shown} of {total} member{'s' if total != 1 else ''} in {segment}")
