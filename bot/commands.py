"""What the CLI's subcommands do, apart from argument parsing."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from bot.app import create_app
from bot.config import Config, ConfigError
from bot.db import close_database, open_database
from bot.models import Store
from bot.notifications.wechat_api import WeChatAPI, WeChatAPIError
from bot.poster import render_poster
from bot.services.members import parse_scene

log = logging.getLogger("memberbot")

MAX_TEMPORARY_EXPIRE = 2_592_000  # 30 days, WeChat's limit


def _write(path: Path, content: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)


def serve(config: Config) -> int:
    log.info("memberbot listening on http://%s:%d/wechat", config.server.host, config.server.port)
    web.run_app(create_app(config), host=config.server.host, port=config.server.port,
                access_log=None, print=None)
    return 0


@contextlib.asynccontextmanager
async def wechat_api(config: Config) -> AsyncIterator[WeChatAPI]:
    """The API client with the database open (the access token is shared through it)."""
    if not (config.wechat.app_id and config.wechat.app_secret):
        raise ConfigError("wechat.app_id and wechat.app_secret are needed to call WeChat")
    await open_database(config.database.url)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session:
            yield WeChatAPI(session, config.wechat)
    finally:
        await close_database()


def menu_payload(config: Config) -> dict[str, Any]:
    buttons = config.menu.get("button")
    if not buttons:
        raise ConfigError("menu.button: no [[menu.button]] entries in the config")
    return {"button": buttons}


async def menu(config: Config, action: str) -> int:
    payload = menu_payload(config)
    if action == "show":
        print(json.dumps(payload, ensure_ascii=False, indent=2))
        return 0
    async with wechat_api(config) as api:
        try:
            await api.create_menu(payload)
        except WeChatAPIError as exc:
            print(f"WeChat refused the menu: {exc}")
            return 1
    print(f"Menu published: {len(payload['button'])} buttons. "
          "WeChat clients show it within a few minutes (re-follow to see it at once).")
    return 0


async def qrcode(config: Config, scene: str, output: Path, temporary: bool, expire: int,
                 caption: str | None) -> int:
    parsed = parse_scene(scene)
    if parsed is None:
        print("--scene must look like store:S001, staff:<id> or ref:<card_no> (at most 64 "
              "characters, letters, digits, _ and -)")
        return 2
    if temporary and not 60 <= expire <= MAX_TEMPORARY_EXPIRE:
        print(f"--expire must be between 60 and {MAX_TEMPORARY_EXPIRE} seconds (30 days)")
        return 2
    async with wechat_api(config) as api:
        try:
            result = await api.create_qrcode(scene, temporary=temporary, expire_seconds=expire)
        except WeChatAPIError as exc:
            print(f"WeChat refused the QR code: {exc}")
            return 1
        if caption is None:
            store = await Store.get_or_none(code=parsed.value) if parsed.kind == "store" else None
            caption = f"{store.name if store else config.shop.name} 扫码加入会员"
    subcaption = ""
    if temporary:
        days, hours = divmod(expire // 3600, 24)
        subcaption = f"{days} 天内有效" if days >= 2 else f"{days * 24 + hours or 1} 小时内有效"
    png = await asyncio.to_thread(render_poster, result["url"], caption, subcaption)
    await asyncio.to_thread(_write, output, png)
    kind = f"temporary ({expire} s)" if temporary else "permanent"
    print(f"Wrote {output}: {kind} QR code for scene {scene}")
    return 0
