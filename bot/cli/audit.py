"""`memberbot audit`: the append-only log of staff actions, filtered."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt

from bot.cli.common import CliError, lookup_member
from bot.clock import local_midnight
from bot.config import Config
from bot.models import AuditEntry
from bot.rules import earning
from bot.runtime import open_bot


def register(commands: argparse._SubParsersAction) -> None:
    audit = commands.add_parser("audit", help="the append-only log of staff actions")
    audit.add_argument("--staff", type=int, help="staff id")
    audit.add_argument("--member", help="phone number or card number")
    audit.add_argument("--since", help="first day, e.g. 2026-11-01")
    audit.add_argument("--until", help="last day (inclusive)")
    audit.add_argument("--limit", type=int, default=200)
    audit.set_defaults(run=_run, needs="database")


def _run(args: argparse.Namespace, config: Config) -> None:
    asyncio.run(audit_log(config, args.staff, args.member, args.since, args.until, args.limit))


async def audit_log(config: Config, staff_id: int | None, who: str | None, since: str | None,
                    until: str | None, limit: int) -> None:
    async with open_bot(config, scheduler=False) as bot:
        query = AuditEntry.all()
        if staff_id is not None:
            query = query.filter(staff_id=staff_id)
        if who:
            query = query.filter(member_id=(await lookup_member(bot, who)).id)
        tz = config.shop.tz
        for name, value, op in (("since", since, "gte"), ("until", until, "lt")):
            if value:
                try:
                    day = dt.date.fromisoformat(value)
                except ValueError:
                    raise CliError(f"--{name} takes a date like 2026-11-01", 2) from None
                if op == "lt":
                    day += dt.timedelta(days=1)  # --until is inclusive
                # In UTC, as stored: SQLite compares the stored text, not the instant.
                start = local_midnight(day, tz)
                query = query.filter(**{f"created_at__{op}": start})
        rows = await query.order_by("-id").limit(limit).select_related("member")
        for row in reversed(rows):
            card = row.member.card_no if row.member else "-"
            print(f"{row.created_at.astimezone(tz):%Y-%m-%d %H:%M:%S} {row.actor:<16} "
                  f"{row.store_code or '-':<6} {row.action:<20} {card:<12} "
                  f"{_compact(row.before)} → {_compact(row.after)} {row.detail}")


# The keys services store in fen (bot/services: purchases, wallet, redemption, import); shown
# in yuan like everywhere else, so 35000 is not read as 35,000 yuan.
MONEY_KEYS = frozenset({"amount", "stored_value", "bonus", "discount", "price"})


def _compact(values: dict | None) -> str:
    if not values:
        return "-"
    return ",".join(f"{k}={_value(k, v)}" for k, v in values.items())


def _value(key: str, value: object) -> object:
    if key in MONEY_KEYS and isinstance(value, int) and not isinstance(value, bool):
        return f"¥{earning.fen_to_yuan(value)}"
    return value
