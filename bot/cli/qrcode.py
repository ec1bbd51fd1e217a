"""`memberbot qrcode`: a printable poster with a parametric QR code (store, staff or referral)."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from bot.cli.common import CliError, wechat_api
from bot.config import Config
from bot.infra.templates import Templates
from bot.models import CouponTemplate, Store
from bot.notifications.poster import render_poster
from bot.notifications.wechat_api import WeChatAPIError
from bot.services import members

MAX_TEMPORARY_EXPIRE = 2_592_000  # 30 days, WeChat's limit


def register(commands: argparse._SubParsersAction) -> None:
    qr = commands.add_parser("qrcode", help="a printable parametric QR code (PNG)")
    qr.add_argument("--scene", required=True, help="store:S001, staff:<id> or ref:<card_no>")
    qr.add_argument("-o", "--output", required=True, help="PNG file to write")
    qr.add_argument("--temporary", action="store_true",
                    help="a temporary code (default: permanent)")
    qr.add_argument("--expire", type=int, default=MAX_TEMPORARY_EXPIRE,
                    help="seconds a temporary code lives (at most 2592000 = 30 days)")
    qr.add_argument("--caption", help="text under the code (default: the store's name)")
    qr.set_defaults(run=_run, needs="wechat")


def _run(args: argparse.Namespace, config: Config) -> None:
    asyncio.run(qrcode(config, args.scene, Path(args.output), args.temporary, args.expire,
                       args.caption))


async def qrcode(config: Config, scene: str, output: Path, temporary: bool, expire: int,
                 caption: str | None) -> None:
    parsed = members.parse_scene(scene)
    if parsed is None:
        raise CliError("--scene must look like store:S001, staff:<id> or ref:<card_no> (at most "
                       "64 characters, letters, digits, _ and -)", 2)
    if temporary and not 60 <= expire <= MAX_TEMPORARY_EXPIRE:
        raise CliError(f"--expire must be between 60 and {MAX_TEMPORARY_EXPIRE} seconds "
                       "(30 days)", 2)
    async with wechat_api(config) as api:
        try:
            result = await api.create_qrcode(scene, temporary=temporary, expire_seconds=expire)
        except WeChatAPIError as exc:
            raise CliError(f"WeChat refused the QR code: {exc}") from None
        if caption is None:
            store = await Store.get_or_none(code=parsed.value) if parsed.kind == "store" else None
            caption = f"{store.name if store else config.shop.name} 扫码加入会员"
        welcome = config.coupon_rewards.welcome
        coupon = await CouponTemplate.get_or_none(code=welcome) if welcome else None
        perks = Templates({"shop": config.shop}).render(
            "poster_perks.j2", points=config.shop.welcome_points, coupon=coupon)
    subcaption = ""
    if temporary:
        days, hours = divmod(expire // 3600, 24)
        subcaption = f"{days} 天内有效" if days >= 2 else f"{days * 24 + hours or 1} 小时内有效"
    png = await asyncio.to_thread(render_poster, result["url"], caption, subcaption,
                                  title=config.shop.name, perks=perks)
    await asyncio.to_thread(_write, output, png)
    kind = f"temporary ({expire} s)" if temporary else "permanent"
    print(f"Wrote {output}: {kind} QR code for scene {scene}")


def _write(path: Path, content: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
