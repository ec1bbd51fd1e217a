"""How fast a segment is walked, and that memory does not grow with it.

    .venv/bin/python bench/segments.py [--members 20000] [--purchases 3] [--database URL]

Seeds members (tiers, stores, birthdays, tags) with about `purchases` purchases each over 400
days, then for a few expressions: count(), and a full walk of id_batches(size=500), with the
members per second of the walk and the peak Python memory of the walk (tracemalloc), which must
stay at a batch's worth whatever the segment's size. On PostgreSQL the tables are ANALYZEd
after seeding, as autovacuum does soon after a bulk load: without statistics the planner takes
the freshly filled tables for empty ones and walks purchases once per member.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import random
import tempfile
import time
import tracemalloc
import unicodedata
from pathlib import Path

from bot.config import DatabaseConfig, SchedulerConfig, SecurityConfig, load_config
from bot.infra import sql
from bot.infra.vault import new_data_key
from bot.models import Member, MemberTag, Purchase, Store
from bot.runtime import open_bot
from bot.services import segments

CONFIG = Path(__file__).resolve().parent.parent / "config.toml"
EXPRESSIONS = ("all", "tier=金卡会员", "last_visit>30d visits_12m>=2", "spend_12m>=500 tag=瑜伽",
               "birthday_month=5 store=S001", "rfm=重要价值", "rfm=一般挽留")


async def seed(bot, count: int, per_member: int) -> None:
    rng = random.Random(7)
    tiers = [tier.name for tier in bot.config.tiers]
    stores = await Store.all().values_list("id", flat=True)
    now = bot.now()
    await Member.bulk_create([
        Member(card_no=f"88{i:010d}", phone_hash=f"bench{i}", phone_enc="-", name=f"会员{i}",
               tier=rng.choice(tiers), store_id=rng.choice([None, *stores]),
               birth_month=rng.choice([None, *range(1, 13)]), birth_day=1)
        for i in range(count)], batch_size=1000)
    ids = await Member.all().values_list("id", flat=True)
    await Purchase.bulk_create([
        Purchase(member_id=member, amount=rng.randint(1000, 100_000),
                 created_at=now - dt.timedelta(seconds=rng.randint(0, 400 * 86_400)),
                 idempotency_key=f"bench:{member}:{k}")
        for member in ids for k in range(rng.randint(0, 2 * per_member))], batch_size=1000)
    await MemberTag.bulk_create([MemberTag(member_id=member, tag="瑜伽")
                                 for member in ids if rng.random() < 0.2], batch_size=1000)


def _pad(text: str, columns: int) -> str:
    wide = sum(unicodedata.east_asian_width(ch) in "WF" for ch in text)
    return text + " " * max(0, columns - len(text) - wide)


async def main(members: int, per_member: int, url: str | None) -> None:
    folder = tempfile.mkdtemp(prefix="bench-segments-")
    config = load_config(CONFIG).replace(
        database=DatabaseConfig(url or f"sqlite://{folder}/bench.db"),
        security=SecurityConfig(data_key=new_data_key()),
        scheduler=SchedulerConfig(enabled=False))
    async with open_bot(config, scheduler=False) as bot:
        start = time.perf_counter()
        await seed(bot, members, per_member)
        if not config.database.url.startswith("sqlite"):
            await sql.execute("ANALYZE")  # as autovacuum would soon after a bulk load
        print(f"seeded {members} members, {await Purchase.all().count()} purchases "
              f"in {time.perf_counter() - start:.1f} s ({config.database.url.split(':')[0]})")
        print(f"{'expression':<32} {'count':>7} {'count s':>8} {'walk s':>7} "
              f"{'scanned/s':>10} {'peak KiB':>9}")
        for text in EXPRESSIONS:
            segment = segments.parse(text, config)
            start = time.perf_counter()
            total = await segments.count(segment)
            counted = time.perf_counter() - start
            tracemalloc.start()
            start = time.perf_counter()
            walked = 0
            async for batch in segments.id_batches(segment, size=500):
                walked += len(batch)
            walk = time.perf_counter() - start
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            assert walked == total, (text, walked, total)
            print(f"{_pad(text, 32)} {total:>7} {counted:>8.2f} {walk:>7.2f} "
                  f"{members / walk:>10.0f} {peak / 1024:>9.0f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=20_000)
    parser.add_argument("--purchases", type=int, default=3, help="per member, on average")
    parser.add_argument("--database", help="a database URL (default: a fresh SQLite file)")
    args = parser.parse_args()
    asyncio.run(main(args.members, args.purchases, args.database))
