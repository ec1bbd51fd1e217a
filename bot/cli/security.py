"""`memberbot security new-key|rotate-key`: the data key that encrypts phone numbers."""

from __future__ import annotations

import argparse
import asyncio

from bot.config import Config
from bot.infra.vault import new_data_key
from bot.runtime import open_bot
from bot.services import privacy


def register(commands: argparse._SubParsersAction) -> None:
    security = commands.add_parser("security", help="keys")
    actions = security.add_subparsers(dest="action", required=True)
    actions.add_parser("new-key", help="print a new data key").set_defaults(
        run=_run_new_key, needs="none")
    actions.add_parser("rotate-key", help="re-encrypt every phone under the current key "
                                          "(see README)").set_defaults(
        run=_run_rotate_key, needs="database")


def _run_new_key(args: argparse.Namespace, config: Config) -> None:
    print(new_data_key())


def _run_rotate_key(args: argparse.Namespace, config: Config) -> None:
    asyncio.run(rotate_key(config))


async def rotate_key(config: Config) -> None:
    async with open_bot(config, scheduler=False) as bot:
        rewritten, current = await privacy.rotate_key(bot)
    print(f"Re-encrypted {rewritten} phone numbers under key {bot.vault.key_id}; "
          f"{current} were already current. Once every worker runs with this key, remove the "
          "old one from MEMBERBOT_SECURITY_PREVIOUS_KEYS.")
