"""The browser tests' fixtures: Debian's Chromium driven headless by Playwright, one browser for
the package and a new context (cookies, storage) for each test; and the real app on a real
port with the WeChat and SMS stand-ins, as in tests/conftest.py.

Playwright's async API lives on one event loop, so everything here runs on the package's loop
(pytest-asyncio's loop_scope="package"): the browser, each test and the app it talks to. That
is why `shop` (alias `harness`) and `db_url` are defined again here: the suite's own are on each
test's loop. Without Chromium or Playwright every test here skips, with the reason.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp.test_utils import TestServer

from bot.app import create_app
from bot.sandbox.sms_server import SMS_OUTBOX, create_sms_app
from bot.sandbox.wechat_server import WECHAT_STATE, create_wechat_app
from tests.browser.support import find_chromium, track
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

LOOP = "package"
HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every async test in this folder runs on the package's loop, with the browser."""
    marker = pytest.mark.asyncio(loop_scope=LOOP)
    for item in items:
        if item.path.is_relative_to(HERE) and pytest_asyncio.is_async_test(item):
            item.add_marker(marker, append=False)


@pytest_asyncio.fixture(scope=LOOP, loop_scope=LOOP)
async def chromium() -> AsyncIterator[Any]:
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        pytest.skip("Playwright is not installed (pip install -e '.[dev]')")
    executable, reason = find_chromium()
    if executable is None:
        pytest.skip(reason)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=executable, headless=True,
            # A container's /dev/shm is often 64 MB: too small for Chromium's renderers.
            args=["--disable-dev-shm-usage"])
        try:
            yield browser
        finally:
            await browser.close()


@pytest_asyncio.fixture(loop_scope=LOOP)
async def db_url(tmp_path: Path) -> str:
    if SUITE_DB == "postgres":
        if not POSTGRES_UP:
            pytest.skip("PostgreSQL is not running on 127.0.0.1:5432 (CI runs these)")
        await reset_postgres(PG_URL)
        return PG_URL
    return f"sqlite://{tmp_path}/memberbot.db"


async def _serve(db_url: str, **overrides: Any) -> AsyncIterator[Harness]:
    wechat_app = create_wechat_app(APP_ID, APP_SECRET)
    sms_app = create_sms_app(SMS_ID, SMS_SECRET, flow_control=False)
    wechat_server, sms_server = TestServer(wechat_app), TestServer(sms_app)
    await wechat_server.start_server()
    await sms_server.start_server()
    stand_ins = StandIns(wechat_app[WECHAT_STATE], sms_app[SMS_OUTBOX],
                         str(wechat_server.make_url("")).rstrip("/"),
                         str(sms_server.make_url("")).rstrip("/"))
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15))
    clock = Clock()
    config = make_config(db_url, stand_ins, **overrides)
    server = TestServer(create_app(config, clock=clock))
    try:
        await server.start_server()
        yield Harness(config, server, session, stand_ins, clock)
    finally:
        await server.close()
        await session.close()
        await wechat_server.close()
        await sms_server.close()


@pytest_asyncio.fixture(loop_scope=LOOP)
async def shop(db_url: str) -> AsyncIterator[Harness]:
    """The bot on a real port, as a browser reaches it (points without a member day, so that
    they do not depend on the weekday)."""
    async for h in _serve(db_url, points=STEADY_POINTS):
        yield h


@pytest_asyncio.fixture(loop_scope=LOOP)
async def harness(shop: Harness) -> Harness:
    """The same app under the suite's other name: a test here has one app, on this loop."""
    return shop


DESKTOP = {"locale": "zh-CN", "timezone_id": "Asia/Shanghai",
           "viewport": {"width": 1280, "height": 800}}


@pytest_asyncio.fixture(loop_scope=LOOP)
async def new_page(chromium, shop: Harness, request: pytest.FixtureRequest
                   ) -> AsyncIterator[Callable[..., Awaitable[Any]]]:
    """Open a page in a fresh browser profile (cookies, storage) against the test's app
    (`page.goto("/console/")`): a desktop window in Chinese, or what the options say
    (`await new_page(**PHONE)`: WeChat on a phone). Closed after the test."""
    contexts: list[Any] = []

    async def open_page(**options: Any) -> Any:
        context = await chromium.new_context(
            **{"base_url": str(shop.server.make_url("")).rstrip("/"), **DESKTOP, **options})
        contexts.append(context)
        context.set_default_timeout(10_000)
        opened = await context.new_page()
        track(opened, request.node.name)
        return opened

    try:
        yield open_page
    finally:
        for context in contexts:
            await context.close()


@pytest_asyncio.fixture(loop_scope=LOOP)
async def page(new_page) -> Any:
    """The test's browser page, a desktop window (more: the `new_page` fixture)."""
    return await new_page()
