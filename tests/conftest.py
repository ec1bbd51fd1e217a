"""The fixtures: a fresh database per test, the WeChat and Aliyun stand-ins on real ports, and the
bot on a real port behind a Harness (tests/support.py) that signs and encrypts as WeChat does."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from bot.app import create_app
from bot.sandbox.sms_server import SMS_OUTBOX, create_sms_app
from bot.sandbox.wechat_server import WECHAT_STATE, create_wechat_app
from tests.support import (
    APP_ID,
    APP_SECRET,
    PG_URL,
    POSTGRES_UP,
    SMS_ID,
    SMS_SECRET,
    STEADY_POINTS,
    SUITE_DB,
    Clock,
    Harness,
    StandIns,
    make_config,
    reset_postgres,
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "postgres: also needs PostgreSQL at 127.0.0.1:5432")


@pytest.fixture(params=["sqlite", "postgres"])
def any_db(request: pytest.FixtureRequest) -> str:
    """Parametrise a test over both databases (PostgreSQL skips when it is not running). In the
    PostgreSQL pass of the suite these already ran: skip them rather than run them twice."""
    if SUITE_DB == "postgres":
        pytest.skip("runs in the SQLite pass, on both databases")
    return request.param


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
async def shop(harness_factory) -> Harness:
    """The bot with points that do not depend on the weekday (no member day)."""
    return await harness_factory(points=STEADY_POINTS)


@pytest.fixture
async def harness(harness_factory) -> Harness:
    return await harness_factory()
