"""What the tests of the console's office pages (feedback, staff, audit log, exports) share:
browsers logged in as a role, members and ratings made straight in the database."""

from __future__ import annotations

import datetime as dt
import itertools
import re

from bot.models import Member, Staff, Store
from bot.services import members
from tests.console.support import Browser, login_by_link
from tests.support import SHANGHAI, add_staff

_openids = itertools.count(1)


class Browsers:
    def __init__(self) -> None:
        self.opened: list[Browser] = []

    async def as_role(self, h, role: str, store: str = "S001", name: str = ""
                      ) -> tuple[Browser, Staff]:
        staff = await add_staff(f"o_{role}_{next(_openids)}", role, store=store, name=name)
        browser = self.new(h)
        await login_by_link(h, browser, staff.id)
        return browser, staff

    def new(self, h) -> Browser:
        browser = Browser(h)
        self.opened.append(browser)
        return browser

    async def close(self) -> None:
        for browser in self.opened:
            await browser.close()


def local(day: dt.date, hour: int = 12) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour), SHANGHAI)


async def member(h, phone: str, store: str | None = "S001", name: str = "",
                 registered_at: dt.datetime | None = None) -> Member:
    store_id = (await Store.get(code=store)).id if store else None
    return await members.create_member(h.bot.vault, "88", phone, store_id=store_id,
                                       tier="普通会员", name=name, registered_at=registered_at)


def csrf_of(page: str) -> str:
    match = re.search(r'<meta name="csrf-token" content="([^"]+)">', page)
    assert match, page
    return match[1]
