"""`memberbot sandbox`: the bot with local stand-ins for WeChat and Aliyun SMS, demo data, and no
credentials. The bot's real client code talks to the stand-ins over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import replace
from pathlib import Path

from aiohttp import web

from bot.app import BOT, create_app
from bot.clock import local_today, utcnow
from bot.config import Config, DatabaseConfig, StoreConfig, WeChatConfig
from bot.infra.db import IntegrityError
from bot.infra.vault import Vault, new_data_key
from bot.models import Follower, Member, PointsKind, Role, Staff, Store
from bot.notifications import notices
from bot.sandbox.crowd import CROWD_SIZE, crowd_openid, phone_of_openid, seed_crowd
from bot.sandbox.demo_shop import (
    DEMO_MANAGER_2,
    DEMO_OWNER,
    SECOND_STORE,
    seed_bookings,
    seed_ratings,
    seed_staff,
)
from bot.sandbox.sms_server import create_sms_app
from bot.sandbox.wechat_server import WECHAT_STATE, create_wechat_app
from bot.services import loyalty, members

log = logging.getLogger("memberbot.sandbox")

# Fixed, public sandbox credentials: `memberbot chat` signs with the same ones.
APP_ID = "wx5a9d1e0sandbox01"
APP_SECRET = "sandbox-app-secret"
TOKEN = "memberbotSandbox"
ENCODING_AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
SMS_KEY_ID = "LTAIsandboxKeyId"
SMS_KEY_SECRET = "sandbox-key-secret"
TEMPLATE_VERIFY = "SMS_100000001"
TEMPLATE_WELCOME = "SMS_100000002"
TEMPLATE_NOTICE = "SMS_100000003"
TEMPLATE_MARKETING = "SMS_100000004"


def ports(config: Config) -> tuple[int, int, int]:
    """Bot, WeChat stand-in, SMS stand-in."""
    base = config.server.port
    return base, base + 1, base + 2


def data_key(data_dir: Path) -> str:
    """The sandbox's own data key, made on first run and kept beside its database."""
    path = data_dir / "sandbox.key"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(new_data_key())
        path.chmod(0o600)
    return path.read_text().strip()


def sandbox_config(config: Config, data_dir: Path = Path("data")) -> Config:
    _, wechat_port, sms_port = ports(config)
    host = "127.0.0.1"
    return config.replace(
        wechat=WeChatConfig(app_id=APP_ID, app_secret=APP_SECRET, token=TOKEN,
                            encoding_aes_key=ENCODING_AES_KEY,
                            api_base_url=f"http://{host}:{wechat_port}"),
        sms=replace(config.sms, access_key_id=SMS_KEY_ID, access_key_secret=SMS_KEY_SECRET,
                    sign_name=config.shop.name, endpoint=f"http://{host}:{sms_port}",
                    template_verify=TEMPLATE_VERIFY, template_welcome=TEMPLATE_WELCOME,
                    template_marketing=TEMPLATE_MARKETING),
        security=replace(config.security, data_key=data_key(data_dir)),
        database=DatabaseConfig(f"sqlite://{data_dir}/sandbox.db"),
        notices=SANDBOX_NOTICES,
        stores=with_second_store(config.stores),
    )


def with_second_store(stores: list[StoreConfig]) -> list[StoreConfig]:
    """A shop with one store gets a second in the sandbox, so a manager's view of the console
    (their store only) differs from the owner's."""
    if len(stores) != 1:
        return stores
    return [*stores, StoreConfig(*SECOND_STORE)]


# Service notices with their own template message fields and an SMS, so a member with no open
# chat window, or who does not follow, still hears what happened to their account.
SANDBOX_NOTICES = {
    purpose: {"template_id": f"TPL_{purpose.upper()}", "fields": {f: f for f in fields},
              "sms_template": TEMPLATE_NOTICE, "sms_params": {f: f for f in fields}}
    for purpose, fields in notices.FIELDS.items()
}
DEMO_STAFF = "o_demo_staff"  # a manager of the first store: try 消费 13900139001 128.50
DEMO_MEMBERS = [
    # (openid or None, phone, name, points): the last one has no WeChat yet, so registering
    # with 13800138000 in the chat shows how an existing card gets linked.
    ("o_demo_member_1", "13900139001", "王女士", 1280),
    ("o_demo_member_2", "13900139002", "李先生", 360),
    (None, "13800138000", "陈女士", 520),
]


def demo_phone(openid: str) -> str | None:
    """The phone number of a seeded demo member's WeChat account (None for any other)."""
    for demo_openid, phone, _, _ in DEMO_MEMBERS:
        if demo_openid == openid:
            return phone
    return phone_of_openid(openid)


async def seed_demo(config: Config) -> None:
    """Demo members for the chat to find; safe to run on every start."""
    vault = Vault(config.security.data_key_bytes)
    store = await Store.all().order_by("id").first()
    for openid, phone, name, points in DEMO_MEMBERS:
        if await Member.exists(phone_hash=vault.lookup_hash(phone)):
            continue
        try:
            member = await members.create_member(
                vault, config.shop.card_prefix, phone, name=name,
                store_id=store.id if store else None, tier=config.tiers[0].name)
        except IntegrityError:
            continue
        await loyalty.post_points(member.id, points, kind=PointsKind.ADJUST,
                                  reason="演示数据初始积分", key=f"sandbox-seed:{member.id}")
        if openid:
            await Follower.update_or_create(defaults={"member_id": member.id, "following": True},
                                            openid=openid)
    if store and not await Staff.exists(openid=DEMO_STAFF):
        await Staff.create(openid=DEMO_STAFF, name="小王", store=store, role=Role.MANAGER)
        await members.ensure_follower(DEMO_STAFF)
    if store:
        await seed_staff(store)
    await seed_crowd(config, vault, local_today(utcnow(), config.shop.tz))


async def run_sandbox(config: Config, data_dir: Path = Path("data")) -> None:
    config = sandbox_config(config, data_dir)
    bot_port, wechat_port, sms_port = ports(config)
    host = config.server.host
    runners = []
    wechat = create_wechat_app(APP_ID, APP_SECRET)
    # Mass sends end with a MASSSENDJOBFINISH event posted to the bot, as WeChat does.
    wechat[WECHAT_STATE].set_webhook(f"http://127.0.0.1:{bot_port}/wechat", config.wechat)
    try:  # from the first runner on, so a port in use leaves nothing running
        for app, bind, port in (
            (wechat, "127.0.0.1", wechat_port),
            (create_sms_app(SMS_KEY_ID, SMS_KEY_SECRET, flow_control=False), "127.0.0.1", sms_port),
            (create_app(config), host, bot_port),
        ):
            runner = web.AppRunner(app, access_log=None)
            runners.append(runner)
            await runner.setup()
            await web.TCPSite(runner, bind, port).start()
        await seed_demo(config)
        bot = runners[-1].app[BOT]
        await seed_bookings(bot)
        await seed_ratings(bot)
        print(
            f"\nmemberbot sandbox is running: http://127.0.0.1:{bot_port}/wechat\n"
            f"  WeChat API stand-in  http://127.0.0.1:{wechat_port}\n"
            f"  Aliyun SMS stand-in  http://127.0.0.1:{sms_port}\n\n"
            "In another terminal, act as a customer:\n"
            "  .venv/bin/memberbot chat --openid o_demo_1\n"
            "then type /scan store:S001 and follow the bot. Codes the bot texts appear here "
            "and in\n"
            "the chat. Demo members: o_demo_member_1 and o_demo_member_2 (try 积分, or book: "
            "预约 洗剪吹 明天 15:00).\n"
            f"Act as staff with --openid {DEMO_STAFF} (a manager): 员工帮助, "
            "消费 13900139001 128.50, 查询 13900139001, 今日预约, 上班 (then a member's 人工 "
            "reaches you: 回复 <n> <文字>).\n"
            f"{CROWD_SIZE} more demo members in every tier ({crowd_openid(1)} …) are there to "
            "try a campaign:\n"
            "  .venv/bin/memberbot --sandbox broadcast create --segment tier=金卡会员 "
            "--text \"本周末会员日全场9折\"\n"
            "or, as the manager in the chat: 群发 金卡会员 本周末会员日全场9折\n"
            f"The owner's web console: http://127.0.0.1:{bot_port}/console/ shows a QR code; "
            "scan it from a chat\n"
            f"  .venv/bin/memberbot chat --openid {DEMO_OWNER}   (the owner; then type the "
            "/scan login:… the page shows)\n"
            f"or as {DEMO_STAFF} (manager of the first store) or {DEMO_MANAGER_2} (manager of "
            f"{SECOND_STORE[1]}: only that store).\n"
            "Owner commands work on this sandbox with --sandbox first, e.g.\n"
            "  .venv/bin/memberbot --sandbox staff invite --store S001 --role clerk\n"
            "Press Ctrl+C to stop.\n",
            flush=True,
        )
        await asyncio.Event().wait()
    finally:
        for runner in reversed(runners):
            with contextlib.suppress(Exception):
                await runner.cleanup()
