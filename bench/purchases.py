"""Purchases per second that one worker sustains, against a ceiling measured in the same run.

    .venv/bin/python bench/purchases.py [--members 2000] [--purchases 3000] [--concurrency 32]

(a) ceiling: the same number of bare single-row INSERTs through the same ORM and database, one
    transaction each, i.e. the cost of committing anything at all on this machine;
(b) purchases.record: a purchase, its points lot, the tier check and the audit entry in one
    transaction with an idempotency key, for random members, `concurrency` at a time.

Prints purchases/s, p50 and p99 for (b), the ceiling's rows/s, and the ratio b/a.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from pathlib import Path

from tortoise.transactions import in_transaction

from bot.config import (
    DatabaseConfig,
    SchedulerConfig,
    SecurityConfig,
    StoreConfig,
    load_config,
)
from bot.infra.vault import new_data_key
from bot.models import CardSerial, Delivery, Member, Store
from bot.runtime import open_bot
from bot.services import purchases
from bot.services.staff import Actor

CONFIG = Path(__file__).resolve().parent.parent / "config.toml"


async def seed(bot, count: int) -> list[Member]:
    from bot.rules.cards import card_number

    await CardSerial.bulk_create([CardSerial() for _ in range(count)])
    await Member.bulk_create(
        [
            Member(
                card_no=card_number("88", i + 1),
                phone_hash=bot.vault.lookup_hash(f"139{i:08d}"),
                phone_enc=bot.vault.encrypt(f"139{i:08d}"),
                name=f"会员{i}",
                tier=bot.config.tiers[0].name,
            )
            for i in range(count)
        ],
        batch_size=500,
    )
    return await Member.all()


async def timed(jobs, concurrency: int) -> tuple[float, list[float]]:
    semaphore = asyncio.Semaphore(concurrency)
    latencies: list[float] = []

    async def one(job) -> None:
        async with semaphore:
            started = time.perf_counter()
            await job()
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(one(job) for job in jobs))
    return time.perf_counter() - started, sorted(latencies)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--members", type=int, default=2000)
    parser.add_argument("--purchases", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    base = load_config(CONFIG, environ={})
    with tempfile.TemporaryDirectory() as tmp:
        config = base.replace(
            database=DatabaseConfig(f"sqlite://{tmp}/bench.db"),
            security=SecurityConfig(data_key=new_data_key()),
            stores=[StoreConfig("S001", "总店")],
            scheduler=SchedulerConfig(enabled=False),
        )
        async with open_bot(config) as bot:
            members = await seed(bot, args.members)
            actor = Actor.cli(await Store.get(code="S001"))

            async def insert(i: int) -> None:
                async with in_transaction():
                    await Delivery.create(
                        key=f"ceiling:{i}", channel="x", purpose="bench", payload={}
                    )

            ceiling_s, _ = await timed(
                [lambda i=i: insert(i) for i in range(args.purchases)], args.concurrency
            )
            rng = random.Random(7)

            def purchase(i: int):
                member = rng.choice(members)
                amount = rng.randint(100, 100_000)
                return lambda: purchases.record(
                    bot, member, amount, actor=actor, note="bench", key=f"bench:{i}"
                )

            ours_s, lat = await timed(
                [purchase(i) for i in range(args.purchases)], args.concurrency
            )
    ceiling = args.purchases / ceiling_s
    ours = args.purchases / ours_s
    print(
        f"{args.purchases} purchases over {args.members} members, concurrency "
        f"{args.concurrency}, SQLite\n"
    )
    print(f"(a) ceiling: 1-row transactions   {ceiling:>8.0f} /s")
    print(
        f"(b) purchases.record              {ours:>8.0f} /s   "
        f"p50 {statistics.median(lat) * 1000:.1f} ms   "
        f"p99 {lat[int(len(lat) * 0.99) - 1] * 1000:.1f} ms"
    )
    print(f"\nb/a = {ours / ceiling:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
