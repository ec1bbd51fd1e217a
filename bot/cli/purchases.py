"""`memberbot purchase`: the CLI twin of 消费, with the same service and rules, audited as cli."""

from __future__ import annotations

import argparse
import asyncio
import uuid

from bot.cli.common import CliError, lookup_member
from bot.config import Config
from bot.models import Store
from bot.notifications import notices
from bot.rules import earning
from bot.runtime import open_bot
from bot.services import purchases
from bot.services.staff import Actor


def register(commands: argparse._SubParsersAction) -> None:
    buy = commands.add_parser("purchase", help="record a purchase (like 消费 in chat)")
    buy.add_argument("member", help="phone number or card number")
    buy.add_argument("amount", help="yuan, e.g. 128.50")
    buy.add_argument("--note", default="")
    buy.add_argument("--store", help="store code (default: the first store)")
    buy.add_argument("--key", help="idempotency key: repeating it records nothing new")
    buy.set_defaults(run=_run, needs="database")


def _run(args: argparse.Namespace, config: Config) -> None:
    asyncio.run(purchase(config, args.member, args.amount, args.note, args.store, args.key))


async def purchase(config: Config, who: str, amount: str, note: str, store_code: str | None,
                   key: str | None) -> None:
    async with open_bot(config, scheduler=False) as bot:
        fen = earning.parse_yuan(amount, config.points.max_purchase * 100)
        if fen is None:
            raise CliError(f"amount {amount!r} must be a positive number of yuan with at most "
                           f"two decimals, at most {config.points.max_purchase}", 2)
        store = await Store.get_or_none(code=store_code or config.stores[0].code)
        if store is None:
            raise CliError(f"no store {store_code!r}", 2)
        member = await lookup_member(bot, who)
        result = await purchases.record(bot, member, fen, actor=Actor.cli(store), note=note,
                                        key=key or f"cli:{uuid.uuid4()}")
        await notices.purchase(bot, result, fen, store, bot.now())
    state = "already recorded" if result.duplicate else "recorded"
    print(f"Purchase #{result.purchase.id} {state}: ¥{earning.fen_to_yuan(fen)} for "
          f"{member.card_no}, +{result.points} points, balance {result.member.points}"
          + (f", upgraded to {result.new_tier}" if result.new_tier else ""))
