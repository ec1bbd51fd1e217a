"""The sandbox's console demo: an owner and a second store's manager to log in as, the crowd
split between the stores, bookings for today and tomorrow and ratings, none written twice."""

from __future__ import annotations

import datetime as dt

from bot.config import StoreConfig
from bot.infra.vault import Vault
from bot.models import Booking, BookingStatus, Member, Purchase, Rating, Staff, Store
from bot.models.bookings import Seat
from bot.models.staff import Role
from bot.sandbox.crowd import CROWD_SIZE, seed_crowd
from bot.sandbox.demo_shop import (
    DEMO_MANAGER_2,
    DEMO_OWNER,
    RATINGS,
    seed_bookings,
    seed_ratings,
    seed_staff,
)
from bot.sandbox.runner import with_second_store
from tests.support import at_local

TODAY = dt.date(2026, 12, 2)


def test_a_one_store_shop_gets_a_second_store_in_the_sandbox():
    one = [StoreConfig("S001", "总店")]
    assert [s.code for s in with_second_store(one)] == ["S001", "S002"]
    two = [StoreConfig("A", "a"), StoreConfig("B", "b")]
    assert with_second_store(two) == two  # a shop's own stores are left as they are


async def test_the_demo_shop_is_seeded_once(shop, any_db):
    h = shop
    at_local(h.clock, TODAY, 9)
    first, second = await Store.all().order_by("id")
    await seed_crowd(h.config, Vault(h.config.security.data_key_bytes), TODAY)
    for _ in range(2):
        await seed_staff(first)
        await seed_bookings(h.bot)
        await seed_ratings(h.bot)

    owner = await Staff.get(openid=DEMO_OWNER)
    manager = await Staff.get(openid=DEMO_MANAGER_2)
    assert owner.role == Role.OWNER and owner.store_id == first.id
    assert manager.role == Role.MANAGER and manager.store_id == second.id

    # A third of the crowd is the second store's, and bought there.
    at_second = await Member.filter(store_id=second.id).count()
    assert at_second == CROWD_SIZE // 3
    assert await Purchase.filter(member__store_id=second.id).exclude(store_id=second.id) \
        .count() == 0

    # Bookings today (from 09:00 on) and tomorrow, each holding its seats, none twice.
    booked = await Booking.filter(status=BookingStatus.ACTIVE)
    days = {b.starts_at.astimezone(h.config.shop.tz).date() for b in booked}
    assert days == {TODAY, TODAY + dt.timedelta(days=1)}
    assert all(b.starts_at >= h.bot.now() for b in booked)
    assert len({b.key for b in booked}) == len(booked) >= 6
    assert await Seat.filter(booking_id__in=[b.id for b in booked]).count() >= len(booked)
    assert await Rating.all().count() == len(RATINGS)
    assert await Rating.filter(stars__lte=2).exists()
    # Each rates a purchase of the member's, at its store, so 评价 can name the visit
    # (消费 #12 ¥88.00), not a key of the sandbox's own ("sandbox:11").
    for rating in await Rating.all():
        kind, _, serial = rating.visit.partition(":")
        assert kind == "purchase", rating.visit
        bought = await Purchase.get(id=int(serial))
        assert bought.member_id == rating.member_id and bought.store_id == rating.store_id


def test_the_readme_says_who_logs_in_to_the_sandboxs_console():
    """Someone with only the README finds the console and the demo staff to scan it as (a
    member's openid is refused): the quick start names them, as the sandbox's banner does."""
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    quick_start = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    for needed in ("127.0.0.1:8080/console/", DEMO_OWNER, DEMO_MANAGER_2, "/scan login:",
                   "console link --staff"):
        assert needed in quick_start, needed
