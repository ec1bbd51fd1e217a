"""Bookings: free times over a busy calendar, and the race for the last places, each against a
ceiling measured in the same run.

    .venv/bin/python bench/bookings.py [--resources 30] [--bookings 2000] [--repeat 60]
                                       [--racers 200] [--rounds 5] [--pg URL]

A shop of `--resources` stylists (capacity 1, 10:00-20:00 every day, each off one day of the
horizon) and one class room of 12, a 60-minute service they all serve, `--bookings` bookings
over the 14-day horizon (about half the slots taken). SQLite by default; `--pg URL` runs on that
PostgreSQL database instead (its schema is dropped and made again).

(a) free times, `--repeat` calls each: p50, p95 and max of `bookings.free_days` (the days
    with a free start: the dialog's day step, each day's search stopping at its first), every
    free start of every resource over the horizon (the calendar loaded, then slots.free_starts
    and the merge), and `bookings.free_times` (every resource, one day). The ceiling of each is
    its pure part alone over a calendar loaded once; the calendar's loading (closures and
    seats, two queries) is shown alone too. Prints whether each p95 is under 50 ms.
(b) the race: each round, `--racers` members book at the same moment, spread over three
    stylists' last places (one place each, resource given) and a class's 12 places. Checks
    exactly one winner per stylist slot, exactly 12 in the class, every loser refused (full, or
    already booked at that time by the seeded calendar),
    no unit over its capacity. Attempts/s against a ceiling of as many bare one-row
    transactions at the same concurrency.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tortoise.transactions import in_transaction  # noqa: E402

from bot.config import (  # noqa: E402
    DatabaseConfig,
    ResourceConfig,
    SchedulerConfig,
    SecurityConfig,
    ServiceConfig,
    StoreConfig,
    load_config,
)
from bot.infra.vault import new_data_key  # noqa: E402
from bot.models import Booking, Delivery, Member, Resource, Seat, Service  # noqa: E402
from bot.rules import slots  # noqa: E402
from bot.runtime import open_bot  # noqa: E402
from bot.services import bookings  # noqa: E402
from bot.services.bookings import BookingRefused  # noqa: E402

DAY0 = dt.date(2031, 4, 7)  # "today" in the shop: the horizon is DAY0 .. DAY0 + 14
HOURS = "10:00-20:00"


def shop_config(db_url: str, resources: int):
    base = load_config(ROOT / "config.toml", environ={})
    week = dict.fromkeys(("mon", "tue", "wed", "thu", "fri", "sat", "sun"), HOURS)
    stylists = [ResourceConfig(code=f"R{n:02d}", name=f"发型师{n}", store="S001", **week,
                               closed=[(DAY0 + dt.timedelta(days=1 + n % 14)).isoformat()])
                for n in range(resources)]
    room = ResourceConfig(code="ROOM", name="教室", store="S001", capacity=12, **week)
    return base.replace(
        database=DatabaseConfig(db_url),
        security=SecurityConfig(data_key=new_data_key()),
        stores=[StoreConfig("S001", "总店")],
        scheduler=SchedulerConfig(enabled=False),
        resources=[*stylists, room],
        services=[ServiceConfig("CUT", "洗剪吹", 60, [r.code for r in stylists]),
                  ServiceConfig("CLASS", "团课", 60, ["ROOM"])],
    )


def shop_clock() -> dt.datetime:
    return dt.datetime.combine(DAY0, dt.time(9), dt.timezone(dt.timedelta(hours=8))) \
        .astimezone(dt.UTC)


async def seed_members(bot, count: int) -> list[Member]:
    await Member.bulk_create([
        Member(card_no=f"66{i:08d}", phone_hash=bot.vault.lookup_hash(f"137{i:08d}"),
               phone_enc=bot.vault.encrypt(f"137{i:08d}"), name=f"会员{i}",
               tier=bot.config.tiers[0].name) for i in range(count)], batch_size=500)
    return await Member.all().order_by("id")


async def seed_bookings(bot, count: int, members: list[Member], rng: random.Random) -> int:
    """`count` bookings of the 60-minute service on random stylists, days and free starts, as
    rows (what the service would write: a booking and a seat per unit)."""
    service = await Service.get(code="CUT")
    stylists = await bookings.resources_of(service)
    days = bookings.bookable_days(bot)
    cal = await bookings._calendar(stylists, days[0], days[-1], bot.config.shop.tz)
    step = bot.config.booking.slot_minutes
    made, rows, seats = 0, [], []
    while made < count:
        resource, day = rng.choice(stylists), rng.choice(days)
        free = bookings._free_on(resource, service, day, cal, bot.config, bot.now())
        if not free:
            continue
        start = rng.choice(free).start
        member = rng.choice(members)
        units = slots.units(start, service.minutes, step)
        cal.taken[resource.id].update(units)
        rows.append(Booking(key=f"seed:{made}", member_id=member.id, service_id=service.id,
                            resource_id=resource.id, store_id=resource.store_id,
                            starts_at=start, ends_at=start + dt.timedelta(minutes=60),
                            created_at=bot.now()))
        seats.append((resource.id, units, member.id))
        made += 1
    await Booking.bulk_create(rows, batch_size=500)
    ids = dict(await Booking.filter(key__startswith="seed:").values_list("key", "id"))
    await Seat.bulk_create([Seat(resource_id=r, unit_start=u, seat=1, member_id=m,
                                 booking_id=ids[f"seed:{n}"])
                            for n, (r, units, m) in enumerate(seats) for u in units],
                           batch_size=1000)
    return made


def percentiles(samples: list[float]) -> tuple[float, float, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    return statistics.median(ordered) * 1000, p95 * 1000, ordered[-1] * 1000


async def timed(call) -> float:
    started = time.perf_counter()
    await call()
    return time.perf_counter() - started


async def free_time_figures(bot, repeat: int, rng: random.Random) -> dict:
    service = await Service.get(code="CUT")
    days = bookings.bookable_days(bot)
    out: dict[str, list[float]] = {name: [] for name in (
        "days", "pure_days", "every", "pure_every", "load", "times", "pure_times")}
    resources = await bookings.resources_of(service)
    tz = bot.config.shop.tz
    cal = await bookings._calendar(resources, days[0], days[-1], tz)
    earliest = bookings.earliest_start(bot, staff=False)

    def args(r, day):
        return bookings._day_args(r, service, day, cal, bot.config, earliest)

    def pure_days() -> list[dt.date]:  # what free_days computes once the calendar is loaded
        return [day for day in days
                if any(next(slots.iter_free_starts(**args(r, day)), None) for r in resources)]

    def pure_every(over: list[dt.date]) -> int:  # every free start, merged over the stylists
        return sum(len(bookings._merge((r, slots.free_starts(**args(r, day)))
                                       for r in resources)) for day in over)

    async def every() -> int:  # all free starts of the horizon, the calendar loaded as well
        await bookings._calendar(resources, days[0], days[-1], tz)
        return pure_every(days)

    for _ in range(repeat):
        day = rng.choice(days)
        out["days"].append(await timed(lambda: bookings.free_days(bot, service)))
        out["every"].append(await timed(every))
        out["times"].append(await timed(lambda d=day: bookings.free_times(bot, service, d)))
        out["load"].append(await timed(lambda: bookings._calendar(
            resources, days[0], days[-1], tz)))
        for name, work in (("pure_days", pure_days), ("pure_every", lambda: pure_every(days)),
                           ("pure_times", lambda d=day: pure_every([d]))):
            started = time.perf_counter()
            work()
            out[name].append(time.perf_counter() - started)
    # The pure part over the loaded calendar is the service's answer.
    assert await bookings.free_days(bot, service) == pure_days()
    return {name: percentiles(samples) for name, samples in out.items()}


async def race_round(bot, round_no: int, racers: list[Member]) -> tuple[float, dict]:
    """One round: the racers split over three stylists' last places and a class's 12."""
    day = bookings.bookable_days(bot)[1 + round_no % 13]
    cut, lesson = await Service.get(code="CUT"), await Service.get(code="CLASS")
    room = await Resource.get(code="ROOM")
    # Three stylists working that day, at a start each has free.
    targets = []
    for resource in await bookings.resources_of(cut):
        times = await bookings.free_times(bot, cut, day, resource=resource)
        if times:
            targets.append((cut, resource, times[len(times) // 2].start, 1))
        if len(targets) == 3:
            break
    class_times = await bookings.free_times(bot, lesson, day, resource=room)
    targets.append((lesson, room, class_times[round_no % len(class_times)].start, 12))

    async def attempt(n: int, member: Member):
        service, resource, start, _ = targets[n % len(targets)]
        try:
            return n % len(targets), await bookings.book(
                bot, member, service, start, key=f"race:{round_no}:{member.id}",
                resource=resource)
        except BookingRefused as refusal:
            return n % len(targets), refusal

    started = time.perf_counter()
    results = await asyncio.gather(*(attempt(n, m) for n, m in enumerate(racers)))
    seconds = time.perf_counter() - started
    won = Counter(t for t, r in results if not isinstance(r, BookingRefused))
    reasons = Counter(r.reason for _, r in results if isinstance(r, BookingRefused))
    checks = {}
    for t, (service, resource, start, places) in enumerate(targets):
        held = await Booking.filter(resource_id=resource.id, starts_at=start,
                                    status__in=bookings.HOLDING).count()
        per_unit = Counter(await Seat.filter(resource_id=resource.id, unit_start__in=slots.units(
            start, service.minutes, bot.config.booking.slot_minutes)).values_list(
            "unit_start", flat=True))
        checks[t] = (won[t] == held == places
                     and all(n == places for n in per_unit.values()) and len(per_unit) == 2)
    # A loser is told the place is full, or (a racer whose seeded booking overlaps this time)
    # that they are booked then already: nobody is in two places at once.
    ok = all(checks.values()) and set(reasons) <= {"booking_full.j2", "booking_twice.j2"}
    return seconds, {"ok": ok, "won": dict(won), "reasons": dict(reasons),
                     "expected": {t: target[3] for t, target in enumerate(targets)}}


async def ceiling(count: int, round_no: int) -> float:
    async def insert(i: int) -> None:
        async with in_transaction():
            await Delivery.create(key=f"ceiling:{round_no}:{i}", channel="x", purpose="bench",
                                  payload={})

    started = time.perf_counter()
    await asyncio.gather(*(insert(i) for i in range(count)))
    return time.perf_counter() - started


async def drop_schema(url: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url.replace("postgres://", "postgresql://", 1))
    try:
        await conn.execute("DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public;")
    finally:
        await conn.close()


async def run(args, db_url: str) -> None:
    config = shop_config(db_url, args.resources)
    if db_url.startswith("postgres"):
        await drop_schema(db_url)
    rng = random.Random(7)
    async with open_bot(config, shop_clock) as bot:
        members = await seed_members(bot, max(args.racers, 500))
        seeded = await seed_bookings(bot, args.bookings, members, rng)
        kind = "PostgreSQL" if db_url.startswith("postgres") else "SQLite"
        print(f"{args.resources} stylists + a class of 12, {seeded} bookings over "
              f"{config.booking.horizon_days + 1} days, {kind}\n")
        figures = await free_time_figures(bot, args.repeat, rng)
        print(f"(a) free times, {args.repeat} calls each          p50      p95      max (ms)")
        for name, label in (("days", "free_days (the day step, 15 days)"),
                            ("pure_days", "  ceiling: pure part only"),
                            ("every", "every free start, 15 days"),
                            ("pure_every", "  ceiling: pure part only"),
                            ("load", "  loading the 15 days' calendar"),
                            ("times", "free_times (all, one day)"),
                            ("pure_times", "  ceiling: pure part only")):
            p50, p95, top = figures[name]
            print(f"    {label:<35} {p50:7.1f}  {p95:7.1f}  {top:7.1f}")
        for name in ("days", "every", "times"):
            share = figures[f"pure_{name}"][0] / figures[name][0]
            print(f"    {name}: ceiling/ours at p50 = {share:.2f}")
        for name in ("days", "every"):
            p95 = figures[name][1]
            print(f"    {name} p95 {p95:.1f} ms < 50 ms: {'yes' if p95 < 50 else 'NO'}")
        print()

        racers = members[:args.racers]
        race_s, ceiling_s, all_ok = 0.0, 0.0, True
        for round_no in range(args.rounds):
            seconds, outcome = await race_round(bot, round_no, racers)
            race_s += seconds
            ceiling_s += await ceiling(args.racers, round_no)
            all_ok &= outcome["ok"]
            if not outcome["ok"]:
                print(f"    round {round_no}: WRONG {outcome}")
        attempts = args.racers * args.rounds
        ours, top = attempts / race_s, attempts / ceiling_s
        print(f"(b) the race: {args.racers} concurrent attempts x {args.rounds} rounds "
              f"(3 stylists' last places + a class of 12 each round)")
        print(f"    ceiling: 1-row transactions      {top:8.0f} /s")
        print(f"    bookings.book                    {ours:8.0f} /s")
        print(f"    b/a = {ours / top:.2f}")
        print(f"    exactly one winner per stylist slot, 12 in the class, the rest refused "
              f"as full or already booked then, no unit over capacity: {'yes' if all_ok else 'NO'}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--resources", type=int, default=30)
    parser.add_argument("--bookings", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=60)
    parser.add_argument("--racers", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pg", default="", help="postgres://… (its schema is dropped)")
    args = parser.parse_args()
    import logging

    logging.disable(logging.WARNING)
    if args.pg:
        await run(args, args.pg)
        return
    with tempfile.TemporaryDirectory() as tmp:
        await run(args, f"sqlite://{tmp}/bench.db")


if __name__ == "__main__":
    asyncio.run(main())
