"""Logging in to the console over HTTP against create_app, with the scan arriving as WeChat
sends it (signed and encrypted): the QR code, the one-time link, the session's life, CSRF."""

from __future__ import annotations

import pytest

from bot.config import ConsoleConfig
from bot.models import AuditEntry, ConsoleSession, LoginNonce, Staff
from bot.services import staff as staff_service
from tests.console.support import Browser, login_by_link, login_by_qr, scan
from tests.support import add_staff


@pytest.fixture
async def browsers():
    opened: list[Browser] = []

    def open_(h, **kw) -> Browser:
        browser = Browser(h, **kw)
        opened.append(browser)
        return browser

    yield open_
    for browser in opened:
        await browser.close()


async def test_a_bound_employee_scanning_the_code_logs_the_waiting_browser_in(harness,
                                                                            browsers):
    h = harness
    owner = await add_staff("o_boss", "owner", name="老板娘")
    browser = browsers(h)
    login = await browser.get("/console/")
    # A temporary code from WeChat, valid two minutes, shown as an image (long-pressable).
    (code,) = h.stand_ins.wechat.qrcodes.values()
    assert code.scene.startswith("login:") and f"/scan {code.scene}" in login.text
    assert (code.permanent, code.expire_seconds) == (False, 120)
    assert '<img class="qr" src="data:image/png;base64,' in login.text
    scene = code.scene
    assert (await browser.get("/console/login/poll")).status == 204  # waiting: nothing to swap
    reply = await scan(h, "o_boss", scene)
    assert reply.startswith("已登录后台 · Chrome · ") and "回复「退出后台」" in reply
    # Someone else's browser (no claim on this code) gets nothing from the scan.
    stranger = browsers(h)
    assert "二维码已过期" in (await stranger.get("/console/login/poll")).text
    assert stranger.cookie("mb_console") is None
    page = await browser.get("/console/login/poll")
    assert page.headers["HX-Redirect"] == "/console/"
    assert browser.cookie("mb_console") and await browser.logged_in()
    home = await browser.get("/console/")
    assert "老板娘" in home.text and "全部门店" in home.text
    entry = await AuditEntry.get(action="console_login")
    assert entry.staff_id == owner.id and "via=qr" in entry.detail and "Chrome" in entry.detail


async def test_following_through_the_code_logs_in_too(harness, browsers):
    h = harness
    await add_staff("o_mgr", "manager")
    browser = browsers(h)
    scene = await browser.open_login()
    assert "已登录后台" in await scan(h, "o_mgr", scene, event="subscribe")
    await browser.get("/console/login/poll")
    assert await browser.logged_in()


async def test_an_expired_code_is_refused(harness, browsers):
    h = harness
    await add_staff("o_boss", "owner")
    browser = browsers(h)
    scene = await browser.open_login()
    h.clock.advance(minutes=2, seconds=1)
    assert "已过期或已使用" in await scan(h, "o_boss", scene)
    assert "二维码已过期" in (await browser.get("/console/login/poll")).text
    assert not await browser.logged_in()


async def test_a_code_logs_in_once(harness, browsers):
    h = harness
    await add_staff("o_boss", "owner")
    await add_staff("o_clerk", "clerk")
    browser = browsers(h)
    scene = await browser.open_login()
    assert "已登录后台" in await scan(h, "o_boss", scene)
    assert "已过期或已使用" in await scan(h, "o_clerk", scene)  # the clerk does not take it
    await browser.get("/console/login/poll")
    assert "二维码已过期" in (await browser.get("/console/login/poll")).text  # collected once
    assert await ConsoleSession.all().count() == 1
    session = await ConsoleSession.get()
    assert session.role == "owner"


async def test_someone_not_staff_is_refused_and_told_so(harness, browsers):
    h = harness
    browser = browsers(h)
    scene = await browser.open_login()
    assert "不是本店员工" in await scan(h, "o_someone", scene)
    assert (await browser.get("/console/login/poll")).status == 204  # still waiting
    revoked = await add_staff("o_gone", "manager")
    await staff_service.revoke(revoked.id)
    assert "权限已停用" in await scan(h, "o_gone", scene)
    assert (await browser.get("/console/login/poll")).status == 204
    assert await LoginNonce.filter(used_at__not_isnull=True).count() == 0


async def test_the_link_logs_in_once(harness, browsers):
    h = harness
    clerk = await add_staff("o_clerk", "clerk")
    browser = browsers(h)
    from bot.services import console_auth

    nonce = await console_auth.create_link(clerk.id, h.bot.now())
    page = await browser.get(f"/console/login/{nonce}")  # a preview of the link: no login
    assert page.status == 200 and "登录" in page.text and not await browser.logged_in()
    assert (await browser.post(f"/console/login/{nonce}")).status == 303
    assert await browser.logged_in()
    other = browsers(h)
    assert (await other.post(f"/console/login/{nonce}")).status == 410
    assert (await other.get(f"/console/login/{nonce}")).status == 410
    assert not await other.logged_in()


async def test_an_expired_link_is_refused(harness, browsers):
    h = harness
    clerk = await add_staff("o_clerk", "clerk")
    from bot.services import console_auth

    nonce = await console_auth.create_link(clerk.id, h.bot.now())
    h.clock.advance(minutes=11)
    browser = browsers(h)
    assert (await browser.post(f"/console/login/{nonce}")).status == 410


async def test_the_session_cookie_is_httponly_lax_and_not_readable_elsewhere(harness, browsers):
    h = harness
    boss = await add_staff("o_boss", "owner")
    page = await login_by_link(h, browsers(h), boss.id)
    cookie = next(c for c in page.set_cookies if c.startswith("mb_console="))
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/console" in cookie
    assert "Secure" not in cookie  # plain http here: a Secure cookie would never come back


async def test_the_cookie_is_secure_behind_https(harness_factory, browsers):
    h = await harness_factory(console=ConsoleConfig(base_url="https://shop.example.com"))
    boss = await add_staff("o_boss", "owner")
    page = await login_by_link(h, browsers(h), boss.id)
    cookie = next(c for c in page.set_cookies if c.startswith("mb_console="))
    assert "Secure" in cookie and "HttpOnly" in cookie


async def test_every_login_gets_a_new_session_id_and_the_old_one_ends(harness, browsers):
    h = harness
    boss = await add_staff("o_boss", "owner")
    browser = browsers(h)
    await login_by_link(h, browser, boss.id)
    first = browser.cookie("mb_console")
    await login_by_link(h, browser, boss.id)  # the same browser, logging in again
    second = browser.cookie("mb_console")
    assert first and second and first != second
    assert await browser.logged_in()
    old = browsers(h)
    old.http.cookie_jar.update_cookies({"mb_console": first}, old.h.server.make_url("/console/"))
    assert not await old.logged_in()
    assert await ConsoleSession.filter(end_reason="replaced").count() == 1


async def test_退出后台_in_chat_ends_every_session_at_once(harness, browsers):
    h = harness
    boss = await add_staff("o_boss", "owner")
    laptop, phone = browsers(h), browsers(h)
    await login_by_qr(h, laptop, "o_boss")
    await login_by_link(h, phone, boss.id)
    assert "2 个" in await h.say("o_boss", "退出后台")
    assert not await laptop.logged_in() and not await phone.logged_in()
    assert "没有登录中的后台" in await h.say("o_boss", "退出后台")
    assert "退出后台" in await h.say("o_boss", "员工帮助")  # staff can find the word
    assert await AuditEntry.filter(action="console_logout").count() == 1


async def test_a_button_pressed_after_退出后台_goes_to_the_login_page(harness, browsers):
    """The page stays open after 退出后台 in chat: its next htmx POST is told to go to the login
    page (htmx follows HX-Redirect whatever the status), a plain form POST is redirected."""
    h = harness
    boss = await add_staff("o_boss", "owner")
    browser = browsers(h)
    await login_by_link(h, browser, boss.id)
    token = await browser.csrf()
    assert "已退出后台" in await h.say("o_boss", "退出后台")
    page = await browser.post("/console/logout", token=token, headers={"HX-Request": "true"})
    assert page.status == 401 and page.headers["HX-Redirect"] == "/console/"
    page = await browser.post("/console/logout", token=token)
    assert page.status == 303 and page.headers["Location"] == "/console/"
    # From another origin it is still refused outright.
    page = await browser.post("/console/logout", token=token, origin="https://evil.example")
    assert page.status == 403 and "HX-Redirect" not in page.headers


async def test_staff_revoke_ends_the_session_at_once(harness, browsers):
    h = harness
    mgr = await add_staff("o_mgr", "manager")
    browser = browsers(h)
    await login_by_link(h, browser, mgr.id)
    assert await browser.logged_in()
    assert await staff_service.revoke(mgr.id, h.bot.now())
    assert not await browser.logged_in()
    assert (await ConsoleSession.get()).end_reason == "revoked"


async def test_a_role_change_ends_the_session(harness, browsers):
    h = harness
    mgr = await add_staff("o_mgr", "manager")
    browser = browsers(h)
    await login_by_link(h, browser, mgr.id)
    await Staff.filter(id=mgr.id).update(role="clerk")  # however it changed
    assert not await browser.logged_in()
    assert (await ConsoleSession.get()).end_reason == "role_changed"


async def test_rebinding_to_another_role_ends_the_sessions(harness, browsers):
    h = harness
    clerk = await add_staff("o_clerk", "clerk")
    browser = browsers(h)
    await login_by_link(h, browser, clerk.id)
    code = await staff_service.create_invite("S001", "manager", "", h.bot.now())
    assert "绑定成功" in await h.say("o_clerk", f"绑定 {code}")
    assert await ConsoleSession.filter(end_reason="role_changed").count() == 1
    assert not await browser.logged_in()


async def test_an_idle_session_ends(harness, browsers):
    h = harness
    boss = await add_staff("o_boss", "owner")
    browser = browsers(h)
    await login_by_link(h, browser, boss.id)
    for _ in range(3):  # in use: it lasts beyond idle_minutes in all
        h.clock.advance(minutes=20)
        assert await browser.logged_in()
    h.clock.advance(minutes=30)
    assert not await browser.logged_in()
    assert (await ConsoleSession.get()).end_reason == "idle"


async def test_a_cross_origin_post_is_refused(harness, browsers):
    h = harness
    boss = await add_staff("o_boss", "owner")
    browser = browsers(h)
    await login_by_link(h, browser, boss.id)
    token = await browser.csrf()
    for kw in ({"origin": "https://evil.example"},
               {"origin": None, "headers": {"Sec-Fetch-Site": "cross-site"}},
               {"origin": "same", "headers": {"Sec-Fetch-Site": "same-site"}},
               {"origin": None}):  # neither header: not a page of ours
        page = await browser.post("/console/logout", token=token, **kw)
        assert page.status == 403, kw
    assert await browser.logged_in()
    # A forged link login too: the nonce is no use from another site.
    from bot.services import console_auth

    nonce = await console_auth.create_link(boss.id, h.bot.now())
    assert (await browser.post(f"/console/login/{nonce}", origin="https://evil.example")
            ).status == 403
    assert await console_auth.link_valid(nonce, h.bot.now())


async def test_a_post_without_the_token_is_refused(harness, browsers):
    h = harness
    boss = await add_staff("o_boss", "owner")
    browser = browsers(h)
    await login_by_link(h, browser, boss.id)
    assert (await browser.post("/console/logout")).status == 403
    assert (await browser.post("/console/logout", token="not-the-token")).status == 403
    assert await browser.logged_in()
    page = await browser.post("/console/logout", token=await browser.csrf(),
                              headers={"Sec-Fetch-Site": "same-origin", "HX-Request": "true"})
    assert page.status == 200 and page.headers["HX-Redirect"] == "/console/"
    assert not await browser.logged_in()
    assert await AuditEntry.filter(action="console_logout").count() == 1


async def test_new_codes_are_rate_limited(harness, browsers):
    h = harness
    browser = browsers(h)
    for _ in range(10):
        assert (await browser.get("/console/")).status == 200
    page = await browser.get("/console/")
    assert page.status == 429 and "刷新太频繁" in page.text


async def test_the_vendored_files_are_served(harness, browsers):
    browser = browsers(harness)
    for name in ("htmx.min.js", "echarts.min.js", "console.js", "console.css"):
        assert (await browser.get(f"/console/static/{name}")).status == 200, name
    assert (await browser.get("/console")).status == 302


async def test_a_scan_not_collected_soon_lapses(harness, browsers):
    h = harness
    await add_staff("o_boss", "owner")
    browser = browsers(h)
    scene = await browser.open_login()
    assert "已登录后台" in await scan(h, "o_boss", scene)
    h.clock.advance(minutes=2, seconds=1)
    assert "二维码已过期" in (await browser.get("/console/login/poll")).text
    assert not await browser.logged_in()


async def test_scanning_again_and_again_is_slowed_down(harness, browsers):
    h = harness
    await add_staff("o_boss", "owner")
    scene = await browsers(h).open_login()
    assert "已登录后台" in await scan(h, "o_boss", scene)
    for _ in range(9):
        h.clock.advance(seconds=1)  # another event, not WeChat retrying the same one
        assert "已过期或已使用" in await scan(h, "o_boss", scene)
    h.clock.advance(seconds=1)
    assert "扫码太频繁，请 10 分钟后再试" in await scan(h, "o_boss", scene)
