"""CSV exports for the console (导出): members, purchases, the points ledger and the
stored-value ledger, for Excel: UTF-8 with a BOM (Excel then reads Chinese), CRLF line ends,
phones masked, money in yuan, a leading apostrophe before a cell Excel would take for a
formula. Rows are read in batches by keyset pagination on id and yielded as encoded chunks,
so an export of a million rows never holds more than one batch.

Scope: None is every store; a store id narrows members to those who signed up or bought
there, purchases to those made there, and both ledgers to the entries of those members (the
ledgers a manager also sees on those members' cards). A date range narrows members by
registration and the rest by when the row was written.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tortoise.expressions import Q, Subquery
from tortoise.queryset import QuerySet

from bot.infra.paging import value_batches
from bot.infra.vault import Vault, mask_phone
from bot.models import Member, PointsEntry, Purchase, Staff, Store, StoredValueEntry
from bot.rules.earning import fen_to_yuan

BATCH = 1000
BOM = "\ufeff"
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
POINTS_KINDS = {"earn": "获得", "redeem": "兑换", "expire": "过期", "adjust": "调整",
                "reverse": "撤销冲回"}
STORED_VALUE_KINDS = {"topup": "充值", "bonus": "赠送", "pay": "消费", "refund": "退款"}


def safe(text: str | None) -> str:
    """A cell Excel shows as text, never runs as a formula (CSV injection)."""
    text = text or ""
    return f"'{text}" if text.startswith(_FORMULA_START) else text


@dataclass(frozen=True)
class Names:
    """What ids in the rows stand for, loaded once per export (stores and staff are few)."""

    stores: dict[int, str]
    staff: dict[int, str]
    tz: dt.tzinfo
    vault: Vault

    # Names staff typed (an invited employee's, a store's) go out as text, like members' names.
    def store(self, store_id: int | None) -> str:
        return safe(self.stores.get(store_id, "")) if store_id else ""

    def employee(self, staff_id: int | None) -> str:
        return safe(self.staff.get(staff_id, "")) if staff_id else ""

    def time(self, at: dt.datetime | None) -> str:
        return at.astimezone(self.tz).strftime("%Y-%m-%d %H:%M:%S") if at else ""

    def phone(self, phone_enc: str | None, erased: dt.datetime | None) -> str:
        if erased or not phone_enc:
            return ""
        try:
            return mask_phone(self.vault.decrypt(phone_enc))
        except ValueError:  # a key no longer held: the row still goes out
            return "***"


@dataclass(frozen=True)
class Kind:
    name: str  # the URL's and the file's
    label: str
    header: tuple[str, ...]
    fields: tuple[str, ...]  # values_list, the id first (the keyset)
    row: Callable[[Names, tuple], list[Any]]
    query: Callable[[int | None, dt.datetime | None, dt.datetime | None], QuerySet]


def members_of(store_id: int) -> QuerySet:
    """Members a store's manager sees: signed up there, or bought there."""
    bought = Purchase.filter(store_id=store_id).values("member_id")
    return Member.filter(Q(store_id=store_id) | Q(id__in=Subquery(bought)))


def _between(query: QuerySet, field: str, since: dt.datetime | None,
             until: dt.datetime | None) -> QuerySet:
    if since is not None:
        query = query.filter(**{f"{field}__gte": since})
    if until is not None:
        query = query.filter(**{f"{field}__lt": until})
    return query


def _members(store_id, since, until) -> QuerySet:
    query = members_of(store_id) if store_id is not None else Member.all()
    return _between(query, "registered_at", since, until)


def _member_row(n: Names, r: tuple) -> list[Any]:
    (_, card_no, phone_enc, erased, name, year, month, day, tier, points, stored, store_id,
     registered_at) = r
    birthday = "" if not (month and day) else (
        f"{year:04d}-{month:02d}-{day:02d}" if year else f"{month:02d}-{day:02d}")
    return [card_no, n.phone(phone_enc, erased), safe(name), birthday, tier, points,
            fen_to_yuan(stored), n.store(store_id), n.time(registered_at),
            "已注销" if erased else ""]


def _purchases(store_id, since, until) -> QuerySet:
    query = Purchase.all() if store_id is None else Purchase.filter(store_id=store_id)
    return _between(query, "created_at", since, until)


def _purchase_row(n: Names, r: tuple) -> list[Any]:
    (serial, at, store_id, staff_id, card_no, phone_enc, erased, amount, points, note,
     voided) = r
    return [serial, n.time(at), n.store(store_id), n.employee(staff_id), card_no,
            n.phone(phone_enc, erased), fen_to_yuan(amount), points, safe(note),
            n.time(voided)]


def _ledger(model, store_id, since, until) -> QuerySet:
    query = model.all()
    if store_id is not None:
        query = query.filter(member_id__in=Subquery(members_of(store_id).values("id")))
    return _between(query, "created_at", since, until)


def _points_row(n: Names, r: tuple) -> list[Any]:
    (entry_id, at, card_no, phone_enc, erased, kind, delta, balance, reason, purchase_id,
     expires_on) = r
    return [entry_id, n.time(at), card_no, n.phone(phone_enc, erased),
            POINTS_KINDS.get(kind, kind), delta, balance, safe(reason), purchase_id or "",
            expires_on.isoformat() if expires_on and delta > 0 else ""]


def _stored_value_row(n: Names, r: tuple) -> list[Any]:
    (entry_id, at, store_id, staff_id, card_no, phone_enc, erased, kind, delta, balance,
     reason) = r
    return [entry_id, n.time(at), n.store(store_id), n.employee(staff_id), card_no,
            n.phone(phone_enc, erased), STORED_VALUE_KINDS.get(kind, kind), fen_to_yuan(delta),
            fen_to_yuan(balance), safe(reason)]


_MEMBER = ("member__card_no", "member__phone_enc", "member__erased_at")
KINDS = {kind.name: kind for kind in (
    Kind("members", "会员",
         ("卡号", "手机", "姓名", "生日", "等级", "积分", "储值余额(元)", "注册门店", "注册时间",
          "状态"),
         ("id", "card_no", "phone_enc", "erased_at", "name", "birth_year", "birth_month",
          "birth_day", "tier", "points", "stored_value", "store_id", "registered_at"),
         _member_row, _members),
    Kind("purchases", "消费记录",
         ("流水号", "时间", "门店", "店员", "卡号", "手机", "金额(元)", "积分", "备注", "撤销时间"),
         ("id", "created_at", "store_id", "staff_id", *_MEMBER, "amount", "points", "note",
          "voided_at"),
         _purchase_row, _purchases),
    Kind("points", "积分明细",
         ("编号", "时间", "卡号", "手机", "类型", "积分变动", "变动后余额", "原因", "消费流水号",
          "到期日"),
         ("id", "created_at", *_MEMBER, "kind", "delta", "balance_after", "reason",
          "purchase_id", "expires_on"),
         _points_row, lambda s, a, b: _ledger(PointsEntry, s, a, b)),
    Kind("stored_value", "储值明细",
         ("编号", "时间", "门店", "店员", "卡号", "手机", "类型", "金额(元)", "变动后余额(元)",
          "原因"),
         ("id", "created_at", "store_id", "staff_id", *_MEMBER, "kind", "delta",
          "balance_after", "reason"),
         _stored_value_row, lambda s, a, b: _ledger(StoredValueEntry, s, a, b)),
)}


def _encode(names: Names, kind: Kind, rows: Sequence[tuple], header: bool) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    if header:
        out.write(BOM)
        writer.writerow(kind.header)
    writer.writerows(kind.row(names, row) for row in rows)
    return out.getvalue().encode("utf-8")


async def chunks(bot, kind: Kind, *, store_id: int | None, since: dt.datetime | None,
                 until: dt.datetime | None, batch: int | None = None) -> AsyncIterator[bytes]:
    """The CSV, a chunk per batch of rows; the first is the BOM and the header. Decrypting
    and formatting a batch run beside the event loop."""
    names = Names(dict(await Store.all().values_list("id", "name")),
                  dict(await Staff.all().values_list("id", "name")), bot.config.shop.tz,
                  bot.vault)
    yield await asyncio.to_thread(_encode, names, kind, (), True)
    async for rows in value_batches(kind.query(store_id, since, until), *kind.fields,
                                    size=batch or BATCH):
        yield await asyncio.to_thread(_encode, names, kind, rows, False)
