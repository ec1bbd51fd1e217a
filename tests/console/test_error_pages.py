"""A page the browser opens and the console refuses (a role below it, another store's member,
an id or path that is not there) says so in Chinese inside the console's layout, under the
same status; an htmx request keeps the short answer, which htmx does not show anyway."""

from __future__ import annotations

import pytest

from tests.console.support import Browser
from tests.console.test_members import as_role, member, shop  # noqa: F401  (fixture)


@pytest.fixture
async def browser(harness):
    opened = Browser(harness)
    yield opened
    await opened.close()


def shown_in_chinese(page, status: int) -> None:
    assert page.status == status
    assert 'class="top"' in page.text  # the menu, to go on from
    assert f'data-error="{status}"' in page.text
    for english in ("may not", "no such", "Not Found", "Forbidden"):
        assert english not in page.text, english


async def test_a_clerk_opening_a_managers_page_is_told_in_chinese(shop, browser):  # noqa: F811
    await as_role(shop, browser, "clerk")
    for path in ("/console/campaigns", "/console/exports/members.csv", "/console/staff"):
        page = await browser.get(path)
        shown_in_chinese(page, 403)
        assert "没有权限" in page.text


async def test_another_stores_member_and_a_missing_page_are_404_in_chinese(shop,  # noqa: F811
                                                                          browser):
    await as_role(shop, browser, "manager")
    li = await member("李四")  # S002's
    for path in (f"/console/members/{li.id}", "/console/members/999999",
                 "/console/bookings/99999", "/console/campaigns/99999", "/console/nowhere"):
        page = await browser.get(path)
        shown_in_chinese(page, 404)
        assert "没有找到" in page.text


async def test_an_htmx_request_keeps_the_short_answer(shop, browser):  # noqa: F811
    await as_role(shop, browser, "clerk")
    page = await browser.get("/console/campaigns", headers={"HX-Request": "true"})
    assert page.status == 403 and 'data-error' not in page.text
