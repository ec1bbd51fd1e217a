"""`memberbot console link --staff ID`: a one-time login link to the owner's console, for the
first set-up (before anyone scanned a QR code) and the sandbox."""

from __future__ import annotations

import argparse
import asyncio

from bot.cli.common import CliError
from bot.config import Config
from bot.runtime import open_bot
from bot.services import console_auth


def register(commands: argparse._SubParsersAction) -> None:
    console = commands.add_parser("console", help="the owner's web console (/console)")
    actions = console.add_subparsers(dest="action", required=True)
    link = actions.add_parser("link", help="print a one-time login link for an employee")
    link.add_argument("--staff", type=int, required=True,
                      help="the employee's id (memberbot staff list)")
    link.set_defaults(run=_run_link, needs="database")


def _run_link(args: argparse.Namespace, config: Config) -> None:
    asyncio.run(link(config, args.staff))


def base_url(config: Config) -> str:
    return (config.console.base_url or
            f"http://{config.server.host}:{config.server.port}").rstrip("/")


async def link(config: Config, staff_id: int) -> None:
    async with open_bot(config, scheduler=False) as bot:
        try:
            nonce = await console_auth.create_link(staff_id, bot.now())
        except LookupError as exc:
            raise CliError(str(exc), 2) from None
    minutes = int(console_auth.LINK_TTL.total_seconds() // 60)
    print(f"A login link for staff member {staff_id}, valid {minutes} minutes, usable once. "
          "Open it in the browser that should be logged in:")
    print(f"{base_url(config)}/console/login/{nonce}")
