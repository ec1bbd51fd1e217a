"""`memberbot backup|restore|export|import`: the database copied and restored, members out to CSV
and in from an old system (the work is in bot/services/ops/)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from bot.cli.common import CliError
from bot.config import Config
from bot.rules.cards import SERIAL_DIGITS, card_number
from bot.runtime import open_bot
from bot.services import ops


def register(commands: argparse._SubParsersAction) -> None:
    save = commands.add_parser("backup", help="a consistent copy of the SQLite database, "
                                               "safe while the server runs")
    save.add_argument("--to", help="file to write (default: beside the database, e.g. "
                                   "data/backups/memberbot-YYYYmmdd-HHMMSS.db)")
    save.set_defaults(run=_run_backup, needs="none")
    back = commands.add_parser("restore", help="replace the SQLite database with a backup "
                                               "(server stopped)")
    back.add_argument("file", help="a backup made by memberbot backup")
    back.add_argument("--yes", action="store_true",
                      help="really replace the database (the current one is kept beside it)")
    back.add_argument("--last-card", help="the highest card number already issued; only needed "
                                          "when the current database cannot be read")
    back.set_defaults(run=_run_restore, needs="none")
    export = commands.add_parser("export", help="members to CSV (UTF-8 with BOM, for Excel)")
    export.add_argument("what", choices=("members",))
    export.add_argument("--format", choices=("csv",), default="csv")
    export.add_argument("--to", default="-", help="file to write, or - for stdout (default)")
    export.set_defaults(run=_run_export, needs="database")
    load = commands.add_parser("import", help="members from an old system's CSV file")
    load.add_argument("what", choices=("members",))
    load.add_argument("file", help="CSV with a header row; phone is the only required column")
    load.add_argument("--dry-run", action="store_true",
                      help="validate and report only; write nothing")
    load.set_defaults(run=_run_import, needs="database")


def _run_backup(args: argparse.Namespace, config: Config) -> None:
    asyncio.run(backup(config, args.to))


def _run_restore(args: argparse.Namespace, config: Config) -> None:
    asyncio.run(restore(config, args.file, args.yes, args.last_card))


def _run_export(args: argparse.Namespace, config: Config) -> None:
    asyncio.run(export_members(config, args.format, args.to))


def _run_import(args: argparse.Namespace, config: Config) -> None:
    asyncio.run(import_members(config, args.file, args.dry_run))


def _failed(exc: ops.OpsError) -> CliError:
    return CliError(str(exc), exc.status)


async def backup(config: Config, to: str | None) -> None:
    """A consistent copy of the SQLite database, safe while the server runs."""
    try:
        path, size = await ops.backup(config.database.url, Path(to) if to else None,
                                      tz=config.shop.tz)
    except ops.OpsError as exc:
        raise _failed(exc) from None
    print(f"Backup written: {path} ({ops.human_size(size)})")


def _card_serial(prefix: str, card_no: str) -> int | None:
    """The serial behind one of our card numbers; None if it is not one (prefix, length, check
    digit)."""
    serial = card_no.removeprefix(prefix)[:-1]
    if (not card_no.startswith(prefix) or len(serial) != SERIAL_DIGITS
            or not serial.isascii() or not serial.isdigit()):
        return None
    return int(serial) if card_number(prefix, int(serial)) == card_no else None


async def restore(config: Config, source: str, yes: bool, last_card: str | None = None) -> None:
    try:
        db = ops.sqlite_path(config.database.url)
    except ops.OpsError as exc:
        raise _failed(exc) from None
    floor = None
    if last_card is not None:
        floor = _card_serial(config.shop.card_prefix, last_card.strip())
        if floor is None:
            raise CliError(f"--last-card {last_card!r} is not one of this shop's card numbers "
                           f"({config.shop.card_prefix} and digits, as printed on the card)", 2)
    if not yes:
        raise CliError(f"restore replaces the whole database {db} with {source}; every change "
                       "since that backup is lost. Stop memberbot serve and any workers first, "
                       "then run again with --yes (the current database is kept beside it).", 2)
    try:
        aside = await ops.restore(config.database.url, Path(source), tz=config.shop.tz,
                                  card_serial_floor=floor)
    except ops.OpsError as exc:
        raise _failed(exc) from None
    kept = f" The previous database is kept as {aside}." if aside else ""
    print(f"Restored {source} into {db}.{kept} Start memberbot again.")


async def export_members(config: Config, fmt: str, to: str) -> None:
    async with open_bot(config, scheduler=False) as bot:
        try:
            result = await ops.export_members_to(bot, to)
        except ops.OpsError as exc:
            raise _failed(exc) from None
    where = "stdout" if to == "-" else to
    # On stderr: stdout may be the CSV itself.
    print(f"Exported {result.count} members to {where} ({fmt}).", file=sys.stderr)


async def import_members(config: Config, source: str, dry_run: bool) -> None:
    """Migration from an old system: everything validated first, nothing half-imported."""
    async with open_bot(config, scheduler=False) as bot:
        try:
            result = await ops.import_members(bot, Path(source), dry_run=dry_run,
                                              progress=ops.Progress(sys.stderr))
        except ops.OpsError as exc:
            raise _failed(exc) from None
    if result.problems:
        rows = len({p.row for p in result.problems})
        raise CliError("\n".join([
            f"{source}: {len(result.problems)} problem(s) in {rows} row(s); nothing was "
            "imported. Fix them and run again:",
            *(f"  {problem}" for problem in result.problems)]))
    if result.dry_run:
        print(f"Dry run: all {result.rows} rows are valid; {result.imported} would be imported, "
              f"{result.already_there} are already there. Nothing was written.")
        return
    print(f"Imported {result.imported} members from {source}; {result.already_there} were "
          "already there.")
    if result.unchecked_cards:
        print(f"Note: {result.unchecked_cards} kept card numbers have no valid check digit; "
              "look those members up by phone.")
