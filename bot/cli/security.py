"""`memberbot security new-key|rotate-key`: the data key that encrypts phone numbers."""

from __future__ import annotations

import argparse
import asyncio

from bot.config import Config, validate_for_serving
from bot.infra.vault import new_data_key
from bot.runtime import open_bot
from bot.services import privacy


def register(commands: argparse._SubParsersAction) -> None:
    security = commands.add_parser("security", help="keys")
    security.add_argument("action", choices=("new-key", "rotate-key"),
                          help="new-key prints a data key; rotate-key re-encrypts every phone "
                               "under the current key (see README)")
    security.set_defaults(run=_run)


def _run(args: argparse.Namespace, config: Config) -> None:
    if args.action == "rotate-key":
        validate_for_serving(config)
        asyncio.run(rotate_key(config))
    else:
        print(new_data_key())


async def rotate_key(config: Config) -> None:
    async with open_bot(config, scheduler=False) as bot:
        rewritten, current = await privacy.rotate_key(bot)
    print(f"Re-encrypted {rewritten} phone numbers under key {bot.vault.key_id}; "
          f"{current} were already current. Once every worker runs with this key, remove the "
          "old one from MEMBERBOT_SECURITY_PREVIOUS_KEYS.")
