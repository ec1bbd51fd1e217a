"""`memberbot console link`: a one-time login link, printed for an employee."""

from __future__ import annotations

import re

import aiohttp

from bot.config import SecurityConfig
from tests.cli import test_staff
from tests.cli.test_staff import DATA_KEY, output, shop_db
from tests.support import add_staff

# The shell's fixtures (a config file on the test database, `memberbot` in-process).
cli_config, run_cli_fixture = test_staff.cli_config, test_staff.run_cli


async def test_console_link_prints_a_link_that_logs_in_once(run_cli_fixture, capsys, db_url,
                                                            harness_factory):
    async with shop_db(db_url):
        boss = await add_staff("o_boss", "owner", name="老板")
    assert await run_cli_fixture("console", "link", "--staff", str(boss.id)) == 0
    out, _ = output(capsys)
    link = out.strip().splitlines()[-1]
    match = re.fullmatch(r"http://127\.0\.0\.1:8080(/console/login/[A-Za-z0-9_\-]{32})", link)
    assert match, out
    assert "usable once" in out
    h = await harness_factory(security=SecurityConfig(DATA_KEY))
    base = str(h.server.make_url("")).rstrip("/")
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        for expected in (303, 410):
            async with browser.post(base + match[1], headers={"Origin": base},
                                    allow_redirects=False) as response:
                assert response.status == expected


async def test_console_link_refuses_someone_not_active_staff(run_cli_fixture, capsys, db_url):
    assert await run_cli_fixture("console", "link", "--staff", "99") == 2
    assert "no active staff with id 99" in output(capsys)[1]
