"""What the browser tests share: finding Chromium, where the screenshots go, logging in as staff
do (the sandbox scan, or a one-time link), opening a page and keeping its screenshot, and
reading what a page shows. The fixtures are in conftest.py.

Every page of the menu is opened by each role in test_pages.py already. What a page shows and
does is a few lines more:

    async def test_marking_a_booking_arrived(page, shop):
        made = await seed(shop)
        await login(page, shop, "clerk")
        await visit(page, "/console/bookings", shot="bookings")
        booking = await Booking.get(member=made["王小明"], status="active")
        assert (await click(page, page.locator(f'[data-booking="{booking.id}"] button',
                                               has_text="到店"))).status == 200
        await booking.refresh_from_db()
        assert booking.status == "arrived"

`visit` fails when the page is not a 200, bounced to the login page, raised a JavaScript
error or left a chart undrawn, and keeps test-artifacts/screenshots/<test>-<shot>.png (or
under MEMBERBOT_SCREENSHOTS). `click` waits for the request a button sends and for htmx to
have put the answer in the page. `new_page(**PHONE)` is WeChat on a phone.
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
import re
import shutil
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from bot.models import (
    Booking,
    BookingStatus,
    Member,
    PointsEntry,
    PointsKind,
    Purchase,
    Rating,
    Resource,
    Service,
    Staff,
    Store,
)
from bot.services import console_auth, members
from tests.console.support import scan
from tests.support import SHANGHAI, Harness, add_staff, at_local

if TYPE_CHECKING:
    from playwright.async_api import ConsoleMessage, Locator, Page, Response

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_ENV = "MEMBERBOT_CHROMIUM"  # a Chromium binary to use instead of the one on PATH
SHOTS_ENV = "MEMBERBOT_SCREENSHOTS"  # where the screenshots go
WAIT_MS = 10_000  # the login page polls every 2 s: a scan is seen within that
_keys = itertools.count(1)  # unique keys and openids
# WeChat's built-in browser on a phone: `await new_page(**PHONE)`.
PHONE = {
    "user_agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
                  "(KHTML, like Gecko) Mobile/15E148 MicroMessenger/8.0.47(0x18002f2c) "
                  "NetType/WIFI Language/zh_CN",
    "viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True,
    "has_touch": True,
}

# Each page's test, for naming its screenshots (set by the `page` fixture).
_TESTS: weakref.WeakKeyDictionary[Page, str] = weakref.WeakKeyDictionary()
# JavaScript errors a page raised (uncaught exceptions and console.error).
_ERRORS: weakref.WeakKeyDictionary[Page, list[str]] = weakref.WeakKeyDictionary()


# Every ECharts box on the page has its chart, done animating (a page without charts: at once).
CHARTS_DRAWN = """(sel) => [...document.querySelectorAll(sel || "[data-chart]")].every(box => {
    const chart = window.echarts && echarts.getInstanceByDom(box);
    return chart && chart.getZr().animation.isFinished(); })"""


# htmx has no request in flight and nothing left to swap or settle.
SETTLED = """() => !document.querySelector('.htmx-request, .htmx-swapping, .htmx-settling')"""


def find_chromium() -> tuple[str | None, str]:
    """The Chromium binary to drive, or None and why there is none."""
    wanted = os.environ.get(CHROMIUM_ENV)
    if wanted:
        if os.path.isfile(wanted) and os.access(wanted, os.X_OK):
            return wanted, ""
        return None, f"{CHROMIUM_ENV}={wanted} is not an executable Chromium"
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found, ""
    return None, ("no Chromium on PATH (`make test` installs Debian's as root: "
                  "apt-get install chromium fonts-noto-cjk; or set MEMBERBOT_CHROMIUM)")


def shots_dir() -> Path:
    return Path(os.environ.get(SHOTS_ENV) or ROOT / "test-artifacts" / "screenshots")


def track(page: Page, test: str) -> None:
    """Name the page's screenshots after its test; record the JavaScript errors it raises."""
    _TESTS[page] = re.sub(r"[^\w.-]+", "_", test).strip("_")
    errors = _ERRORS.setdefault(page, [])

    def logged(msg: ConsoleMessage) -> None:
        # Chromium asks for /favicon.ico by itself; the console has none (not a page's fault).
        url = msg.location.get("url", "")
        if msg.type == "error" and not url.endswith("/favicon.ico") and not (
                url == page.url and msg.text.startswith("Failed to load resource")):
            errors.append(f"console.error: {msg.text} ({msg.location.get('url')})")

    page.on("pageerror", lambda exc: errors.append(f"uncaught: {exc}"))
    page.on("console", logged)
    # What the page loads or asks for (htmx, fetch) and is refused; the page itself is visit's.
    page.on("response", lambda r: errors.append(f"{r.status} {r.request.method} {r.url}")
            if r.status >= 400 and r.request.resource_type != "document" else None)


def js_errors(page: Page) -> list[str]:
    return list(_ERRORS.get(page, []))


async def shoot(page: Page, shot: str) -> Path:
    """Keep a screenshot of the whole page: <test>-<shot>.png."""
    path = shots_dir() / f"{_TESTS.get(page, 'page')}-{shot}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(path), full_page=True)
    return path


def path_of(page: Page) -> str:
    return urlsplit(page.url).path


async def visit(page: Page, path: str, *, shot: str | None = None, status: int = 200,
                via_menu: bool = False) -> None:
    """Open a console page as a logged-in employee (by its address, or by clicking its entry
    in the top bar's menu): it answers `status`, is not the login page, raised no JavaScript
    error, every chart on it is drawn; its screenshot is kept as `shot`."""
    # Not at the top: without Playwright this module must still import, for the tests to skip.
    from playwright.async_api import TimeoutError as Timeout

    if via_menu:
        async with page.expect_navigation() as navigation:
            await page.locator(f'header.top .menu a[href="{path}"]').click()
        response = await navigation.value
    else:
        response = await page.goto(path)
    assert response is not None and response.status == status, (path, response and
                                                                 response.status)
    assert path_of(page) == urlsplit(path).path, f"{path} went to {page.url}"
    if status == 200:
        assert await page.locator("header.top").count() == 1, f"{path}: not logged in"
    await page.wait_for_load_state("load")
    try:  # the screenshot shows them drawn
        await page.wait_for_function(CHARTS_DRAWN, timeout=WAIT_MS)
    except Timeout:
        raise AssertionError(f"{path}: a chart was not drawn {js_errors(page)}") from None
    if shot:
        await shoot(page, shot)
    assert not js_errors(page), js_errors(page)


async def login_by_scan(page: Page, h: Harness, openid: str, *, shot: str | None = "login"
                        ) -> str:
    """What an employee does: open /console/, scan the code (in the sandbox: `/scan
    login:<nonce>`, the scene the page shows), and the waiting page goes to the console on its
    own. Returns the bot's answer in chat."""
    await page.goto("/console/")
    hint = page.locator(".sandbox code")
    await hint.wait_for()
    await page.locator("img.qr").wait_for()
    if shot:
        await shoot(page, shot)
    scene = (await hint.inner_text()).strip().removeprefix("/scan ").strip()
    assert scene.startswith("login:"), scene
    reply = await scan(h, openid, scene)
    await page.locator("header.top").wait_for(timeout=WAIT_MS)
    assert path_of(page) == "/console/"
    return reply


async def login_by_link(page: Page, h: Harness, staff: Staff) -> None:
    """The one-time link (`memberbot console link`): faster than a scan, for tests about a page
    rather than about logging in."""
    nonce = await console_auth.create_link(staff.id, h.bot.now())
    await page.goto(f"/console/login/{nonce}")
    await page.get_by_role("button", name="登录").click()
    await page.locator("header.top").wait_for()


async def login(page: Page, h: Harness, role: str, store: str = "S001", *,
                name: str = "") -> Staff:
    """A new employee of that role and store, logged in by link."""
    staff = await add_staff(f"o_{role}_{store}_{next(_keys)}", role, store=store, name=name)
    await login_by_link(page, h, staff)
    return staff


async def click(page: Page, target: str | Locator, *, method: str = "POST") -> Response:
    """Click a button (its text, or a locator) that sends a request, htmx's or a form's; wait
    for the answer and for htmx to have put it in the page. The answer (its .status)."""
    button = page.get_by_role("button", name=target) if isinstance(target, str) else target
    async with page.expect_response(lambda r: r.request.method == method) as answer:
        await button.click()
    await page.wait_for_load_state("load")
    await page.wait_for_function(SETTLED)
    return await answer.value


async def figures(page: Page) -> dict[str, dict[int, tuple[str, str]]]:
    """The home page's figures: {name: {days: (value, change)}}, as shown."""
    rows: list[dict[str, Any]] = await page.eval_on_selector_all(
        "tr[data-figure]",
        """rows => rows.map(tr => ({
            name: tr.dataset.figure,
            cells: [...tr.querySelectorAll('span.v')].map(v => [
                Number(v.dataset.days), v.textContent.trim(),
                v.parentElement.querySelector('span.ch').textContent.trim()])}))""")
    return {row["name"]: {days: (value, change) for days, value, change in row["cells"]}
            for row in rows}


async def wait_for_chart(page: Page, selector: str = "[data-chart]", *,
                         wait_ms: float = WAIT_MS) -> dict[str, Any]:
    """Wait until ECharts has drawn the chart and finished animating; what it drew: the
    non-blank pixels of its canvas and its option (series data, axis labels)."""
    box = page.locator(selector)
    await box.wait_for(timeout=wait_ms)
    await page.wait_for_function(CHARTS_DRAWN, arg=selector, timeout=wait_ms)
    return await box.evaluate(
        """box => {
            const canvas = box.querySelector('canvas');
            const pixels = canvas.getContext('2d')
                .getImageData(0, 0, canvas.width, canvas.height).data;
            let inked = 0;
            for (let i = 3; i < pixels.length; i += 4) { if (pixels[i]) { inked++; } }
            const option = echarts.getInstanceByDom(box).getOption();
            return {width: canvas.width, height: canvas.height, inked: inked,
                    dates: option.xAxis[0].data,
                    series: option.series.map(s => ({name: s.name, data: s.data}))};
        }""")


# The shop's rows: the clock stands at TODAY 15:00 (Shanghai) while a test runs.
TODAY = dt.date(2026, 3, 18)


def local(days_ago: int, hour: int = 10) -> dt.datetime:
    return dt.datetime.combine(TODAY - dt.timedelta(days=days_ago), dt.time(hour), SHANGHAI)


# (name, phone, home store, registered days ago, purchases as (fen, store, days ago))
MEMBERS = (
    ("王小明", "13800000001", "S001", 0, ((10000, "S001", 0), (6000, "S001", 1))),
    ("李娜", "13800000002", "S001", 3, ((5000, "S001", 0), (12800, "S001", 3))),
    ("张伟", "13800000003", "S002", 0, ((30000, "S002", 0),)),
    ("刘洋", "13800000004", "S001", 10, ((8800, "S001", 9),)),
    ("陈静", "13800000005", "S002", 5, ((4500, "S002", 5), (2000, "S001", 2))),
    ("赵磊", "13800000006", "S001", 21, ((15000, "S001", 20),)),
    ("孙丽", "13800000007", "S002", 28, ()),
)


async def seed(h: Harness) -> dict[str, Member]:
    """Members of both stores over the last 30 days, their purchases (one voided), points,
    bookings (one of each outcome) and ratings; the clock at TODAY 15:00. By name."""
    at_local(h.clock, TODAY, 15)
    stores = {store.code: store for store in await Store.all()}
    made: dict[str, Member] = {}
    for name, phone, home, days_ago, purchases in MEMBERS:
        m = made[name] = await members.create_member(
            h.bot.vault, "88", phone, name=name, store_id=stores[home].id, tier="普通会员",
            registered_at=local(days_ago))
        for fen, store, ago in purchases:
            at = local(ago, 12)
            await Purchase.create(member=m, store=stores[store], amount=fen, created_at=at,
                                  idempotency_key=f"seed:{next(_keys)}")
            await PointsEntry.create(member=m, delta=fen // 100, kind=PointsKind.EARN,
                                     reason="消费", balance_after=0, created_at=at,
                                     idempotency_key=f"seed:{next(_keys)}")
    at = local(0, 13)
    await Purchase.create(member=made["王小明"], store=stores["S001"], amount=99900,
                          created_at=at, voided_at=at + dt.timedelta(minutes=5),
                          idempotency_key=f"seed:{next(_keys)}")  # a typo, voided
    await PointsEntry.create(member=made["李娜"], delta=-50, kind=PointsKind.REDEEM,
                             reason="兑换", balance_after=0, created_at=at,
                             idempotency_key=f"seed:{next(_keys)}")
    service = await Service.create(code="cut", name="剪发", minutes=30)
    chairs = {code: await Resource.create(code=f"chair-{code}", name="一号位", store=store)
              for code, store in stores.items()}
    for who, store, status, hour in (("王小明", "S001", BookingStatus.ARRIVED, 11),
                                     ("李娜", "S001", BookingStatus.NO_SHOW, 12),
                                     ("刘洋", "S001", BookingStatus.CANCELLED, 13),
                                     ("王小明", "S001", BookingStatus.ACTIVE, 16),
                                     ("张伟", "S002", BookingStatus.ACTIVE, 17)):
        start = local(0, hour)
        await Booking.create(key=f"seed:{next(_keys)}", member=made[who], service=service,
                             resource=chairs[store], store=stores[store], starts_at=start,
                             ends_at=start + dt.timedelta(minutes=30), status=status)
    for who, store, stars in (("王小明", "S001", 5), ("李娜", "S001", 4), ("张伟", "S002", 2)):
        await Rating.create(visit=f"purchase:{next(_keys)}", key=f"seed:{next(_keys)}",
                            member=made[who], store=stores[store], stars=stars,
                            created_at=local(0, 14))
    return made
