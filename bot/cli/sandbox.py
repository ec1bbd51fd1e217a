"""`memberbot sandbox` and `memberbot chat`: the bot with local WeChat and SMS stand-ins, and a
WeChat user to talk to it."""

from __future__ import annotations

import argparse
import asyncio

from bot.config import Config
from bot.sandbox.chat import run_chat
from bot.sandbox.runner import run_sandbox


def register(commands: argparse._SubParsersAction) -> None:
    sandbox = commands.add_parser("sandbox",
                                  help="run with local WeChat and SMS stand-ins and demo data")
    sandbox.set_defaults(run=_run_sandbox, needs="none")
    chat = commands.add_parser("chat", help="act as a WeChat user against the sandbox")
    chat.add_argument("--openid", default="o_demo_1")
    chat.add_argument("--mode", choices=("aes", "compat", "plain"), default="aes")
    chat.set_defaults(run=_run_chat, needs="none")


def _run_sandbox(args: argparse.Namespace, config: Config) -> None:
    asyncio.run(run_sandbox(config))


def _run_chat(args: argparse.Namespace, config: Config) -> None:
    asyncio.run(run_chat(config, args.openid, args.mode))
