"""Birthday selection over 1,000,000 members, on SQLite and PostgreSQL.

    .venv/bin/python bench/birthday.py [--members 1000000] [--date 05-01] [--pg URL | --pg '']

The question a birthday job asks every morning: which members have their birthday today?
`Member.filter(birth_month=m, birth_day=d, erased_at=None)` must be answered from the index on
(birth_month, birth_day) that bot/models/member.py declares, not by reading every row.

For each database this script
1. creates the schema through bot.infra.db.open_database (so the index is exactly the model's),
2. seeds `--members` rows in one INSERT … SELECT (a recursive CTE on SQLite,
   generate_series on PostgreSQL): birthdays spread over the 366 days of a leap year, 1 in 10
   members without one, 1 in 200 erased;
3. prints the query plan of the ORM's own SQL (EXPLAIN QUERY PLAN / EXPLAIN ANALYZE) and checks
   that it names the birthday index;
4. times the query through the ORM and as raw SQL (median of --repeat runs, a different day
   each run), against two ceilings: the same query with the index made unusable (SQLite
   `NOT INDEXED`, PostgreSQL `birth_month + 0 = m`), i.e. a scan of every row, and a plain
   COUNT(*) of the table (SQLite answers that from the b-tree without reading rows, so there it
   is a floor rather than a ceiling); and prints indexed/scan as a ratio.
It also checks 28 February in a non-leap year, when members born on the 29th celebrate too
(`birth_day IN (28, 29)`): still an index search; and the birthday job's own keyset pages
(bot/services/birthdays.py `celebrating`, `id > last ORDER BY id LIMIT 500`, one query per
birth date), which must search the same index rather than walk the primary key.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import statistics
import tempfile
import time
from pathlib import Path

from tortoise import connections
from webhook import reset_postgres  # bench/ is on the path when a bench script runs

from bot.infra.db import close_database, open_database
from bot.models import Member
from bot.services.birthdays import celebrating

PG_DEFAULT = "postgres://postgres@127.0.0.1:5432/memberbot_bench"
COLUMNS = ("id", "tier", "name")

SEED_SQLITE = """
INSERT INTO member (card_no, phone_hash, phone_enc, name, birth_year, birth_month, birth_day,
                    tier, points, stored_value, registered_at, erased_at)
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {count}),
     d(i, day) AS (SELECT i, date('2000-01-01', '+' || ((i * 7919) % 366) || ' days') FROM n)
SELECT printf('88%08d', i), printf('%064x', i), 'seeded', '会员' || i,
       CASE WHEN i % 10 = 0 THEN NULL ELSE 1950 + i % 55 END,
       CASE WHEN i % 10 = 0 THEN NULL ELSE CAST(strftime('%m', day) AS INTEGER) END,
       CASE WHEN i % 10 = 0 THEN NULL ELSE CAST(strftime('%d', day) AS INTEGER) END,
       '普通会员', i % 1000, 0, '2025-01-01 00:00:00+00:00',
       CASE WHEN i % 200 = 0 THEN '2025-06-01 00:00:00+00:00' END
FROM d
"""

SEED_PG = """
INSERT INTO member (card_no, phone_hash, phone_enc, name, birth_year, birth_month, birth_day,
                    tier, points, stored_value, registered_at, erased_at)
SELECT '88' || lpad(i::text, 8, '0'), lpad(to_hex(i), 64, '0'), 'seeded', '会员' || i,
       CASE WHEN i % 10 = 0 THEN NULL ELSE 1950 + i % 55 END,
       CASE WHEN i % 10 = 0 THEN NULL ELSE extract(month FROM day)::int END,
       CASE WHEN i % 10 = 0 THEN NULL ELSE extract(day FROM day)::int END,
       '普通会员', i % 1000, 0, timestamptz '2025-01-01 00:00:00+00',
       CASE WHEN i % 200 = 0 THEN timestamptz '2025-06-01 00:00:00+00' END
FROM (SELECT i, date '2000-01-01' + ((i::bigint * 7919) % 366)::int AS day
      FROM generate_series(1, {count}) AS i) AS s
"""


def birthday_query(month: int, days: tuple[int, ...]):
    """The selection as the bot's code would write it."""
    filters = {"birth_day": days[0]} if len(days) == 1 else {"birth_day__in": list(days)}
    return Member.filter(birth_month=month, erased_at=None, **filters).values_list(*COLUMNS)


def raw_sql(month: int, days: tuple[int, ...], sqlite: bool, indexed: bool = True) -> str:
    """The ORM's query by hand; indexed=False makes the index unusable: SQLite's NOT INDEXED,
    and on PostgreSQL `+ 0` on the columns (a planner setting would not do: asyncpg caches the
    plan of a statement it has prepared before)."""
    source = "member NOT INDEXED" if sqlite and not indexed else "member"
    column = "{} + 0" if not sqlite and not indexed else "{}"
    day = f"= {days[0]}" if len(days) == 1 else f"IN ({', '.join(map(str, days))})"
    return (f"SELECT {', '.join(COLUMNS)} FROM {source} WHERE {column.format('birth_month')} "
            f"= {month} AND {column.format('birth_day')} {day} AND erased_at IS NULL")


def test_days(month: int, day: int, repeat: int) -> list[tuple[int, tuple[int, ...]]]:
    """`repeat` different (month, day) pairs starting at the given one (no repeated pages)."""
    start = dt.date(2000, month, day)
    days = [start + dt.timedelta(days=7 * k) for k in range(repeat)]
    return [(d.month, (d.day,)) for d in days]


async def timed(make, runs: list) -> tuple[float, int]:
    """Median seconds over runs, and the rows the first run returned."""
    times, rows = [], None
    for args in runs:
        started = time.perf_counter()
        result = await make(*args)
        times.append(time.perf_counter() - started)
        rows = len(result) if rows is None else rows
    return statistics.median(times), rows or 0


async def seed(url: str, count: int, sqlite: bool) -> float:
    conn = connections.get("default")
    existing = (await conn.execute_query("SELECT COUNT(*) FROM member"))[1][0][0]
    if existing == count:
        return 0.0
    if existing:
        raise SystemExit(f"{url}: member holds {existing} rows, not {count}; use a fresh one")
    started = time.perf_counter()
    if sqlite:
        await conn.execute_script("BEGIN; " + SEED_SQLITE.format(count=count) + "; COMMIT;")
        await conn.execute_script("ANALYZE member;")
    else:
        await conn.execute_script("SET synchronous_commit = off; "
                                  + SEED_PG.format(count=count) + ";")
        await conn.execute_script("VACUUM ANALYZE member;")
    return time.perf_counter() - started


async def explain(sql: str, sqlite: bool) -> list[str]:
    conn = connections.get("default")
    if sqlite:
        _, rows = await conn.execute_query(f"EXPLAIN QUERY PLAN {sql}")
        return [str(dict(r)["detail"]) for r in rows]
    _, rows = await conn.execute_query(f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {sql}")
    return [str(dict(r)["QUERY PLAN"]) for r in rows]


async def birthday_index(sqlite: bool) -> str:
    """The name of the index on member(birth_month, birth_day), from the catalog."""
    conn = connections.get("default")
    if sqlite:
        sql = ("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'member' "
               "AND sql LIKE '%birth_month%birth_day%'")
    else:
        sql = ("SELECT indexname FROM pg_indexes WHERE tablename = 'member' "
               "AND indexdef LIKE '%birth_month%birth_day%'")
    rows = (await conn.execute_query(sql))[1]
    if not rows:
        raise SystemExit("no index on member(birth_month, birth_day): see bot/models/member.py")
    return rows[0][0]


async def scan_query(month: int, days: tuple[int, ...], sqlite: bool, explain: bool = False):
    """The same selection with the index unusable: every row is read."""
    sql = raw_sql(month, days, sqlite, indexed=False)
    if explain:
        sql = f"EXPLAIN QUERY PLAN {sql}" if sqlite else f"EXPLAIN (COSTS OFF) {sql}"
    return (await connections.get("default").execute_query(sql))[1]


async def run_one(label: str, url: str, args) -> bool:
    sqlite = url.startswith("sqlite")
    await open_database(url)
    try:
        seconds = await seed(url, args.members, sqlite)
        print(f"\n=== {label}: {args.members:,} members "
              + (f"(seeded in {seconds:.1f} s)" if seconds else "(already seeded)") + " ===")
        month, day = (int(x) for x in args.date.split("-"))
        index = await birthday_index(sqlite)
        ok = True
        for title, m, days in ((f"birthday {month:02d}-{day:02d}", month, (day,)),
                               ("28 Feb in a non-leap year (28th and 29th)", 2, (28, 29))):
            sql = birthday_query(m, days).sql(params_inline=True)
            plan = await explain(sql, sqlite)
            uses_index = any(index in line for line in plan) and not any(
                "SCAN member" in line or "Seq Scan" in line for line in plan)
            ok &= uses_index
            print(f"\n{title}: {sql}")
            print("plan:\n" + "\n".join(f"  {line}" for line in plan))
            print(f"uses the index {index} (birth_month, birth_day): "
                  f"{'yes' if uses_index else 'NO'}")
        # The birthday job's own pages (bot/services/birthdays.py): one query per birth date,
        # keyset-paged on id. `birth_day IN (28, 29) ORDER BY id LIMIT n` would make
        # PostgreSQL walk the primary key instead of the index.
        for on in (dt.date(2031, month, day), dt.date(2031, 2, 28)):
            for query in celebrating(on, dt.UTC):
                page = query.filter(id__gt=args.members // 2).order_by("id").limit(500)
                sql = page.values_list(*COLUMNS).sql(params_inline=True)
                plan = await explain(sql, sqlite)
                uses_index = any(index in line for line in plan)
                ok &= uses_index
                print(f"\nthe job's page for {on}: {sql}")
                print("plan:\n" + "\n".join(f"  {line}" for line in plan))
                print(f"uses the index: {'yes' if uses_index else 'NO'}")
        scan_plan = [str(r[-1]) for r in await scan_query(month, (day,), sqlite, explain=True)]
        print("the ceiling, index made unusable: " + " / ".join(scan_plan))

        runs = test_days(month, day, args.repeat)
        conn = connections.get("default")
        orm, rows = await timed(lambda m, d: birthday_query(m, d), runs)
        raw, _ = await timed(lambda m, d: conn.execute_query(raw_sql(m, d, sqlite)), runs)
        scan_runs = runs[: max(3, args.repeat // 4)]
        scan, scan_rows = await timed(lambda m, d: scan_query(m, d, sqlite), scan_runs)
        count, _ = await timed(lambda: conn.execute_query("SELECT COUNT(*) FROM member"),
                               [()] * len(scan_runs))
        if scan_rows != rows:
            print(f"WARNING: the scan found {scan_rows} rows, the index {rows}")
        print(f"\nmedian of {len(runs)} days ({rows} members on {month:02d}-{day:02d}):")
        print(f"  ORM, indexed       {orm * 1000:9.2f} ms")
        print(f"  raw SQL, indexed   {raw * 1000:9.2f} ms")
        print(f"  same, index off    {scan * 1000:9.2f} ms   (scan of every row; "
              f"median of {len(scan_runs)})")
        print(f"  COUNT(*) of table  {count * 1000:9.2f} ms")
        print(f"  indexed/scan = {orm / scan:.4f} (ORM), {raw / scan:.4f} (raw): "
              f"{scan / orm:.0f}x / {scan / raw:.0f}x faster than a scan; "
              f"indexed/COUNT(*) = {orm / count:.3f}")
        return ok
    finally:
        await close_database()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--date", default="05-01", help="MM-DD to select")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--sqlite", metavar="FILE",
                        help="SQLite file to use (kept; seeded once); default: a temp file")
    parser.add_argument("--pg", default=PG_DEFAULT, help="PostgreSQL URL; '' to skip")
    parser.add_argument("--pg-keep", action="store_true",
                        help="reuse an already seeded PostgreSQL database")
    args = parser.parse_args()

    ok = True
    with tempfile.TemporaryDirectory(prefix="memberbot-birthday-") as tmp:
        path = Path(args.sqlite) if args.sqlite else Path(tmp) / "birthday.db"
        ok &= await run_one("SQLite", f"sqlite://{path}", args)
    if args.pg:
        try:
            if not args.pg_keep:
                await reset_postgres(args.pg)
        except OSError as exc:
            print(f"\nPostgreSQL skipped: {args.pg!r} is not reachable ({exc})")
        else:
            ok &= await run_one("PostgreSQL", args.pg, args)
    print("\nevery plan uses the index" if ok else "\nSOME PLAN DOES NOT USE THE INDEX")
    if not ok:
        raise SystemExit(1)


if __name__ == "__main__":
    asyncio.run(main())
