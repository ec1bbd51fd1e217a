"""What tests share besides fixtures: the test credentials, the repository's config, a settable
clock, and the Harness that talks to the bot as WeChat does. Fixtures are in conftest.py.

Every test gets a fresh database. `db_url` is SQLite by default, or PostgreSQL for the whole
suite with MEMBERBOT_TEST_DB=postgres (`make test` runs both passes). Tests parametrised over
`any_db` run on both in the SQLite pass. PostgreSQL is 127.0.0.1:5432/test (or
MEMBERBOT_TEST_POSTGRES); when it does not answer, those runs skip with a reason.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import os
import socket
import sqlite3
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer

from bot.app import BOT
from bot.config import (
    Config,
    DatabaseConfig,
    SchedulerConfig,
    SecurityConfig,
    ServerConfig,
    ShopConfig,
    SmsConfig,
    StoreConfig,
    WeChatConfig,
    load_config,
)
from bot.infra.vault import new_data_key
from bot.models import Staff, Store
from bot.runtime import Bot
from bot.sandbox import wechat_client as wire
from bot.sandbox.sms_server import SmsOutbox
from bot.sandbox.wechat_server import WeChatState

# WeChat and Aliyun message samples (copied from the project's shared fixtures).
FIXTURES = Path(__file__).resolve().parent / "fixtures"
PG_URL = os.environ.get("MEMBERBOT_TEST_POSTGRES", "postgres://postgres@127.0.0.1:5432/test")
APP_ID = "wx1234567890abcdef"
APP_SECRET = "test-app-secret"
TOKEN = "testtoken123"
AES_KEY = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aQ"
SMS_ID, SMS_SECRET = "LTAItestKeyId", "test-key-secret"


# The repository's config.toml, read once; tests start from it.
REPO_CONFIG = load_config(Path(__file__).resolve().parent.parent / "config.toml", environ={})
# No member day: points are then the same whatever weekday the suite runs on.
STEADY_POINTS = dataclasses.replace(REPO_CONFIG.points, member_day=0)


def _port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


POSTGRES_UP = _port_open("127.0.0.1", 5432)
REDIS_UP = _port_open("127.0.0.1", 6379)


async def reset_postgres(url: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url.replace("postgres://", "postgresql://", 1))
    try:
        await conn.execute("DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public;")
    finally:
        await conn.close()


SUITE_DB = os.environ.get("MEMBERBOT_TEST_DB", "sqlite")


@dataclass
class StandIns:
    wechat: WeChatState
    sms: SmsOutbox
    wechat_url: str
    sms_url: str


def make_config(db_url: str, stand_ins: StandIns | None = None, **overrides: Any) -> Config:
    base = REPO_CONFIG
    config = base.replace(
        server=ServerConfig(reply_timeout=overrides.pop("reply_timeout", 4.0)),
        database=DatabaseConfig(db_url),
        wechat=WeChatConfig(app_id=APP_ID, app_secret=APP_SECRET, token=TOKEN,
                            encoding_aes_key=AES_KEY,
                            api_base_url=stand_ins.wechat_url if stand_ins else "http://127.0.0.1:9"),
        sms=SmsConfig(access_key_id=SMS_ID, access_key_secret=SMS_SECRET, sign_name="示例门店",
                      endpoint=stand_ins.sms_url if stand_ins else "http://127.0.0.1:9",
                      template_verify="SMS_VERIFY", template_welcome="SMS_WELCOME"),
        security=SecurityConfig(data_key=new_data_key()),
        shop=ShopConfig(**{**base.shop.__dict__, **overrides.pop("shop", {})}),
        stores=[StoreConfig("S001", "示例门店·总店"), StoreConfig("S002", "示例门店·二店")],
        # Tests that exercise jobs run them directly; a background catch-up would race them.
        scheduler=SchedulerConfig(enabled=False),
        # The question after a visit is a second message after every purchase and arrival:
        # the tests that want it turn it on (tests/handlers/test_ratings.py).
        ratings=dataclasses.replace(base.ratings, ask=False),
    )
    return config.replace(**overrides) if overrides else config


# The shop's zone in the repository's config (fixed +08:00: China keeps no summer time).
SHANGHAI = dt.timezone(dt.timedelta(hours=8))


def at_local(clock: Clock, day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
    """Move the clock so that it reads `day hour:minute` in the shop's time zone."""
    target = dt.datetime.combine(day, dt.time(hour, minute), SHANGHAI)
    clock.offset = target - dt.datetime.now(dt.UTC)
    return target


class Clock:
    """A settable clock for the bot (real time plus an offset)."""

    def __init__(self) -> None:
        self.offset = dt.timedelta(0)

    def __call__(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC) + self.offset

    def advance(self, **delta: float) -> None:
        self.offset += dt.timedelta(**delta)


@dataclass
class Harness:
    """The bot on a port, plus everything a test needs to talk to it as WeChat does."""

    config: Config
    server: TestServer
    session: aiohttp.ClientSession
    stand_ins: StandIns
    clock: Clock
    mode: str = "aes"
    simulator: wire.WeChatSimulator = field(init=False)

    def __post_init__(self) -> None:
        self.simulator = wire.WeChatSimulator(self.config.wechat, self.mode,
                                              clock=lambda: self.clock().timestamp())

    @property
    def url(self) -> str:
        return str(self.server.make_url("/wechat"))

    @property
    def bot(self) -> Bot:
        return self.server.app[BOT]

    async def post(self, xml: str) -> dict | None:
        """Send one callback; the reply's fields (decrypted), or None for "success"."""
        return await self.simulator.post(self.session, self.url, xml)

    async def say(self, openid: str, text: str) -> str | None:
        reply = await self.post(wire.text(openid, text))
        return reply.get("Content") if reply else None

    async def raw(self, params: dict[str, str], body: bytes, method: str = "POST",
                  headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        async with self.session.request(method, self.url, params=params, data=body,
                                        headers=headers) as response:
            return response.status, await response.read()

    async def settle(self, within: float = 10) -> None:
        """Wait for the bot's background work (see settle below)."""
        await settle(self.bot, within)

    def sms_codes(self, phone: str) -> list[str]:
        return [m["params"]["code"] for m in self.stand_ins.sms.messages
                if m["phone"] == phone and "code" in m["params"]]

    async def register(self, openid: str, phone: str, name: str = "王小明",
                       birthday: str = "跳过", scene: str = "store:S001") -> str | None:
        """Walk the whole registration dialog; returns the final reply."""
        await self.post(wire.event(openid, "subscribe", f"qrscene_{scene}"))
        await self.say(openid, "同意")
        await self.say(openid, phone)
        await self.say(openid, self.sms_codes(phone)[-1])
        await self.say(openid, name)
        return await self.say(openid, birthday)


async def add_staff(openid: str, role: str, store: str = "S001", name: str = "") -> Staff:
    """A staff row straight in the database (binding itself is tested over chat)."""
    return await Staff.create(openid=openid, role=role, name=name,
                              store=await Store.get(code=store))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def worker_env(db_url: str, stand_ins: StandIns, *, redis_url: str = "",
               redis_prefix: str = "memberbot", scheduler: bool = False) -> dict[str, str]:
    """The environment of a real `memberbot serve` process for the tests that start one: the
    test credentials, the stand-ins, a fresh data key."""
    return {
        **os.environ,
        "MEMBERBOT_DATABASE_URL": db_url,
        "MEMBERBOT_REDIS_URL": redis_url,
        "MEMBERBOT_REDIS_PREFIX": redis_prefix,
        "MEMBERBOT_WECHAT_APP_ID": APP_ID,
        "MEMBERBOT_WECHAT_APP_SECRET": APP_SECRET,
        "MEMBERBOT_WECHAT_TOKEN": TOKEN,
        "MEMBERBOT_WECHAT_ENCODING_AES_KEY": AES_KEY,
        "MEMBERBOT_WECHAT_API_BASE_URL": stand_ins.wechat_url,
        "MEMBERBOT_SMS_ACCESS_KEY_ID": SMS_ID,
        "MEMBERBOT_SMS_ACCESS_KEY_SECRET": SMS_SECRET,
        "MEMBERBOT_SMS_SIGN_NAME": "示例门店",
        "MEMBERBOT_SMS_ENDPOINT": stand_ins.sms_url,
        "MEMBERBOT_SMS_TEMPLATE_VERIFY": "SMS_VERIFY",
        "MEMBERBOT_SMS_TEMPLATE_WELCOME": "SMS_WELCOME",
        "MEMBERBOT_SECURITY_DATA_KEY": new_data_key(),
        "MEMBERBOT_SCHEDULER_ENABLED": "true" if scheduler else "false",
    }


def fixture_xml(name: str) -> str:
    return (FIXTURES / "wechat" / name).read_text(encoding="utf-8")


async def settle(bot: Bot, within: float = 10) -> None:
    """Wait until the bot's background work is done: every task it spawned (welcome SMS,
    notices, deferred replies, the scheduler's catch-up), the deliveries they make, and any
    task those spawn in turn. Fails when something is still running after `within` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    # Bot.drain waits once, for what is running now; a task may spawn another meanwhile.
    while pending := {task for task in bot._tasks if not task.done()}:
        if loop.time() >= deadline:
            names = sorted(task.get_name() for task in pending)
            raise AssertionError(f"background work still running after {within}s: {names}")
        await asyncio.wait(pending, timeout=deadline - loop.time())
    await asyncio.sleep(0)  # the tasks' done callbacks (which log a failure) run now


class WriteLock:
    """Another process's writer on a SQLite file: holds the write lock, with a write in it,
    from entering until `release` is set (then commits)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.taken, self.release = threading.Event(), threading.Event()
        self.thread = threading.Thread(target=self._hold)

    def _hold(self) -> None:
        conn = sqlite3.connect(self.path, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("UPDATE store SET name = name || '' WHERE code = 'S001'")
            self.taken.set()
            self.release.wait(10)
            conn.execute("COMMIT")
        finally:
            conn.close()

    def __enter__(self) -> WriteLock:
        self.thread.start()
        assert self.taken.wait(5)
        return self

    def __exit__(self, *exc) -> None:
        self.release.set()
        self.thread.join()
