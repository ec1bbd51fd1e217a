"""The `memberbot` command."""

from __future__ import annotations

import argparse
import logging
import sys

from bot.cli import audit, coupons, menu, ops, purchases, qrcode, sandbox, security, serve, staff
from bot.cli.common import CliError
from bot.config import ConfigError, load_config

# Each group registers its subcommands, each with set_defaults(run=...): run(args, config) does
# the work and returns the exit status (None: 0) or raises CliError.
GROUPS = (serve, sandbox, staff, purchases, audit, menu, qrcode, coupons, ops, security)


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="memberbot", description=__doc__)
    parser.add_argument("--config", help="path to config.toml (default: ./config.toml)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)
    for group in GROUPS:
        group.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    for noisy in ("tortoise", "apscheduler", "aiosqlite"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        return args.run(args, load_config(args.config)) or 0
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
