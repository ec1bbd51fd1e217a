"""Every page of the console's menu (bot.console.MENU), opened in Chromium by each role: the
menu shows the role exactly the pages it may open, each opens from the menu and renders
without a JavaScript error (its screenshot kept as <test>-<page>.png), and a page above the
role is refused. A page added to MENU is covered here without a line more."""

from __future__ import annotations

import pytest

from bot.console import MENU
from bot.console.pages import at_least
from tests.browser.support import login, seed, shoot, visit


def page_name(path: str) -> str:
    return path.removeprefix("/console").strip("/").replace("/", "-") or "home"


@pytest.mark.parametrize("role", ["owner", "manager", "clerk"])
async def test_each_page_of_the_menu_opens_for_the_role(page, shop, role):
    await seed(shop)
    await login(page, shop, role)
    await visit(page, "/console/")
    menu = await page.eval_on_selector_all("header.top .menu a",
                                           "links => links.map(a => a.getAttribute('href'))")
    assert menu == [item.path for item in MENU if at_least(role, item.least)]
    for item in MENU:
        if at_least(role, item.least):
            await visit(page, item.path, shot=page_name(item.path), via_menu=True)
            marked = page.locator("header.top .menu a.on")
            assert await marked.count() == 1 and await marked.inner_text() == item.label
        else:
            await visit(page, item.path, status=403)


async def test_an_action_that_fails_says_why(page, shop):
    """htmx swaps nothing on an error answer: the page says what went wrong instead of a
    button that seems to do nothing."""
    await seed(shop)
    await login(page, shop, "manager")
    await visit(page, "/console/bookings")
    await page.evaluate("htmx.ajax('POST', '/console/bookings/999999/arrive', "
                        "{target: 'body', swap: 'none'})")
    told = page.locator("#console-error")
    await told.wait_for(state="visible")
    assert "找不到" in await told.inner_text()
    await shoot(page, "failed-action")
    await told.click()  # dismissed
    await told.wait_for(state="hidden")
