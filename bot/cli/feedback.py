"""`memberbot feedback`: what members said of their visits (评价), newest first, filtered."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt

from bot.cli.common import CliError
from bot.clock import local_midnight
from bot.config import Config
from bot.infra.vault import mask_phone
from bot.models import Store
from bot.runtime import open_bot
from bot.services import members, ratings


def register(commands: argparse._SubParsersAction) -> None:
    feedback = commands.add_parser("feedback", help="members' ratings of their visits")
    feedback.add_argument("--store", help="store code, e.g. S001")
    feedback.add_argument("--since", help="first day, e.g. 2026-11-01")
    feedback.add_argument("--max-stars", type=int, choices=range(1, 6), metavar="N",
                          help="only ratings of N stars or fewer (1–5)")
    feedback.add_argument("--limit", type=int, default=200, help="ratings listed (default 200)")
    feedback.set_defaults(run=_run, needs="database")


def _run(args: argparse.Namespace, config: Config) -> None:
    asyncio.run(show(config, args.store, args.since, args.max_stars, args.limit))


async def show(config: Config, store_code: str | None, since: str | None,
               max_stars: int | None, limit: int) -> None:
    start = None
    if since:
        try:
            start = local_midnight(dt.date.fromisoformat(since), config.shop.tz)
        except ValueError:
            raise CliError("--since takes a date like 2026-11-01", 2) from None
    async with open_bot(config, scheduler=False) as bot:
        store_id = None
        if store_code:
            store = await Store.get_or_none(code=store_code)
            if store is None:
                raise CliError(f"no store {store_code!r}", 2)
            store_id = store.id
        found = await ratings.feedback(store_id=store_id, since=start, max_stars=max_stars,
                                       limit=limit)
        tz = config.shop.tz
        for rating in found.ratings:
            member = rating.member
            phone = "-" if member.erased_at or not member.phone_enc else \
                mask_phone(members.phone_of(bot, member))
            print(f"{rating.created_at.astimezone(tz):%Y-%m-%d %H:%M} "
                  f"{rating.store.code if rating.store else '-':<6} "
                  f"{'★' * rating.stars}{'☆' * (5 - rating.stars)} {phone:<11} "
                  f"{rating.visit:<16} {rating.comment or '-'}"
                  + (f"  (thread {rating.thread_id})" if rating.thread_id else ""))
    if found.count > len(found.ratings):
        print(f"(the newest {len(found.ratings)} of {found.count} shown; --limit for more)")
    average = f"{found.average:.2f}" if found.average is not None else "-"
    print(f"{found.count} rating{'' if found.count == 1 else 's'}, average {average} stars")
