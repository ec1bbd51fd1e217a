"""Finding members for staff (the console's Members page): by phone, card number or name, within
what the employee may see, a page at a time.

- A phone (11 digits, +86 and spaces allowed) is found through its lookup hash under every key
  the vault holds (bot/infra/vault.py): a phone is never decrypted to search. The unique index
  on member.phone_hash answers it.
- Digits are also the start of a card number: a range on the unique index on member.card_no
  (an exact number sorts first). Staff often type only the first digits they see on a card.
- Anything else is part of a name: names containing it, those that start with it first. No
  B-tree finds a substring, so this one reads the member table once (no decrypting: names are
  plain); with 100,000 members that is tens of milliseconds on SQLite and PostgreSQL.
- An empty query lists members newest first (the primary key, read backwards).

Scope: an owner (store_id None) sees every member; anyone else the members who signed up at
their store (member.store_id) or bought there (purchase.store_id, through the purchase
(store_id, member_id) index). Members who erased their data (注销) are not found: they have no
phone or name left, and 查询 refuses them too.

Pages are LIMIT/OFFSET with one row more than asked, to know whether there is a next page;
a page is at most MAX_LIMIT rows, so no list is unbounded.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from bot.infra import sql
from bot.infra.vault import mask_phone
from bot.models import Member
from bot.rules.parsing import normalize_phone, normalize_text

LIMIT = 20
MAX_LIMIT = 100
MAX_OFFSET = 10_000  # deeper than anyone pages; a narrower query is the answer there
QUERY_MAX = 32  # characters: a name is at most 20, a card number 16


class Key(StrEnum):
    """What a query was taken to be."""

    ALL = "all"  # empty: the newest members
    PHONE = "phone"  # a phone number, and card numbers starting with its digits
    CARD = "card"  # digits: the start of a card number
    NAME = "name"  # part of a name


@dataclass(frozen=True)
class Hit:
    id: int
    card_no: str
    name: str
    tier: str
    points: int
    stored_value: int  # fen
    store: str  # the home store's name ("" if none)
    phone: str  # masked: 138****8000


@dataclass(frozen=True)
class Results:
    query: str
    key: Key
    hits: tuple[Hit, ...]
    limit: int
    offset: int
    more: bool  # there is a next page

    @property
    def next_offset(self) -> int | None:
        return self.offset + self.limit if self.more else None

    @property
    def previous_offset(self) -> int | None:
        return max(self.offset - self.limit, 0) if self.offset else None


class _Params:
    """$1, $2, … in the order they are written into the statement."""

    def __init__(self) -> None:
        self.values: list[Any] = []

    def __call__(self, value: Any) -> str:
        self.values.append(value)
        return f"${len(self.values)}"


def classify(query: str) -> tuple[Key, str]:
    """What a query means, and its normalised text."""
    text = normalize_text(query)[:QUERY_MAX]
    if not text:
        return Key.ALL, ""
    phone = normalize_phone(text)
    if phone:
        return Key.PHONE, phone
    compact = text.replace(" ", "")
    if compact.isascii() and compact.isdigit():
        return Key.CARD, compact
    return Key.NAME, text


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _digits_after(prefix: str) -> str:
    """The smallest string of digits above every string that starts with `prefix` (digits):
    "8812" → "8813", "889" → "89", "99" → ":" (the character after "9")."""
    head = prefix.rstrip("9")
    if not head:
        return ":"
    return head[:-1] + chr(ord(head[-1]) + 1)


def _scope(store_id: int | None, p: _Params, *, few: bool) -> str:
    """The store's members. For `few` candidates (a phone, a card number) each is probed on
    purchase's (member_id, …) index; for many (a name, every member) the store's purchasers
    are read once from its (store_id, member_id) index, a set each row is checked against."""
    if store_id is None:
        return ""
    if few:
        return (f" AND (m.store_id = {p(store_id)} OR EXISTS (SELECT 1 FROM purchase pu "
                f"WHERE pu.member_id = m.id AND pu.store_id = {p(store_id)}))")
    return (f" AND (m.store_id = {p(store_id)} OR m.id IN (SELECT member_id FROM purchase "
            f"WHERE store_id = {p(store_id)}))")


def _like(text: str) -> str:
    """LIKE, or ILIKE on PostgreSQL for a query with Latin letters. SQLite's LIKE already
    ignores the case of ASCII letters; PostgreSQL's ILIKE costs several times a LIKE, and
    Chinese has no case."""
    if sql.dialect() == "postgres" and any("a" <= c.lower() <= "z" for c in text):
        return "ILIKE"
    return "LIKE"


_COLUMNS = ("m.id, m.card_no, m.name, m.tier, m.points, m.stored_value, m.phone_enc, "
            "s.name AS store_name")


async def search(bot, query: str, store_id: int | None, limit: int = LIMIT,
                 offset: int = 0) -> Results:
    """One page of the members `query` finds within `store_id`'s scope (None: every store)."""
    key, text = classify(query)
    limit = min(max(limit, 1), MAX_LIMIT)
    offset = min(max(offset, 0), MAX_OFFSET)
    p = _Params()
    like = _like(text)
    if key is Key.NAME:
        match = f"m.name {like} {p('%' + _escape_like(text) + '%')} ESCAPE '\\'"
    elif key is Key.CARD:
        match = f"m.card_no >= {p(text)} AND m.card_no < {p(_digits_after(text))}"
    elif key is Key.PHONE:
        hashes = ", ".join(p(h) for h in bot.vault.lookup_hashes(text))
        match = (f"(m.phone_hash IN ({hashes}) OR (m.card_no >= {p(text)} "
                 f"AND m.card_no < {p(_digits_after(text))}))")
    else:
        match = "1 = 1"
    scope = _scope(store_id, p, few=key in (Key.PHONE, Key.CARD))
    if key is Key.NAME:
        order = (f"CASE WHEN m.name {like} {p(_escape_like(text) + '%')} ESCAPE '\\' "
                 "THEN 0 ELSE 1 END, m.name, m.id")
    elif key is Key.ALL:
        order = "m.id DESC"
    else:
        order = "m.card_no"  # an exact card number first; a phone's member is one row
    statement = (f"SELECT {_COLUMNS} FROM member m LEFT JOIN store s ON s.id = m.store_id "
                 f"WHERE {match} AND m.erased_at IS NULL{scope} ORDER BY {order} "
                 f"LIMIT {p(limit + 1)} OFFSET {p(offset)}")
    rows = await sql.fetch(statement, *p.values)
    hits = tuple(_hit(bot, row) for row in rows[:limit])
    return Results(query=text, key=key, hits=hits, limit=limit, offset=offset,
                   more=len(rows) > limit)


def _hit(bot, row: dict[str, Any]) -> Hit:
    return Hit(id=row["id"], card_no=row["card_no"], name=row["name"], tier=row["tier"],
               points=row["points"], stored_value=row["stored_value"],
               store=row["store_name"] or "", phone=masked_phone(bot, row["phone_enc"]))


def masked_phone(bot, phone_enc: str) -> str:
    """138****8000: the clear number exists only inside this call; only the mask leaves it."""
    if not phone_enc:
        return "—"  # erased
    return mask_phone(bot.vault.decrypt(phone_enc))


async def visible(member_id: int, store_id: int | None) -> Member | None:
    """The member, if `store_id`'s staff may see them (None: an owner, every member): they
    signed up at the store or bought there. None otherwise, exactly as for no such member."""
    member = await Member.get_or_none(id=member_id)
    if member is None or store_id is None or member.store_id == store_id:
        return member
    bought = await sql.fetch("SELECT 1 AS x FROM purchase WHERE member_id = $1 AND store_id = $2 "
                             "LIMIT 1", member_id, store_id)
    return member if bought else None
