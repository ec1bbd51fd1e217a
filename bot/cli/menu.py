"""`memberbot menu push|show`: the Official Account's custom menu, from config.toml."""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from bot.cli.common import CliError, wechat_api
from bot.config import Config, ConfigError
from bot.notifications.wechat_api import WeChatAPIError


def register(commands: argparse._SubParsersAction) -> None:
    menu = commands.add_parser("menu", help="the Official Account's custom menu")
    actions = menu.add_subparsers(dest="action", required=True)
    actions.add_parser("push", help="publish the config's menu to WeChat").set_defaults(
        run=_run, needs="wechat")
    # Showing reads only the config: no secrets needed.
    actions.add_parser("show", help="print the menu WeChat would get").set_defaults(
        run=_run, needs="none")


def _run(args: argparse.Namespace, config: Config) -> None:
    asyncio.run(menu(config, args.action))


def menu_payload(config: Config) -> dict[str, Any]:
    buttons = config.menu.get("button")
    if not buttons:
        raise ConfigError("menu.button: no [[menu.button]] entries in the config")
    return {"button": buttons}


async def menu(config: Config, action: str) -> None:
    payload = menu_payload(config)
    if action == "show":
        print(json.dumps(payload, ensure_ascii=False, indent=2))
        return
    async with wechat_api(config) as api:
        try:
            await api.create_menu(payload)
        except WeChatAPIError as exc:
            raise CliError(f"WeChat refused the menu: {exc}") from None
    print(f"Menu published: {len(payload['button'])} buttons. "
          "WeChat clients show it within a few minutes (re-follow to see it at once).")
