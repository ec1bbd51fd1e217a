"""Shared fixtures: the bot on a real port, the WeChat and Aliyun stand-ins on real ports, and a
simulator that signs and encrypts callbacks exactly as WeChat does.

Every test gets a fresh database. `db_url` is SQLite by default, or PostgreSQL for the whole
suite with MEMBERBOT_TEST_DB=postgres (`make test` runs both passes). Tests parametrised over
`any_db` run on both in either pass' SQLite run. PostgreSQL is 127.0.0.1:5432/test; when it does
not answer, those runs skip with a reason.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import os
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bot.app import BOT, create_app
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
from bot.runtime import Bot
from bot.sandbox import wechat_client as wire
from bot.sandbox.sms_server import SMS_OUTBOX, SmsOutbox, create_sms_app
from bot.sandbox.wechat_server import WECHAT_STATE, WeChatState, create_wechat_app

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


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "postgres: also needs PostgreSQL at 127.0.0.1:5432")


async def reset_postgres(url: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url.replace("postgres://", "postgresql://", 1))
    try:
        await conn.execute("DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public;")
    finally:
        await conn.close()


@pytest.fixture(params=["sqlite", "postgres"])
def any_db(request: pytest.FixtureRequest) -> str:
    """Parametrise a test over both databases (PostgreSQL skips when it is not running). In the
    PostgreSQL pass of the suite these already ran: skip them rather than run them twice."""
    if SUITE_DB == "postgres":
        pytest.skip("runs in the SQLite pass, on both databases")
    return request.param


SUITE_DB = os.environ.get("MEMBERBOT_TEST_DB", "sqlite")


@pytest.fixture
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    wants_both = "any_db" in request.fixturenames
    kind = request.getfixturevalue("any_db") if wants_both else SUITE_DB
    if kind == "postgres":
        if not POSTGRES_UP:
            pytest.skip("PostgreSQL is not running on 127.0.0.1:5432 (CI runs these)")
        await reset_postgres(PG_URL)
        return PG_URL
    return f"sqlite://{tmp_path}/memberbot.db"


@dataclass
class StandIns:
    wechat: WeChatState
    sms: SmsOutbox
    wechat_url: str
    sms_url: str


@pytest.fixture
async def stand_ins() -> AsyncIterator[StandIns]:
    wechat_app = create_wechat_app(APP_ID, APP_SECRET)
    sms_app = create_sms_app(SMS_ID, SMS_SECRET, flow_control=False)
    wechat_server, sms_server = TestServer(wechat_app), TestServer(sms_app)
    await wechat_server.start_server()
    await sms_server.start_server()
    try:
        yield StandIns(wechat_app[WECHAT_STATE], sms_app[SMS_OUTBOX],
                       str(wechat_server.make_url("")).rstrip("/"),
                       str(sms_server.make_url("")).rstrip("/"))
    finally:
        await wechat_server.close()
        await sms_server.close()


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
    )
    return config.replace(**overrides) if overrides else config


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


@pytest.fixture
async def harness_factory(db_url: str, stand_ins: StandIns):
    """Build the bot with config overrides: `h = await harness_factory(reply_timeout=1)`."""
    started: list[TestServer] = []
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15))

    async def build(mode: str = "aes", **overrides: Any) -> Harness:
        clock = Clock()
        config = make_config(db_url, stand_ins, **overrides)
        server = TestServer(create_app(config, clock=clock))
        await server.start_server()
        started.append(server)
        return Harness(config, server, session, stand_ins, clock, mode)

    try:
        yield build
    finally:
        for server in started:
            await server.close()
        await session.close()


@pytest.fixture
async def harness(harness_factory) -> Harness:
    return await harness_factory()


def fixture_xml(name: str) -> str:
    return (FIXTURES / "wechat" / name).read_text(encoding="utf-8")


async def settle(seconds: float = 0.05) -> None:
    """Let background tasks (welcome SMS, deferred replies) run."""
    await asyncio.sleep(seconds)


__all__ = ["Harness", "fixture_xml", "settle", "web"]
