"""What the sandbox's console shows beyond the crowd: an owner and a second store's manager to
log in as, bookings for today and tomorrow to mark arrived, and ratings for the feedback page.

Bookings go through the booking service as a member's would (so seats and capacity hold), each
keyed on its day and number: a restart books nothing twice, and a sandbox started on a later
day gets that day's bookings too."""

from __future__ import annotations

import datetime as dt

from bot.infra.db import IntegrityError
from bot.models import Member, Purchase, Rating, Role, Staff, Store
from bot.sandbox.crowd import CROWD_SIZE, crowd_phone
from bot.services import bookings, members
from bot.services.bookings import BookingRefused

DEMO_OWNER = "o_demo_owner"  # the owner: every store, every page
DEMO_MANAGER_2 = "o_demo_manager_2"  # the second store's manager: only that store
SECOND_STORE = ("S002", "示例门店·分店")
BOOKINGS_A_DAY = 6
# (crowd number, stars, comment, days ago): one low rating, as a shop would want to see first.
RATINGS = ((2, 5, "小李剪得很好", 1), (4, 4, "", 2), (5, 2, "等了四十分钟", 3), (8, 5, "", 5),
           (11, 3, "环境一般", 8))


async def seed_staff(first: Store) -> None:
    """The owner (invited at the first store) and the second store's manager."""
    second = await Store.get_or_none(code=SECOND_STORE[0])
    for openid, name, store, role in ((DEMO_OWNER, "老板", first, Role.OWNER),
                                      (DEMO_MANAGER_2, "小张", second, Role.MANAGER)):
        if store is None or await Staff.exists(openid=openid):
            continue
        try:
            await Staff.create(openid=openid, name=name, store=store, role=role)
        except IntegrityError:  # another start made them
            continue
        await members.ensure_follower(openid)


async def _crowd_member(number: int, vault) -> Member | None:
    return await Member.get_or_none(phone_hash=vault.lookup_hash(crowd_phone(number)))


async def seed_bookings(bot) -> int:
    """A few of the crowd booked today (from now on) and tomorrow; how many were booked."""
    services = await bookings.services()
    if not services:
        return 0
    booked = 0
    for offset in (0, 1):
        day = bot.today() + dt.timedelta(days=offset)
        for n in range(BOOKINGS_A_DAY):
            service = services[n % len(services)]
            member = await _crowd_member(1 + (n * 7 + offset * 3) % CROWD_SIZE, bot.vault)
            times = await bookings.free_times(bot, service, day)
            if member is None or not times:
                continue
            start = times[(n * 3) % len(times)].start
            try:
                result = await bookings.book(bot, member, service, start,
                                             key=f"sandbox-demo:{day.isoformat()}:{n}")
            except BookingRefused:  # taken by an earlier demo booking, or the member's own
                continue
            booked += not result.duplicate
    return booked


async def seed_ratings(bot) -> None:
    store = await Store.all().order_by("id").first()
    for number, stars, comment, days_ago in RATINGS:
        member = await _crowd_member(number, bot.vault)
        key = f"sandbox-demo:rating:{number}"
        if member is None or await Rating.exists(key=key):
            continue
        # The visit rated is the member's last purchase, as a real rating's is (the 评价 page
        # names it: 消费 #12 ¥88.00); a member who never bought rates a visit of their own.
        bought = await Purchase.filter(member_id=member.id, voided_at__isnull=True) \
            .order_by("-id").first()
        visit = f"purchase:{bought.id}" if bought else f"sandbox:{number}"
        try:
            await Rating.create(visit=visit, key=key, member=member,
                                store_id=bought.store_id if bought else store.id,
                                stars=stars, comment=comment,
                                created_at=bot.now() - dt.timedelta(days=days_ago, hours=2))
        except IntegrityError:
            continue
