"""A campaign to 10,000 and 100,000 members against the WeChat and Aliyun stand-ins with 20 ms of
simulated latency: members per second against the configured rate limits and against a ceiling
measured in the same run, and the engine's peak memory, which must not grow with the segment.

    .venv/bin/python bench/broadcast.py [--sizes 10000,100000] [--sms-share 5]
                                        [--batch 2000] [--latency 0.02]

For each size, on a fresh SQLite database:
1. seeds the members (phones encrypted as the bot stores them), `--sms-share` percent of them
   not following the account (they get an SMS), the rest following (WeChat mass send);
2. (a) ceiling: the same WeChat and SMS calls made directly to the stand-ins, with the same
   concurrency and rate limits, no database: what the wire and the limits allow;
3. (b) the engine: `campaigns.run_campaign` from a started campaign to done (audience written,
   batches claimed, members re-checked, quota taken, sends confirmed);
4. (c) the same campaign again under tracemalloc (a fresh database), for the peak of Python
   allocations during the run.
Prints members/s for (a) and (b), b/a, the configured limit's members/s, and (c)'s peak.

The stand-ins run in a child process (this script with --serve), so that what they record
(every message "received") is not counted in the engine's memory.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.config import (  # noqa: E402
    BroadcastConfig,
    DatabaseConfig,
    SchedulerConfig,
    SecurityConfig,
    SmsConfig,
    StoreConfig,
    WeChatConfig,
    load_config,
)
from bot.infra.ratelimit import Limit  # noqa: E402
from bot.infra.vault import new_data_key  # noqa: E402
from bot.models import CampaignDelivery, Follower, Member  # noqa: E402
from bot.rules import campaigns as rules  # noqa: E402
from bot.runtime import open_bot  # noqa: E402
from bot.services import campaigns  # noqa: E402
from bot.services.campaigns.sending import pace  # noqa: E402

APP_ID, APP_SECRET = "wxbench000000001", "bench-secret"
SMS_ID, SMS_SECRET = "LTAIbenchKeyId", "bench-key-secret"
MASS = "/cgi-bin/message/mass/send"


# --- the stand-ins, in a child process ---

def serve(wechat_port: int, sms_port: int, latency: float) -> None:
    from aiohttp import web

    from bot.sandbox.sms_server import SMS_OUTBOX, create_sms_app
    from bot.sandbox.wechat_server import WECHAT_STATE, create_wechat_app

    async def run() -> None:
        wechat = create_wechat_app(APP_ID, APP_SECRET)
        wechat[WECHAT_STATE].set_delay(MASS, latency)
        wechat[WECHAT_STATE].mass_cap = 10**9  # every size runs several campaigns
        sms = create_sms_app(SMS_ID, SMS_SECRET, flow_control=False)
        sms[SMS_OUTBOX].latency = latency
        for app, port in ((wechat, wechat_port), (sms, sms_port)):
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", port).start()
        print("ready", flush=True)
        await asyncio.Event().wait()

    asyncio.run(run())


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- the shop ---

def bench_config(db_url: str, wechat_port: int, sms_port: int, args) -> object:
    base = load_config(ROOT / "config.toml", environ={})
    return base.replace(
        database=DatabaseConfig(db_url),
        wechat=WeChatConfig(app_id=APP_ID, app_secret=APP_SECRET, token="benchtoken",
                            encoding_aes_key="kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aQ",
                            api_base_url=f"http://127.0.0.1:{wechat_port}"),
        sms=SmsConfig(access_key_id=SMS_ID, access_key_secret=SMS_SECRET, sign_name="示例门店",
                      endpoint=f"http://127.0.0.1:{sms_port}", template_verify="SMS_VERIFY",
                      template_welcome="SMS_WELCOME", template_marketing="SMS_PROMO",
                      send_from="00:00", send_until="23:59:59"),
        security=SecurityConfig(data_key=new_data_key()),
        stores=[StoreConfig("S001", "示例门店·总店")],
        scheduler=SchedulerConfig(enabled=False),
        broadcast=dataclasses.replace(base.broadcast, batch_size=args.batch,
                                      mass_batch=args.batch, concurrency=args.concurrency,
                                      sms_per_second=args.sms_per_second),
    )


async def seed(bot, count: int, sms_share: int) -> None:
    step = 2000
    for start in range(0, count, step):
        members = [Member(card_no=f"88{i:08d}", phone_hash=bot.vault.lookup_hash(f"139{i:08d}"),
                          phone_enc=bot.vault.encrypt(f"139{i:08d}"), name=f"会员{i}",
                          tier=bot.config.tiers[i % 2].name)
                   for i in range(start, min(start + step, count))]
        await Member.bulk_create(members)
    ids = await Member.all().order_by("id").values_list("id", flat=True)
    followers = [Follower(openid=f"o_bench_{member_id}", member_id=member_id,
                          following=(n % 100) >= sms_share) for n, member_id in enumerate(ids)]
    for start in range(0, len(followers), step):
        await Follower.bulk_create(followers[start:start + step])


async def ceiling(bot, count: int, sms_share: int) -> float:
    """The campaign's calls straight to the stand-ins: mass sends of a batch's openids, paced
    to mass_per_minute; SMS to the rest, `concurrency` at a time, paced to sms_per_second.
    No database but the rate limiter's, no re-checks, no delivery rows."""
    config = bot.config.broadcast
    wechat = [f"o_bench_{n}" for n in range(count) if (n % 100) >= sms_share]
    sms = [f"139{n:08d}" for n in range(count) if (n % 100) < sms_share]
    started = time.perf_counter()
    size = min(config.batch_size, config.mass_batch)
    for n, start in enumerate(range(0, len(wechat), size)):
        await pace(bot, "ceiling:mass", Limit(config.mass_per_minute, 60))
        await bot.wechat.mass_send(wechat[start:start + size], "周末双倍积分",
                                   client_msg_id=f"ceiling-{count}-{time.time_ns()}-{n}")
    gate = asyncio.Semaphore(config.concurrency)

    async def one(phone: str) -> None:
        async with gate:
            await pace(bot, "ceiling:sms", Limit(config.sms_per_second, 1))
            await bot.sms.send(phone, "SMS_PROMO", {"text": "周末双倍积分"}, "0")

    await asyncio.gather(*(one(p) for p in sms))
    return time.perf_counter() - started


async def engine_run(bot) -> tuple[float, dict[str, int]]:
    campaign = await campaigns.create(bot, segment="all", text="周末双倍积分")
    await campaigns.start(bot, campaign.id)
    started = time.perf_counter()
    await campaigns.run_campaign(bot, campaign)
    seconds = time.perf_counter() - started
    report = await campaigns.status(bot, campaign.id)
    assert report.done, report.counts
    return seconds, {k: v for k, v in report.counts.items() if v}


async def one_size(count: int, args, ports: tuple[int, int], memory: bool) -> dict:
    logging_off()
    with tempfile.TemporaryDirectory() as tmp:
        config = bench_config(f"sqlite://{tmp}/bench.db", *ports, args)
        async with open_bot(config, scheduler=False) as bot:
            await seed(bot, count, args.sms_share)
            if memory:
                tracemalloc.start()
                tracemalloc.reset_peak()
                seconds, counts = await engine_run(bot)
                _, peak = tracemalloc.get_traced_memory()
                tracemalloc.stop()
                return {"peak": peak, "seconds": seconds}
            top = await ceiling(bot, count, args.sms_share)
            seconds, counts = await engine_run(bot)
            sent = await CampaignDelivery.filter(state="sent").count()
            return {"ceiling": top, "seconds": seconds, "counts": counts, "sent": sent}


def logging_off() -> None:
    import logging

    logging.disable(logging.WARNING)


def limit_rate(args, count: int) -> float:
    """Members/s the configured limits allow for this mix: mass_per_minute calls of a batch's
    openids for the followers, sms_per_second for the rest, the slower of the two deciding."""
    defaults = BroadcastConfig()
    wechat = count * (100 - args.sms_share) / 100
    sms = count - wechat
    mass_seconds = (wechat / args.batch) / (defaults.mass_per_minute / 60)
    sms_seconds = sms / args.sms_per_second
    return count / max(mass_seconds, sms_seconds, 1e-9)


async def main(args) -> None:
    ports = (free_port(), free_port())
    child = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--serve", str(ports[0]), str(ports[1]), "--latency",
        str(args.latency), stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert child.stdout and (await child.stdout.readline()).strip() == b"ready"
        print(f"stand-ins with {args.latency * 1000:.0f} ms latency; batch {args.batch}, "
              f"concurrency {args.concurrency}, mass_per_minute "
              f"{BroadcastConfig().mass_per_minute}, sms_per_second {args.sms_per_second}, "
              f"{args.sms_share}% by SMS; SQLite\n")
        peaks = {}
        for count in args.sizes:
            run = await one_size(count, args, ports, memory=False)
            rate, top = count / run["seconds"], count / run["ceiling"]
            print(f"{count:>7,} members: (a) ceiling {top:8.0f}/s ({run['ceiling']:.1f} s)   "
                  f"(b) engine {rate:8.0f}/s ({run['seconds']:.1f} s)   b/a = {rate / top:.2f}"
                  f"   configured limit {limit_rate(args, count):.0f}/s   {run['counts']}")
            peaks[count] = (await one_size(count, args, ports, memory=True))["peak"]
            print(f"{'':>7}          (c) peak Python memory during the run "
                  f"{peaks[count] / 2**20:.1f} MiB")
        if len(peaks) > 1:
            small, large = min(peaks), max(peaks)
            print(f"\npeak memory {large:,} / {small:,} members = "
                  f"{peaks[large] / peaks[small]:.2f} (segment {large / small:.0f}x larger)")
    finally:
        child.terminate()
        await child.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serve", nargs=2, type=int, metavar=("WECHAT_PORT", "SMS_PORT"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")],
                        default=[10_000, 100_000])
    parser.add_argument("--sms-share", type=int, default=5, help="percent not following")
    parser.add_argument("--batch", type=int, default=2000, help="[broadcast] batch_size")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--sms-per-second", type=int, default=200)
    parser.add_argument("--latency", type=float, default=0.02)
    args = parser.parse_args()
    if args.serve:
        serve(*args.serve, args.latency)
    else:
        assert args.batch <= rules.MASS_MAX
        asyncio.run(main(args))
