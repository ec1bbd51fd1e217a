"""A browser for the console tests: its own cookie jar (the test server is 127.0.0.1, which
aiohttp's default jar refuses cookies from) and a User-Agent, logged in by QR or by link."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field

import aiohttp

from bot.sandbox import wechat_client as wire
from bot.services import console_auth
from tests.support import Harness, add_staff

CHROME = ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like "
          "Gecko) Chrome/120.0.0.0 Safari/537.36")


@dataclass
class Page:
    status: int
    text: str
    headers: dict[str, str]
    set_cookies: list[str] = field(default_factory=list)


class Browser:
    def __init__(self, h: Harness, user_agent: str = CHROME):
        self.h = h
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True),
                                          headers={"User-Agent": user_agent})
        self.origin = str(h.server.make_url("")).rstrip("/")

    async def close(self) -> None:
        await self.http.close()

    async def _page(self, response: aiohttp.ClientResponse) -> Page:
        return Page(response.status, await response.text(), dict(response.headers),
                    response.headers.getall("Set-Cookie", []))

    async def get(self, path: str, **kw) -> Page:
        async with self.http.get(self.origin + path, allow_redirects=False, **kw) as response:
            return await self._page(response)

    async def post(self, path: str, *, origin: str | None = "same", token: str | None = None,
                   headers: dict[str, str] | None = None, **kw) -> Page:
        """A POST as the console's page sends it: from its origin, with the CSRF token."""
        sent = dict(headers or {})
        if origin is not None:
            sent["Origin"] = self.origin if origin == "same" else origin
        if token is not None:
            sent["X-CSRF-Token"] = token
        async with self.http.post(self.origin + path, headers=sent, allow_redirects=False,
                                  **kw) as response:
            return await self._page(response)

    def cookie(self, name: str) -> str | None:
        for morsel in self.http.cookie_jar:
            if morsel.key == name:
                return morsel.value
        return None

    async def open_login(self) -> str:
        """/console's QR login page; the scene it shows (the sandbox hint)."""
        page = await self.get("/console/")
        assert page.status == 200, page.text
        match = re.search(r"/scan (login:[A-Za-z0-9_\-]+)", page.text)
        assert match, page.text
        return match[1]

    async def csrf(self) -> str:
        page = await self.get("/console/")
        match = re.search(r'<meta name="csrf-token" content="([^"]+)">', page.text)
        assert match, page.text
        return match[1]

    async def logged_in(self) -> bool:
        page = await self.get("/console/")
        return page.status == 200 and 'data-figure="new_members"' in page.text


async def scan(h: Harness, openid: str, scene: str, event: str = "SCAN") -> str:
    key = scene if event == "SCAN" else f"qrscene_{scene}"
    # CreateTime by the bot's clock: two scans a second apart are two events, not a retry.
    reply = await h.post(wire.event(openid, event, key,
                                    create_time=int(h.clock().timestamp())))
    return reply["Content"] if reply else ""


async def login_by_qr(h: Harness, browser: Browser, openid: str) -> Page:
    scene = await browser.open_login()
    assert "已登录后台" in await scan(h, openid, scene)
    page = await browser.get("/console/login/poll")
    assert page.headers.get("HX-Redirect") == "/console/", page
    return page


async def login_by_link(h: Harness, browser: Browser, staff_id: int) -> Page:
    nonce = await console_auth.create_link(staff_id, h.bot.now())
    page = await browser.post(f"/console/login/{nonce}")
    assert page.status == 303, page.text
    return page


_openids = itertools.count(1)


async def log_in_as(h: Harness, browser: Browser, role: str, store: str = "S001") -> str:
    """Logged in as a new employee of that role and store; the session's CSRF token."""
    staff = await add_staff(f"o_{role}_{store}_{next(_openids)}", role, store=store, name=role)
    await login_by_link(h, browser, staff.id)
    return await browser.csrf()
