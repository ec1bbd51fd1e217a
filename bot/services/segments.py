"""Segments: which members an operation is meant for, named in a short text (the language is in
bot/rules/segments.py, its meanings in docs/segments.md), evaluated in SQL.

A segment is a campaign's audience, so it never holds a member who must not get one: an erased
member (注销: only a row kept for the ledgers) or one who said 退订 (no marketing). Issuing to them
would use up stock for nobody, or market to someone who said no.

Members are walked by id in batches (keyset), each batch one statement in which every condition
is a subquery on the member's own rows (purchase by (member_id, created_at), member_tag by
(member_id, tag)): the work grows with the members walked, never the whole table per batch, and
nothing holds every member at once. RFM needs the shop's baselines first: one aggregate query.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from tortoise import connections

from bot.clock import local_midnight, local_today, utcnow
from bot.config import Config, SegmentsConfig, ShopConfig
from bot.infra import sql
from bot.models import Member, MemberTag
from bot.rules import segments as language
from bot.rules.segments import (
    RFM_CLASSES,
    Condition,
    Expression,
    SegmentSyntaxError,
    UnknownSegment,
)

__all__ = ["Baseline", "Segment", "SegmentSyntaxError", "UnknownSegment", "baseline",
           "check_tags", "count", "id_batches", "members", "parse", "parse_checked",
           "rfm_grid"]

WINDOW_DAYS = 365  # visits_12m, spend_12m: today and the 364 days before it


@dataclass(frozen=True)
class Segment:
    """A parsed expression with what evaluating it takes from the shop's config: its timezone
    (relative conditions count the shop's days) and the RFM settings."""

    expression: Expression = field(default_factory=Expression)  # default: all
    tz: dt.tzinfo = ShopConfig().tz
    rfm_baseline: str = SegmentsConfig().rfm_baseline  # median | mean
    rfm_days: int = SegmentsConfig().rfm_days

    def __str__(self) -> str:
        return str(self.expression)


def parse(text: str, config: Config | None = None) -> Segment:
    """The segment a text names, or SegmentSyntaxError (an UnknownSegment). With the config,
    tiers and stores are checked against it and its timezone and RFM settings are used (pass
    it: without, the defaults of config.py apply)."""
    if config is None:
        return Segment(language.parse(text))
    expression = language.parse(text, tiers=[tier.name for tier in config.tiers],
                                stores=[store.code for store in config.stores])
    return Segment(expression, config.shop.tz, config.segments.rfm_baseline,
                   config.segments.rfm_days)


KNOWN_TAGS_SHOWN = 5  # a few tags that exist, to set a typo right


async def check_tags(segment: Segment) -> None:
    """SegmentSyntaxError at the first tag no member carries: most likely a typo, which would
    otherwise select nobody (tag=…) or everybody (tag!=…) without a word."""
    for condition in segment.expression.of("tag"):
        if not await MemberTag.exists(tag=condition.value):
            known = await MemberTag.all().distinct().order_by("tag").limit(KNOWN_TAGS_SHOWN) \
                .values_list("tag", flat=True)
            raise SegmentSyntaxError(f"no member has the tag {condition.value!r}",
                                     condition.position + len("tag") + len(condition.op),
                                     f"tag={known[0] if known else '瑜伽'}", "unknown_name",
                                     field="tag", text=condition.value, known=tuple(known))


async def parse_checked(text: str, config: Config) -> Segment:
    """parse() with the config, and the tags checked: what a person's typed segment gets."""
    segment = parse(text, config)
    await check_tags(segment)
    return segment


# --- RFM baselines ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Baseline:
    """The shop's RFM baselines over `buyers` (members, not erased, with a purchase in the last
    rfm_days): recency as epoch seconds of their last purchase, frequency as purchases, money
    as fen. A member is high on one when strictly above it; with no buyers all are None and
    everyone is low."""

    buyers: int
    recency: Fraction | None = None
    frequency: Fraction | None = None
    money: Fraction | None = None


def _epoch_seconds(column: str) -> str:
    if connections.get("default").capabilities.dialect == "sqlite":
        return f"CAST(strftime('%s', {column}) AS INTEGER)"
    return f"CAST(FLOOR(EXTRACT(EPOCH FROM {column})) AS BIGINT)"


def _baseline_sql() -> str:
    # Medians by rank: the values at ranks (n+1)/2 and n/2+1 (one row twice when n is odd),
    # summed here and halved in Python, so the median stays an exact fraction.
    def middle(x: str) -> str:
        return " + ".join(f"MIN(CASE WHEN n{x} = {rank} THEN {x} END)"
                          for rank in ("(n + 1) / 2", "n / 2 + 1"))

    return f"""
WITH buyer AS (
  SELECT COUNT(*) AS f, SUM(p.amount) AS m, MAX({_epoch_seconds("p.created_at")}) AS r
  FROM purchase p JOIN member b ON b.id = p.member_id
  WHERE p.voided_at IS NULL AND p.created_at >= $1 AND b.erased_at IS NULL
  GROUP BY p.member_id
), ranked AS (
  SELECT f, m, r, ROW_NUMBER() OVER (ORDER BY f) AS nf, ROW_NUMBER() OVER (ORDER BY m) AS nm,
         ROW_NUMBER() OVER (ORDER BY r) AS nr, COUNT(*) OVER () AS n
  FROM buyer
)
SELECT MAX(n) AS n, SUM(f) AS f_sum, SUM(m) AS m_sum, SUM(r) AS r_sum,
       {middle("f")} AS f_mid, {middle("m")} AS m_mid, {middle("r")} AS r_mid
FROM ranked"""


async def baseline(segment: Segment, today: dt.date) -> Baseline:
    since = _since(segment, today, segment.rfm_days)
    row = (await sql.fetch(_baseline_sql(), since))[0]
    if not row["n"]:
        return Baseline(0)
    n = int(row["n"])
    if segment.rfm_baseline == "mean":
        return Baseline(n, *(Fraction(int(row[f"{x}_sum"]), n) for x in "rfm"))
    return Baseline(n, *(Fraction(int(row[f"{x}_mid"]), 2) for x in "rfm"))


# --- conditions as SQL ------------------------------------------------------------------------

class _Params:
    """Placeholders in order, as bot/infra/sql.py wants them ($1, $2, … once each)."""

    def __init__(self, first: list[Any] | None = None) -> None:
        self.values: list[Any] = list(first or [])

    def __call__(self, value: Any) -> str:
        self.values.append(value)
        return f"${len(self.values)}"


_SQL_OP = {"=": "=", "!=": "<>", ">": ">", ">=": ">=", "<": "<", "<=": "<="}
_LIVE = "p.member_id = m.id AND p.voided_at IS NULL"


def _since(segment: Segment, today: dt.date, days: int) -> dt.datetime:
    """The first instant of a window of `days` days ending today (the shop's days)."""
    return local_midnight(today - dt.timedelta(days=days - 1), segment.tz)


def _condition_sql(c: Condition, segment: Segment, today: dt.date, base: Baseline | None,
                   p: _Params) -> str:
    if c.op == "!=":  # exactly the members `=` leaves out
        return f"NOT ({_condition_sql(Condition(c.field, '=', c.value), segment, today, base, p)})"
    op = _SQL_OP[c.op]
    match c.field:
        case "tier":
            return f"m.tier = {p(c.value)}"
        case "store":
            return (f"EXISTS (SELECT 1 FROM store s WHERE s.id = m.store_id "
                    f"AND s.code = {p(c.value)})")
        case "tag":
            return (f"EXISTS (SELECT 1 FROM member_tag t WHERE t.member_id = m.id "
                    f"AND t.tag = {p(c.value)})")
        case "birthday_month":  # never NULL, so that NOT gives its exact complement
            return f"(m.birth_month IS NOT NULL AND m.birth_month {op} {p(c.value)})"
        case "visits_12m" | "spend_12m":
            total = "COUNT(*)" if c.field == "visits_12m" else "COALESCE(SUM(p.amount), 0)"
            since = _since(segment, today, WINDOW_DAYS)
            return (f"(SELECT {total} FROM purchase p WHERE {_LIVE} AND p.created_at >= "
                    f"{p(since)}) {op} {p(c.value)}")
        case "last_visit":
            return _last_visit_sql(c.op, c.value, segment, today, p)
        case "rfm":
            return _rfm_sql(RFM_CLASSES[c.value], segment, today, base, p)
    raise AssertionError(c.field)


def _last_visit_sql(op: str, days: int, segment: Segment, today: dt.date, p: _Params) -> str:
    """days since the last visit = today − the shop's date of the last live purchase; a member
    who never bought has none, which counts as longer ago than any number of days. Each form
    is "was there a purchase since the start of some day", which the index answers."""

    def since(day: dt.date) -> str:
        return (f"EXISTS (SELECT 1 FROM purchase p WHERE {_LIVE} AND p.created_at >= "
                f"{p(local_midnight(day, segment.tz))})")

    day = today - dt.timedelta(days=days)  # the date of a visit exactly `days` ago
    after = day + dt.timedelta(days=1)
    match op:
        case ">":
            return f"NOT {since(day)}"
        case ">=":
            return f"NOT {since(after)}"
        case "<":
            return since(after)
        case "<=":
            return since(day)
        case "=":
            return f"({since(day)} AND NOT {since(after)})"
    raise AssertionError(op)


def _recent_from(base: Baseline, since: dt.datetime) -> dt.datetime:
    """Recency is high when the last purchase's second is above the baseline, i.e. there is a
    purchase in the window at or after the first whole second past it."""
    return max(since, dt.datetime.fromtimestamp(int(base.recency) + 1, dt.UTC))


def _rfm_sql(high: tuple[bool, bool, bool], segment: Segment, today: dt.date,
             base: Baseline | None, p: _Params) -> str:
    if base is None or not base.buyers:
        return "1 = 1" if not any(high) else "1 = 0"  # nobody bought: everyone is low
    since = _since(segment, today, segment.rfm_days)
    recent = (f"EXISTS (SELECT 1 FROM purchase p WHERE {_LIVE} AND p.created_at >= "
              f"{p(_recent_from(base, since))})")
    parts = [recent if high[0] else f"NOT {recent}"]
    for is_high, total, value in ((high[1], "COUNT(*)", base.frequency),
                                  (high[2], "COALESCE(SUM(p.amount), 0)", base.money)):
        # total > num/den, in integers: total * den > num.
        parts.append(f"(SELECT {total} * {p(value.denominator)} FROM purchase p WHERE {_LIVE} "
                     f"AND p.created_at >= {p(since)}) {'>' if is_high else '<='} "
                     f"{p(value.numerator)}")
    return "(" + " AND ".join(parts) + ")"


def _where(segment: Segment, today: dt.date, base: Baseline | None, p: _Params) -> str:
    parts = ["m.erased_at IS NULL", "m.marketing_opt_out_at IS NULL"]
    parts += [_condition_sql(c, segment, today, base, p) for c in segment.expression.conditions]
    return " AND ".join(parts)


async def _prepare(segment: Segment, today: dt.date | None) -> tuple[dt.date, Baseline | None]:
    today = today or local_today(utcnow(), segment.tz)
    needs_rfm = bool(segment.expression.of("rfm"))
    return today, (await baseline(segment, today) if needs_rfm else None)


# --- the API ----------------------------------------------------------------------------------

async def id_batches(segment: Segment, *, today: dt.date | None = None,
                     size: int = 500, after: int = 0) -> AsyncIterator[list[int]]:
    """The segment's member ids in ascending batches: what a campaign streams its audience by.
    `today` (the shop's date, default: now's) anchors relative conditions (last_visit>30d, the
    12 months of visits_12m); the RFM baselines are taken once, at the start. `after`: only
    ids above it (a page after the one that ended there)."""
    if size < 1:
        raise ValueError("a batch holds at least one member")
    today, base = await _prepare(segment, today)
    while True:
        p = _Params([after])
        where = _where(segment, today, base, p)
        rows = await sql.fetch(f"SELECT m.id FROM member m WHERE m.id > $1 AND {where} "
                               f"ORDER BY m.id LIMIT {p(size)}", *p.values)
        if not rows:
            return
        ids = [row["id"] for row in rows]
        yield ids
        after = ids[-1]


async def members(segment: Segment, *, today: dt.date | None = None,
                  size: int = 500) -> AsyncIterator[list[Member]]:
    """The segment's members, `size` at a time, in id order (id_batches, loaded)."""
    async for ids in id_batches(segment, today=today, size=size):
        yield await Member.filter(id__in=ids).order_by("id")


async def count(segment: Segment, *, today: dt.date | None = None) -> int:
    today, base = await _prepare(segment, today)
    p = _Params()
    where = _where(segment, today, base, p)
    rows = await sql.fetch(f"SELECT COUNT(*) AS n FROM member m WHERE {where}", *p.values)
    return int(rows[0]["n"])


async def rfm_grid(scope: Segment, *, today: dt.date | None = None
                   ) -> tuple[Baseline, dict[str, int]]:
    """How many of the scope's members (e.g. `store=S001`, or all) fall in each RFM class, in
    one aggregate statement: the window's purchases summed per member, joined to the members
    and grouped by the three scores. Every class is present (0 included); the counts are what
    `<scope> rfm=<class>` counts, since both take the same baselines and thresholds."""
    if scope.expression.of("rfm"):
        raise ValueError("the scope of an RFM grid cannot itself name an RFM class")
    today = today or local_today(utcnow(), scope.tz)
    base = await baseline(scope, today)
    counts = dict.fromkeys(RFM_CLASSES, 0)
    p = _Params()
    if not base.buyers:  # nobody bought: everyone is low on all three
        where = _where(scope, today, None, p)
        rows = await sql.fetch(f"SELECT COUNT(*) AS n FROM member m WHERE {where}", *p.values)
        counts[_CLASS_OF[(False, False, False)]] = int(rows[0]["n"])
        return base, counts
    since = _since(scope, today, scope.rfm_days)
    # Built in the order the placeholders appear in the text.
    head = (f"SELECT CASE WHEN b.last_at >= {p(_recent_from(base, since))} THEN 1 ELSE 0 END "
            f"AS r, CASE WHEN COALESCE(b.f, 0) * {p(base.frequency.denominator)} > "
            f"{p(base.frequency.numerator)} THEN 1 ELSE 0 END AS f, "
            f"CASE WHEN COALESCE(b.m, 0) * {p(base.money.denominator)} > "
            f"{p(base.money.numerator)} THEN 1 ELSE 0 END AS mo, COUNT(*) AS n ")
    joined = ("FROM member m LEFT JOIN (SELECT p.member_id, COUNT(*) AS f, SUM(p.amount) AS m, "
              "MAX(p.created_at) AS last_at FROM purchase p WHERE p.voided_at IS NULL AND "
              f"p.created_at >= {p(since)} GROUP BY p.member_id) b ON b.member_id = m.id ")
    where = _where(scope, today, None, p)
    rows = await sql.fetch(f"{head}{joined}WHERE {where} GROUP BY 1, 2, 3", *p.values)
    for row in rows:
        high = (bool(row["r"]), bool(row["f"]), bool(row["mo"]))
        counts[_CLASS_OF[high]] += int(row["n"])
    return base, counts


_CLASS_OF = {high: name for name, high in RFM_CLASSES.items()}
