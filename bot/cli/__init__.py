"""The `memberbot` command."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

from bot.cli import (
    audit,
    booking,
    broadcast,
    console,
    coupons,
    feedback,
    jobs,
    menu,
    ops,
    purchases,
    qrcode,
    sandbox,
    security,
    segments,
    serve,
    staff,
)
from bot.cli.common import CliError
from bot.config import (
    Config,
    ConfigError,
    load_config,
    validate_for_database,
    validate_for_serving,
    validate_for_wechat_api,
)
from bot.infra.db import SQLITE_BUSY_MS, is_locked
from bot.sandbox.runner import sandbox_config

# Each group registers its subcommands, each with set_defaults(run=..., needs=...): run(args,
# config) does the work and returns the exit status (None: 0) or raises CliError; needs says
# what of the configuration it uses, checked once in main() before it runs.
GROUPS = (serve, sandbox, staff, purchases, audit, menu, qrcode, coupons, broadcast, segments,
          ops, security, jobs, booking, feedback, console)

NEEDS: dict[str, Callable[[Config], None]] = {
    "none": lambda config: None,  # the config file alone (backup, restore, sandbox, new-key)
    "database": validate_for_database,  # members in the database: the data key, no WeChat
    "wechat": validate_for_wechat_api,  # calls the WeChat API: app id and secret too
    "serving": validate_for_serving,  # answers WeChat: everything
}


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="memberbot", description=__doc__)
    parser.add_argument("--config", help="path to config.toml (default: ./config.toml)")
    parser.add_argument("--sandbox", action="store_true",
                        help="work on the sandbox's database and key (data/sandbox.db, made by "
                             "`memberbot sandbox`) instead of the shop's")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)
    for group in GROUPS:
        group.register(commands)
    return parser


def command_config(args: argparse.Namespace) -> Config:
    """The configuration the command runs with, checked for what the command needs."""
    config = load_config(args.config)
    if args.sandbox:
        config = sandbox_config(config)
        if args.command not in ("sandbox", "chat"):  # those two make it or need none
            db = Path(config.database.url.removeprefix("sqlite://"))
            if not db.exists():
                raise CliError(f"no sandbox database at {db}: start `memberbot sandbox` in this "
                               "folder first", 1)
    try:
        NEEDS[args.needs](config)
    except ConfigError as exc:
        if args.needs == "serving" or args.sandbox:
            raise
        raise ConfigError(f"{exc}; or, to use the sandbox's database: memberbot --sandbox "
                          f"{args.command} …") from None
    return config


# The commands that keep running and whose log is their output: the rest say what they did on
# stdout, and their log shows only warnings and errors (-v: everything).
LOGGING_COMMANDS = frozenset({"serve", "worker", "sandbox", "chat"})


def log_level(command: str, verbose: bool) -> int:
    if verbose:
        return logging.DEBUG
    return logging.INFO if command in LOGGING_COMMANDS else logging.WARNING


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger().setLevel(log_level(args.command, args.verbose))
    for noisy in ("tortoise", "apscheduler", "aiosqlite"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        status = args.run(args, command_config(args)) or 0
        sys.stdout.flush()  # here, so that a reader gone away is a BrokenPipeError caught below
        return status
    except BrokenPipeError:
        # The reader stopped reading (`| head`): not an error worth a word. Point stdout at
        # /dev/null so the interpreter's last flush does not fail again, and exit as a process
        # killed by SIGPIPE would (128 + 13), which is what a shell expects of a pipe's writer.
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except CliError as exc:
        print(f"memberbot: {exc.message}", file=sys.stderr)
        return exc.status
    except ConfigError as exc:
        print(f"memberbot: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except OSError as exc:  # e.g. the port is taken by another program
        print(f"memberbot: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        if not is_locked(exc):
            raise
        # The transaction that met the lock rolled back: the command can simply run again.
        print(f"memberbot: the database is locked by another process (waited "
              f"{SQLITE_BUSY_MS // 1000} s); run the command again", file=sys.stderr)
        return 1
