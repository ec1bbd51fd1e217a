"""What a browser can put in a console URL, typed or edited by hand: dates far out of range,
a store code or a card number longer than any, ids past what a database column holds. Each
answers a page (or a plain 404), never a 500."""

from __future__ import annotations

from tests.console.test_members import as_role, member, shop  # noqa: F401  (fixture)

# 3000000000: past an int column (PostgreSQL refuses it); 5,000 digits: past what Python's
# int() converts.
ODD = ("0001-01-01", "9999-12-31", "9" * 30, "3000000000", "9" * 5000, "会员" * 40, "-1", "１２",
       "abc", "")
LISTS = {
    "/console/audit": ("from", "to", "member", "store", "staff", "action", "before"),
    "/console/feedback": ("from", "to", "store", "stars", "before"),
    "/console/bookings": ("date", "store", "view"),
    "/console/members": ("q", "offset"),
    "/console/campaigns": ("before",),
    "/console/exports/members.csv": ("from", "to", "store"),
    "/console/exports/purchases.csv": ("from", "to", "store"),
}


async def test_odd_query_strings_never_answer_500(shop, browser):  # noqa: F811
    await as_role(shop, browser, "owner")
    wang = await member("王小明")
    lists = dict(LISTS)
    for ledger in ("points", "stored-value", "audit"):
        lists[f"/console/members/{wang.id}/{ledger}"] = ("before",)
    failed = []
    for path, names in lists.items():
        for name in names:
            for value in ODD:
                page = await browser.get(path, params={name: value})
                if page.status >= 500:
                    failed.append((path, name, value))
    assert failed == []


async def test_an_id_past_any_column_is_404(shop, browser):  # noqa: F811
    await as_role(shop, browser, "owner")
    for huge in ("9" * 23, "3000000000", "9" * 5000):
        for path in (f"/console/members/{huge}", f"/console/campaigns/{huge}",
                     f"/console/bookings/{huge}"):
            assert (await browser.get(path)).status == 404, path
    token = await browser.csrf()
    for path in ("/console/staff/3000000000/revoke", f"/console/staff/{'9' * 5000}/revoke",
                 "/console/members/3000000000/points"):
        assert (await browser.post(path, token=token)).status == 404, path
