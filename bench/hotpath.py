"""What one 积分 message costs, step by step, inside one process (no HTTP, no load generator).

    .venv/bin/python bench/hotpath.py [--db sqlite|postgres] [--n 2000]

The evidence behind the suggestions in docs/benchmarks.md. On a database seeded like
bench/webhook.py's (10,000 members), each step of the 积分 path is run `n` times in a row on an
otherwise idle event loop and timed (wall µs per call = the latency one call adds, and the CPU
the process spends on it, both threads):

- the whole path: Dispatcher.feed (dedup, lookups, handler, template), and
  WeChatChannel.open + render (signature, AES, XML);
- the 9 queries the path made through the ORM before bot/infra/sql.py, next to the same statements
  hand-written on the same tortoise connection (so the difference is tortoise + pypika:
  filter resolution, SQL generation, row → model), and a bare `SELECT 1` (the driver round
  trip alone: on SQLite, aiosqlite's hand-off to its thread and back);
- one hand-written JOIN that answers follower + member + conversation in a single query, the
  same through members.member_with_conversation (what bot/ runs per message since 2026-12-01,
  rows made into models), and loyalty.card_summary: the whole card in one statement.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import itertools
import sys
import tempfile
import time
from pathlib import Path

from tortoise import connections
from tortoise.functions import Sum

from bot.channels.wechat import WeChatChannel
from bot.chat.dispatcher import Dispatcher
from bot.chat.inbound import Inbound
from bot.handlers import build_router
from bot.models import (
    Conversation,
    Follower,
    InboundMessage,
    Member,
    PointsEntry,
    PunchCard,
    Purchase,
)
from bot.runtime import open_bot
from bot.sandbox import wechat_client as wire
from bot.services import loyalty, members

sys.path.insert(0, str(Path(__file__).resolve().parent))
from webhook import PG_DEFAULT, WECHAT, bench_config, reset_postgres, seed


async def timeit(n: int, make) -> tuple[float, float]:
    """(wall µs, process CPU µs) per call of `await make(i)`, after a short warm-up."""
    for i in range(min(50, n)):
        await make(10_000_000 + i)
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(n):
        await make(i)
    return ((time.perf_counter() - wall) / n * 1e6, (time.process_time() - cpu) / n * 1e6)


async def run(db_url: str, n: int) -> None:
    sqlite = db_url.startswith("sqlite")
    openids = await seed(db_url, 10_000)
    config = bench_config(8080, db_url)
    ph = (lambda i: "?") if sqlite else (lambda i: f"${i}")
    async with open_bot(config, scheduler=False) as bot:
        conn = connections.get("default")
        dispatcher = Dispatcher(bot, build_router())
        channel = WeChatChannel(config.wechat, 300)
        simulator = wire.WeChatSimulator(WECHAT, "aes")
        member = await Member.get(id=1)
        follower = await Follower.get(member_id=1)
        now = bot.now()
        today = bot.today()
        keys = itertools.count()
        who = itertools.cycle(openids)
        stamp = now if not sqlite else str(now)

        def inbound(i: int) -> Inbound:
            return Inbound(channel="wechat", user=next(who), kind="text", text="积分",
                           dedup_key=f"msg:hot{next(keys)}", account="gh_bench")

        signed = [simulator.sign(wire.text(openids[i % len(openids)], "积分"))
                  for i in range(n + 50)]

        async def open_render(i: int) -> None:
            req = signed[i % len(signed)]
            message, envelope = channel.open(req.params, req.body)
            channel.render(bot_reply, message, envelope)

        from bot.notifications.replies import Text

        bot_reply = Text("【示例门店 会员卡】\n" + "卡号：8800000013\n" * 6)
        rows: list[tuple[str, tuple[float, float]]] = []

        async def step(name: str, make) -> None:
            rows.append((name, await timeit(n, make)))
            print(f"  {name:<58} {rows[-1][1][0]:8.0f} µs   cpu {rows[-1][1][1]:6.0f} µs",
                  flush=True)

        print(f"\n=== {'SQLite' if sqlite else 'PostgreSQL'}: one call at a time, n={n} ===")
        print("whole path:")
        await step("Dispatcher.feed(积分) — dedup, lookups, handler, template",
                   lambda i: dispatcher.feed(inbound(i)))
        await step("WeChatChannel.open + render — signature, AES, XML", open_render)
        await step("bot.infra.templates.render('card.j2')", _async(lambda i: bot.templates.render(
            "card.j2", card=_summary(member), punch_cards=[], expiring=[])))

        print("\nthe queries of one message through the ORM (as bot/ made them before "
              "bot/infra/sql.py) vs the same SQL by hand:")
        pairs = [
            ("dedup claim: INSERT inbound_message",
             lambda i: InboundMessage.create(dedup_key=f"k{next(keys)}", user="o", kind="text"),
             lambda i: conn.execute_insert(
                 "INSERT INTO inbound_message (dedup_key, user, kind, status, received_at) "
                 f"VALUES ({ph(1)}, {ph(2)}, {ph(3)}, {ph(4)}, {ph(5)})"
                 if sqlite else
                 'INSERT INTO inbound_message (dedup_key, "user", kind, status, received_at) '
                 "VALUES ($1, $2, $3, $4, $5)",
                 [f"r{next(keys)}", "o", "text", "processing", stamp])),
            ("member_of: SELECT follower by openid",
             lambda i: Follower.get_or_none(openid=follower.openid),
             lambda i: conn.execute_query(
                 f"SELECT * FROM follower WHERE openid = {ph(1)}", [follower.openid])),
            ("member_of: SELECT member by id",
             lambda i: Member.get_or_none(id=member.id),
             lambda i: conn.execute_query(f"SELECT * FROM member WHERE id = {ph(1)}",
                                          [member.id])),
            ("cs_quota.note_inbound: UPDATE follower",
             lambda i: Follower.filter(id=follower.id).update(message_window_at=now,
                                                              message_window_used=0),
             lambda i: conn.execute_query(
                 "UPDATE follower SET message_window_at = "
                 f"{ph(1)}, message_window_used = 0 WHERE id = {ph(2)}", [stamp, follower.id])),
            ("dialogs.load: SELECT conversation",
             lambda i: Conversation.get_or_none(user=f"wechat:{follower.openid}"),
             lambda i: conn.execute_query(
                 f'SELECT * FROM conversation WHERE "user" = {ph(1)}',
                 [f"wechat:{follower.openid}"])),
            ("card: rolling_spend (SUM purchase)",
             lambda i: Purchase.filter(member_id=member.id, voided_at__isnull=True,
                                       created_at__gte=now - dt.timedelta(days=365))
             .annotate(total=Sum("amount")).first().values("total"),
             lambda i: conn.execute_query(
                 "SELECT COALESCE(SUM(amount), 0) FROM purchase WHERE member_id = "
                 f"{ph(1)} AND voided_at IS NULL AND created_at >= {ph(2)}",
                 [member.id, stamp])),
            ("card: active_punch_cards",
             lambda i: PunchCard.filter(member_id=member.id, remaining__gt=0,
                                        expires_on__gte=today).order_by("expires_on", "id"),
             lambda i: conn.execute_query(
                 f"SELECT * FROM punch_card WHERE member_id = {ph(1)} AND remaining > 0 "
                 f"AND expires_on >= {ph(2)} ORDER BY expires_on, id",
                 [member.id, today if not sqlite else today.isoformat()])),
            ("card: expiring points",
             lambda i: PointsEntry.filter(member_id=member.id, remaining__gt=0,
                                          expires_on__lte=today + dt.timedelta(days=30))
             .order_by("expires_on"),
             lambda i: conn.execute_query(
                 f"SELECT * FROM points_entry WHERE member_id = {ph(1)} AND remaining > 0 "
                 f"AND expires_on <= {ph(2)} ORDER BY expires_on",
                 [member.id, (today + dt.timedelta(days=30)) if not sqlite
                  else (today + dt.timedelta(days=30)).isoformat()])),
            ("dedup finish: UPDATE inbound_message",
             lambda i: bot.dedup.finish("msg:hot1", "replied",
                                       {"kind": "text", "content": "x"}),
             lambda i: conn.execute_query(
                 f"UPDATE inbound_message SET status = {ph(1)}, reply = {ph(2)} "
                 f"WHERE dedup_key = {ph(3)}",
                 ["replied", '{"kind": "text", "content": "x"}', "msg:hot1"])),
        ]
        orm_total = raw_total = 0.0
        for name, orm, raw in pairs:
            (o, _), (r, _) = await timeit(n, orm), await timeit(n, raw)
            orm_total, raw_total = orm_total + o, raw_total + r
            print(f"  {name:<42} ORM {o:6.0f} µs   SQL {r:6.0f} µs   ORM/SQL {o / r:4.1f}",
                  flush=True)
        print(f"  {'the 9 queries':<42} ORM {orm_total:6.0f} µs   SQL {raw_total:6.0f} µs")
        select1, _ = await timeit(n, lambda i: conn.execute_query("SELECT 1"))
        print(f"  {'SELECT 1 (the driver round trip alone)':<42}     {select1:6.0f} µs")
        joined, _ = await timeit(n, lambda i: conn.execute_query(
            "SELECT f.id, f.member_id, f.message_window_at, f.message_window_used, m.*, "
            "c.state, c.data, c.updated_at AS c_updated FROM follower f "
            "LEFT JOIN member m ON m.id = f.member_id "
            f'LEFT JOIN conversation c ON c."user" = {ph(1)} WHERE f.openid = {ph(2)}',
            [f"wechat:{follower.openid}", follower.openid]))
        print(f"  {'follower+member+conversation in one JOIN':<42}     {joined:6.0f} µs")
        lookup, _ = await timeit(n, lambda i: members.member_with_conversation(
            follower.openid, f"wechat:{follower.openid}"))
        print(f"  {'members.member_with_conversation (bot/: the same, as models)':<42} "
              f"{lookup:6.0f} µs")
        card, _ = await timeit(n, lambda i: loyalty.card_summary(bot, member))
        print(f"  {'loyalty.card_summary (bot/: the card in one statement)':<42} {card:6.0f} µs")


def _async(fn):
    async def wrapper(i: int):
        return fn(i)

    return wrapper


def _summary(member: Member):
    return loyalty.CardSummary(member.card_no, member.name, member.tier, member.points,
                               member.stored_value, "银卡会员", 100000)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--pg", default=PG_DEFAULT)
    parser.add_argument("--n", type=int, default=2000)
    args = parser.parse_args()
    if args.db in ("sqlite", "both"):
        with tempfile.TemporaryDirectory(prefix="memberbot-hotpath-") as tmp:
            await run(f"sqlite://{tmp}/hot.db", args.n)
    if args.db in ("postgres", "both"):
        await reset_postgres(args.pg)
        await run(args.pg, args.n)


if __name__ == "__main__":
    asyncio.run(main())
