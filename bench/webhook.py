"""Webhook throughput and latency, side by side in one run on the same machine.

    .venv/bin/python bench/webhook.py [--members 10000] [--requests 4000] [--connections 64]

(a) ceiling: a bare aiohttp handler that checks the signature, decrypts, and returns a constant
    encrypted reply, i.e. the cost of WeChat's safe mode alone;
(b) memberbot answering 积分 on SQLite, for distinct registered members.

Each server runs in its own process; this process is the load generator, sending requests that
are signed and AES-encrypted exactly as WeChat sends them (pre-built, so signing costs nothing
during the run). Prints requests/s, p50 and p99 for each and the ratio b/a.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import socket
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp

from bot.config import WeChatConfig
from bot.sandbox import wechat_client as wire

TOKEN = "benchToken1"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
APP_ID = "wxbench0000000001"
WARMUP = 200  # distinct messages: a repeated MsgId would only measure the dedup path
WECHAT = WeChatConfig(
    app_id=APP_ID, app_secret="bench-secret", token=TOKEN, encoding_aes_key=AES_KEY
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- (a) the ceiling ---


def run_ceiling(port: int) -> None:
    from aiohttp import web
    from wechatpy.crypto import WeChatCrypto
    from wechatpy.replies import TextReply

    crypto = WeChatCrypto(TOKEN, AES_KEY, APP_ID)

    async def handle(request: web.Request) -> web.Response:
        q = request.query
        plain = crypto.decrypt_message(
            await request.read(), q["msg_signature"], q["timestamp"], q["nonce"]
        )
        source = plain.split("<FromUserName><![CDATA[", 1)[1].split("]]>", 1)[0]
        reply = TextReply(source="gh_bench", target=source, content="积分：100").render()
        return web.Response(body=crypto.encrypt_message(reply, q["nonce"]).encode())

    app = web.Application()
    app.router.add_post("/wechat", handle)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


# --- (b) memberbot on SQLite ---


def run_memberbot(port: int, db_url: str, members: int) -> None:
    import logging

    from aiohttp import web

    from bot.app import create_app
    from bot.config import (
        DatabaseConfig,
        SecurityConfig,
        ServerConfig,
        StoreConfig,
        load_config,
    )
    from bot.security import new_data_key

    logging.basicConfig(level=logging.WARNING)
    base = load_config(Path(__file__).resolve().parent.parent / "config.toml", environ={})
    config = base.replace(
        server=ServerConfig(host="127.0.0.1", port=port),
        database=DatabaseConfig(db_url),
        wechat=WeChatConfig(**{**WECHAT.__dict__, "api_base_url": "http://127.0.0.1:9"}),
        security=SecurityConfig(data_key=new_data_key()),
        stores=[StoreConfig("S001", "总店")],
    )
    app = create_app(config)

    async def seed(app: web.Application) -> None:
        await seed_members(config, members)

    app.on_startup.append(seed)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


async def seed_members(config, count: int) -> None:
    from bot.cardno import card_number
    from bot.models import CardSerial, Follower, Member
    from bot.security import Vault

    if await Member.exists():
        return
    vault = Vault(config.security.data_key_bytes)
    batch = 1000
    for start in range(0, count, batch):
        n = min(batch, count - start)
        await CardSerial.bulk_create([CardSerial() for _ in range(n)])
        rows = []
        for i in range(start, start + n):
            phone = f"139{i:08d}"
            rows.append(
                Member(
                    card_no=card_number("88", i + 1),
                    phone_hash=vault.lookup_hash(phone),
                    phone_enc=vault.encrypt(phone),
                    name=f"会员{i}",
                    tier="普通会员",
                    points=100 + i % 900,
                )
            )
        await Member.bulk_create(rows)
        ids = await Member.filter(card_no__in=[r.card_no for r in rows]).values_list(
            "id", flat=True
        )
        await Follower.bulk_create(
            [Follower(openid=f"o_bench_{mid}", member_id=mid) for mid in ids]
        )


# --- the load generator ---


async def wait_ready(url: str) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(600):
            try:
                async with session.get(url) as response:
                    if response.status < 500:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} never came up")


async def load(url: str, requests: list[wire.Signed], connections: int) -> dict:
    latencies: list[float] = []
    errors = 0
    queue: asyncio.Queue = asyncio.Queue()
    for r in requests:
        queue.put_nowait(r)
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal errors
            while not queue.empty():
                signed = queue.get_nowait()
                started = time.perf_counter()
                async with session.post(url, params=signed.params, data=signed.body) as response:
                    body = await response.read()
                    if response.status != 200 or b"Encrypt" not in body:
                        errors += 1
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "rps": len(requests) / elapsed,
        "p50": statistics.median(latencies) * 1000,
        "p99": latencies[int(len(latencies) * 0.99) - 1] * 1000,
        "errors": errors,
    }


def build_requests(count: int, members: int, ids: list[int]) -> list[wire.Signed]:
    simulator = wire.WeChatSimulator(WECHAT, "aes")
    return [simulator.sign(wire.text(f"o_bench_{ids[i % len(ids)]}", "积分")) for i in range(count)]


def measure(name: str, target, args: tuple, requests: list[wire.Signed], connections: int):
    port = args[0]
    process = multiprocessing.get_context("spawn").Process(target=target, args=args, daemon=True)
    process.start()
    try:
        url = f"http://127.0.0.1:{port}/wechat"
        asyncio.run(wait_ready(url))
        warmup, measured = requests[:WARMUP], requests[WARMUP:]
        asyncio.run(load(url, warmup, connections))
        result = asyncio.run(load(url, measured, connections))
    finally:
        process.terminate()
        process.join()
    print(
        f"{name:<28} {result['rps']:>9.0f} req/s   p50 {result['p50']:>7.1f} ms   "
        f"p99 {result['p99']:>7.1f} ms   errors {result['errors']}",
        flush=True,
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--members", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=4_000)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        db_url = f"sqlite://{tmp}/bench.db"
        # Member ids are 1..N after seeding an empty database.
        requests = build_requests(
            args.requests + WARMUP, args.members, list(range(1, args.members + 1))
        )
        print(
            f"{args.requests} requests, {args.members} members, "
            f"{args.connections} connections, safe (AES) mode\n"
        )
        ceiling = measure(
            "(a) ceiling: decrypt+reply", run_ceiling, (free_port(),), requests, args.connections
        )
        ours = measure(
            "(b) memberbot 积分, SQLite",
            run_memberbot,
            (free_port(), db_url, args.members),
            requests,
            args.connections,
        )
    print(f"\nb/a = {ours['rps'] / ceiling['rps']:.2f}")


if __name__ == "__main__":
    main()
