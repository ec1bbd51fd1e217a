"""导出 in the console: CSV for Excel (UTF-8 with a BOM, CRLF), phones masked, money in yuan,
a manager's store only, date ranges, streamed in batches, and every download audited."""

from __future__ import annotations

import csv
import datetime as dt
import io
import itertools

import pytest

from bot.models import (
    AuditEntry,
    Member,
    PointsEntry,
    Purchase,
    Staff,
    Store,
    StoredValueEntry,
)
from bot.services import exports
from tests.console.office import local, member
from tests.support import add_staff

DAY = dt.date(2026, 3, 18)
_keys = itertools.count(1)


def table(text: str) -> list[list[str]]:
    assert text.startswith("\ufeff")
    return list(csv.reader(io.StringIO(text[1:], newline="")))


async def download(browser, path: str):
    async with browser.http.get(browser.origin + path, allow_redirects=False) as response:
        body = await response.read()
        return response, body


@pytest.fixture
async def shop(harness):
    h = harness
    s1, s2 = await Store.get(code="S001"), await Store.get(code="S002")
    clerk = await add_staff("o_wang", "clerk", name="小王")
    a = await member(h, "13800000001", "S001", name="=HYPERLINK(\"x\")",
                     registered_at=local(DAY, 9))
    b = await member(h, "13800000002", "S002", name="李四",
                     registered_at=local(DAY - dt.timedelta(days=20)))
    c = await member(h, "13800000003", "S002", name="王五",  # signed up there, bought here
                     registered_at=local(DAY - dt.timedelta(days=5)))
    await Member.filter(id=a.id).update(points=120, stored_value=12345)
    p1 = await Purchase.create(member=a, store=s1, staff=clerk, amount=8850, points=88,
                               note="洗剪吹", idempotency_key="p1", created_at=local(DAY, 11))
    await Purchase.create(member=b, store=s2, amount=20000, idempotency_key="p2",
                          created_at=local(DAY, 12))
    await Purchase.create(member=c, store=s1, amount=1000, idempotency_key="p3",
                          created_at=local(DAY - dt.timedelta(days=2), 12),
                          voided_at=local(DAY - dt.timedelta(days=2), 13))
    await PointsEntry.create(member=a, delta=88, kind="earn", reason="消费", balance_after=88,
                             idempotency_key="e1", purchase=p1, created_at=local(DAY, 11))
    await PointsEntry.create(member=b, delta=300, kind="earn", reason="消费",
                             balance_after=300, idempotency_key="e2", created_at=local(DAY))
    await StoredValueEntry.create(member=a, delta=20000, kind="topup", reason="充值",
                                  balance_after=20000, idempotency_key="v1", store=s1,
                                  staff=clerk, created_at=local(DAY, 10))
    await StoredValueEntry.create(member=a, delta=-7655, kind="pay", reason="储值消费",
                                  balance_after=12345, idempotency_key="v2", store=s1,
                                  created_at=local(DAY, 11))
    await StoredValueEntry.create(member=b, delta=5000, kind="topup", reason="充值",
                                  balance_after=5000, idempotency_key="v3", store=s2,
                                  created_at=local(DAY, 10))
    h.m = {"a": a, "b": b, "c": c}
    return h


async def test_members_for_excel_with_phones_masked(shop, browsers):
    browser, manager = await browsers.as_role(shop, "manager")
    response, body = await download(browser, "/console/exports/members.csv")
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    disposition = response.headers["Content-Disposition"]
    assert disposition.startswith('attachment; filename="members-S001-') and \
        disposition.endswith(f'{shop.bot.today().isoformat()}.csv"')
    assert body.startswith(b"\xef\xbb\xbf")  # the BOM Excel needs for Chinese
    text = body.decode("utf-8")
    assert text.count("\r\n") == text.count("\n") == 3  # CRLF only: a header and two rows
    rows = table(text)
    assert rows[0][:3] == ["卡号", "手机", "姓名"]
    by_card = {row[0]: row for row in rows[1:]}
    a, c = shop.m["a"], shop.m["c"]
    # Signed up here, or bought here; not S002's member who never came.
    assert set(by_card) == {a.card_no, c.card_no}
    assert by_card[a.card_no][1] == "138****0001" and "13800000001" not in text
    assert by_card[a.card_no][2] == "'=HYPERLINK(\"x\")"  # never a formula in Excel
    assert by_card[a.card_no][5:7] == ["120", "123.45"]  # points; stored value in yuan
    assert by_card[a.card_no][8] == f"{DAY} 09:00:00"  # the shop's time
    entry = await AuditEntry.get(action="console_export")
    assert entry.staff_id == manager.id and entry.store_code == "S001"
    assert entry.after == {"export": "members", "store": "S001", "from": "", "to": ""}


async def test_purchases_and_ledgers_in_yuan_within_the_dates(shop, browsers):
    browser, _ = await browsers.as_role(shop, "manager")
    _, body = await download(browser, f"/console/exports/purchases.csv?from={DAY}&to={DAY}")
    rows = table(body.decode())
    assert rows[0][0] == "流水号" and len(rows) == 2  # S002's, and the earlier one, left out
    assert rows[1][1:7] == [f"{DAY} 11:00:00", "示例门店·总店", "小王", shop.m["a"].card_no,
                            "138****0001", "88.50"]
    _, body = await download(browser, "/console/exports/purchases.csv")
    rows = table(body.decode())
    assert len(rows) == 3 and rows[2][-1].startswith(str(DAY - dt.timedelta(days=2)))  # voided
    _, body = await download(browser, "/console/exports/points.csv")
    rows = table(body.decode())
    assert [r[2] for r in rows[1:]] == [shop.m["a"].card_no]  # not S002's member's points
    assert rows[1][4:7] == ["获得", "88", "88"]
    _, body = await download(browser, "/console/exports/stored_value.csv")
    rows = table(body.decode())
    assert [(r[6], r[7], r[8]) for r in rows[1:]] == [("充值", "200.00", "200.00"),
                                                      ("消费", "-76.55", "123.45")]
    assert await AuditEntry.filter(action="console_export").count() == 4


async def test_an_employees_name_never_runs_as_a_formula(shop, browsers):
    """An invited employee's name is typed by staff: it goes out as text, like a member's."""
    await Staff.filter(name="小王").update(name='=HYPERLINK("y")')
    browser, _ = await browsers.as_role(shop, "manager")
    _, body = await download(browser, f"/console/exports/purchases.csv?from={DAY}&to={DAY}")
    assert table(body.decode())[1][3] == "'=HYPERLINK(\"y\")"


async def test_the_owner_exports_every_store_or_one(shop, browsers):
    browser, _ = await browsers.as_role(shop, "owner")
    _, body = await download(browser, "/console/exports/members.csv")
    assert len(table(body.decode())) == 4
    response, body = await download(browser, "/console/exports/stored_value.csv?store=S002")
    rows = table(body.decode())
    assert [r[4] for r in rows[1:]] == [shop.m["b"].card_no]
    assert "S002" in response.headers["Content-Disposition"]
    entry = await AuditEntry.filter(action="console_export").order_by("-id").first()
    assert entry.after["store"] == "S002" and entry.after["export"] == "stored_value"


async def test_a_manager_cannot_export_another_store(shop, browsers):
    browser, _ = await browsers.as_role(shop, "manager")
    _, body = await download(browser, "/console/exports/purchases.csv?store=S002")
    rows = table(body.decode())
    assert all(r[2] == "示例门店·总店" for r in rows[1:]) and len(rows) == 3


async def test_thousands_of_rows_stream_in_batches(harness, browsers, monkeypatch):
    h = harness
    store = await Store.get(code="S001")
    vault = h.bot.vault
    await Member.bulk_create([
        Member(card_no=f"88{n:08d}", phone_hash=vault.lookup_hash(f"139{n:08d}"),
               phone_enc=vault.encrypt(f"139{n:08d}"), name=f"会员{n}", tier="普通会员",
               store=store, stored_value=n)
        for n in range(3000)], batch_size=500)
    fetched: list[int] = []
    real = exports.value_batches

    def spying(*args, **kw):
        async def pages():
            async for rows in real(*args, **kw):
                fetched.append(len(rows))
                yield rows
        return pages()

    monkeypatch.setattr(exports, "value_batches", spying)
    monkeypatch.setattr(exports, "BATCH", 700)
    browser, _ = await browsers.as_role(h, "manager")
    async with browser.http.get(browser.origin + "/console/exports/members.csv") as response:
        assert response.headers.get("Transfer-Encoding") == "chunked"
        assert "Content-Length" not in response.headers
        body = await response.read()
    rows = table(body.decode())
    assert len(rows) == 3001
    assert fetched == [700, 700, 700, 700, 200]  # never more than a batch at a time
    assert rows[1][:2] == ["8800000000", "139****0000"] and rows[-1][6] == "29.99"
    assert len({r[0] for r in rows[1:]}) == 3000


async def test_who_may_export(shop, browsers):
    clerk, _ = await browsers.as_role(shop, "clerk")
    response, _ = await download(clerk, "/console/exports/members.csv")
    assert response.status == 403
    assert (await clerk.get("/console/exports")).status == 403
    stranger = browsers.new(shop)
    response, _ = await download(stranger, "/console/exports/members.csv")
    assert response.status == 302
    manager, _ = await browsers.as_role(shop, "manager")
    page = await manager.get("/console/exports")
    assert page.status == 200 and "/console/exports/stored_value.csv" in page.text
    assert (await manager.get("/console/exports/secrets.csv")).status == 404
    assert (await manager.get("/console/exports/members.csv?from=03/01")).status == 400
    # A link on another site does not start a download in a logged-in browser.
    response = await manager.get("/console/exports/members.csv",
                                 headers={"Sec-Fetch-Site": "cross-site"})
    assert response.status == 403
    assert not await AuditEntry.filter(action="console_export").exists()
