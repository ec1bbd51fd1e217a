"""The `memberbot` command."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from bot.config import Config, ConfigError, load_config, validate_for_serving

log = logging.getLogger("memberbot")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="memberbot", description=__doc__)
    parser.add_argument("--config", help="path to config.toml (default: ./config.toml)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)

    commands.add_parser("serve", help="run the webhook server")
    commands.add_parser("sandbox", help="run with local WeChat and SMS stand-ins and demo data")

    chat = commands.add_parser("chat", help="act as a WeChat user against the sandbox")
    chat.add_argument("--openid", default="o_demo_1")
    chat.add_argument("--mode", choices=("aes", "compat", "plain"), default="aes")

    menu = commands.add_parser("menu", help="the Official Account's custom menu")
    menu.add_argument("action", choices=("push", "show"))

    qr = commands.add_parser("qrcode", help="a printable parametric QR code (PNG)")
    qr.add_argument("--scene", required=True, help="store:S001, staff:<id> or ref:<card_no>")
    qr.add_argument("-o", "--output", required=True, help="PNG file to write")
    qr.add_argument("--temporary", action="store_true",
                    help="a temporary code (default: permanent)")
    qr.add_argument("--expire", type=int, default=2_592_000,
                    help="seconds a temporary code lives (at most 2592000 = 30 days)")
    qr.add_argument("--caption", help="text under the code (default: the store's name)")

    security = commands.add_parser("security", help="keys")
    security.add_argument("action", choices=("new-key",))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    logging.getLogger("tortoise").setLevel(logging.WARNING)
    try:
        config = load_config(args.config)
        return _run(args, config)
    except ConfigError as exc:
        print(f"memberbot: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except OSError as exc:  # e.g. the port is taken by another program
        print(f"memberbot: {exc.strerror or exc}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace, config: Config) -> int:
    from bot import commands

    match args.command:
        case "serve":
            validate_for_serving(config)
            return commands.serve(config)
        case "sandbox":
            from bot.sandbox.runner import run_sandbox

            asyncio.run(run_sandbox(config))
            return 0
        case "chat":
            from bot.sandbox.chat import run_chat

            asyncio.run(run_chat(config, args.openid, args.mode))
            return 0
        case "menu":
            return asyncio.run(commands.menu(config, args.action))
        case "qrcode":
            return asyncio.run(commands.qrcode(config, args.scene, Path(args.output),
                                               args.temporary, args.expire, args.caption))
        case "security":
            from bot.security import new_data_key

            print(new_data_key())
            return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
