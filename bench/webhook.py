"""Webhook throughput and latency, side by side in one run on the same machine.

    .venv/bin/python bench/webhook.py                  # a to e, wrk -t2 -c64 -d15s each
    .venv/bin/python bench/webhook.py --only b --log-level INFO
    .venv/bin/python bench/webhook.py --only bc --profile /tmp/prof --profile-targets bc

Bench-only tools, not in pyproject.toml: `apt-get install -y wrk` and
`.venv/bin/pip install werobot waitress py-spy` (uvloop too for --uvloop). See
docs/benchmarks.md for the figures on the 2-core machine and how to read them.

Safe (AES) mode, 10,000 registered members, 64 connections, every request a different message
from one of those members asking 积分:

(a) ceiling: a bare aiohttp handler that checks the signature, decrypts, and returns a constant
    encrypted reply, i.e. the cost of WeChat's safe mode alone;
(b) memberbot answering 积分 on SQLite;
(c) the same on PostgreSQL (--pg URL, its own database; skipped with a note when unreachable);
(d) the peer: WeRoBot (PyPI `werobot`) answering the same question from the same SQLite file
    (bench/werobot_peer.py; run with `robot.run(server="waitress")`, as its docs say), with
    its default session storage (SQLite, a read and a committed write per message);
(e) the same WeRoBot app with sessions off (SESSION_STORAGE = False): the peer at its fastest.

Each server runs in its own process, one worker each, pinned to one CPU (all its threads) with
wrk on the other, so each gets exactly one core and runs are repeatable (--no-pin lets the
kernel schedule them: figures then swing by ±30% on 2 vCPUs, mostly through cross-core thread
wake-ups and, for WeRoBot's threads, GIL hand-offs). The load generator is wrk (Debian package
`wrk`) with bench/webhook.lua: this script writes a file of pre-signed, pre-encrypted requests
(distinct MsgIds, timestamps inside the ±300 s window) right before each run, wrk warms up on one
file and then measures on another for a fixed duration. Without wrk it falls back to a Python
(aiohttp) load generator and says so: that one shares the 2 cores with the server and is itself
the bottleneck for the faster servers, so its figures are lower bounds.

memberbot runs with the scheduler off, WeChat API calls pointed at an unreachable local URL
(the 积分 path calls none), and logging at WARNING into a file (--log-level INFO measures what
per-message INFO lines cost). Before each run one probe message checks the reply: (b) to (e)
must send the same card text.

Prints requests/s, p50 and p99 for each, the CPU each process used (and anything else on the
machine: a test run elsewhere on 2 cores skews every figure, so the script warns), and the
ratios b/a, c/a, b/d (and b/e) against the aims (b/a >= 0.35, b/d >= 2, p99 < 50 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import multiprocessing
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from bot.config import WeChatConfig
from bot.sandbox import wechat_client as wire

HERE = Path(__file__).resolve().parent
LUA = HERE / "webhook.lua"
TOKEN = "benchToken1"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
APP_ID = "wxbench0000000001"
WECHAT = WeChatConfig(
    app_id=APP_ID, app_secret="bench-secret", token=TOKEN, encoding_aes_key=AES_KEY
)
DATA_KEY = base64.b64encode(b"memberbot-bench-data-key-32bytes").decode()
PG_DEFAULT = "postgres://postgres@127.0.0.1:5432/memberbot_bench"
AIMS = {"b/a": 0.35, "b/d": 2.0, "p99_ms": 50.0}
SERVER_CPU, LOADGEN_CPU = 1, 0  # --pin: the server on one core, wrk on the other


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _child(log_path: str, target, args: tuple, cpu: int | None = None) -> None:
    """Run a server with its stdout/stderr in a log file, not on the bench's terminal, and
    (--pin) on one CPU, which its threads inherit."""
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    target(*args)


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


# --- (b), (c) memberbot ---


def bench_config(port: int, db_url: str):
    from bot.config import (
        DatabaseConfig,
        SchedulerConfig,
        SecurityConfig,
        ServerConfig,
        StoreConfig,
        load_config,
    )

    base = load_config(HERE.parent / "config.toml", environ={})
    return base.replace(
        server=ServerConfig(host="127.0.0.1", port=port),
        database=DatabaseConfig(db_url),
        # The 积分 path calls no WeChat API; anything that tried would fail fast, locally.
        wechat=WeChatConfig(**{**WECHAT.__dict__, "api_base_url": "http://127.0.0.1:9"}),
        security=SecurityConfig(data_key=DATA_KEY),
        scheduler=SchedulerConfig(enabled=False),
        stores=[StoreConfig("S001", "总店")],
    )


def run_memberbot(port: int, db_url: str, log_level: str, loop: str = "asyncio") -> None:
    """Like `memberbot serve` (bot/cli/serve.py serve_one), with the bench's config."""
    import logging

    from aiohttp import web

    from bot.app import create_app

    if loop == "uvloop":  # an experiment (--uvloop): memberbot itself runs on asyncio's loop
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())

    logging.basicConfig(level=getattr(logging, log_level),
                        format="%(asctime)s %(levelname)s %(processName)s %(name)s %(message)s")
    for noisy in ("tortoise", "apscheduler", "aiosqlite"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    config = bench_config(port, db_url)
    web.run_app(create_app(config), host="127.0.0.1", port=port, print=None, access_log=None)


async def seed_members(config, count: int) -> list[str]:
    """`count` registered members, each with a follower; returns their openids."""
    from bot.infra.vault import Vault
    from bot.models import CardSerial, Follower, Member
    from bot.rules.cards import card_number

    if not await Member.exists():
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
    return list(
        await Follower.filter(member_id__not_isnull=True).order_by("id").values_list(
            "openid", flat=True
        )
    )


async def seed(db_url: str, members: int) -> list[str]:
    from bot.infra.db import close_database, open_database

    await open_database(db_url)
    try:
        return await seed_members(bench_config(8080, db_url), members)
    finally:
        await close_database()


async def reset_postgres(url: str) -> None:
    import asyncpg

    if urllib.parse.urlparse(url).path.lstrip("/") in ("", "test", "postgres"):
        raise SystemExit(f"--pg {url}: use a database of the bench's own (never `test`)")
    dsn = url.replace("postgres://", "postgresql://", 1)
    try:
        conn = await asyncpg.connect(dsn, timeout=5)
    except asyncpg.InvalidCatalogNameError:  # first run: make the bench's database
        name = urllib.parse.urlparse(dsn).path.lstrip("/")
        admin = await asyncpg.connect(dsn.rsplit("/", 1)[0] + "/postgres", timeout=5)
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        conn = await asyncpg.connect(dsn, timeout=5)
    try:
        await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
    finally:
        await conn.close()


# --- (d) the peer ---


def run_werobot(port: int, db_path: str, session_path: str | None, server: str) -> None:
    sys.path.insert(0, str(HERE))
    from werobot_peer import run_peer

    run_peer(port, db_path, session_path, server, TOKEN, AES_KEY, APP_ID)


# --- requests ---


def write_requests(path: Path, openids: list[str], count: int, rng: random.Random) -> None:
    """`count` distinct signed requests, one per line: "<path?query>\\t<body>". Members come
    round-robin over a shuffled order, so consecutive requests are from different members."""
    simulator = wire.WeChatSimulator(WECHAT, "aes")
    order = openids[:]
    rng.shuffle(order)
    with path.open("w", encoding="utf-8") as out:
        for i in range(count):
            signed = simulator.sign(wire.text(order[i % len(order)], "积分"))
            body = signed.body.decode()
            assert "\t" not in body and "\n" not in body
            out.write(f"/wechat?{urllib.parse.urlencode(signed.params)}\t{body}\n")


def read_requests(path: Path) -> list[tuple[str, bytes]]:
    with path.open(encoding="utf-8") as lines:
        return [(p, b.encode()) for p, b in (line.rstrip("\n").split("\t", 1) for line in lines)]


# --- load generators ---


@dataclass
class Result:
    rps: float
    p50: float  # ms
    p90: float
    p99: float
    max: float
    requests: int
    errors: int  # non-200, bodies without <Encrypt>, socket errors and timeouts
    wraps: int  # times a wrk thread ran out of fresh requests and replayed old ones
    note: str = ""
    cpu: dict = field(default_factory=dict)  # cores busy during the run, CPU ms per request


def run_wrk(port: int, file: Path, args, duration: float) -> Result:
    command = ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{duration:g}s",
               "--timeout", "10s", "-s", str(LUA), f"http://127.0.0.1:{port}/wechat",
               "--", str(file), str(args.threads)]
    pin = (lambda: os.sched_setaffinity(0, {LOADGEN_CPU})) if args.pin else None
    out = subprocess.run(command, capture_output=True, text=True, check=False, preexec_fn=pin)
    match = re.search(r"^RESULT (.*)$", out.stdout, re.M)
    if out.returncode or not match:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stdout}\n{out.stderr}")
    r = {k: int(v) for k, v in (kv.split("=") for kv in match[1].split())}
    errors = r["non200"] + r["bad"] + r["connect"] + r["read"] + r["write"] + r["timeout"]
    return Result(rps=r["requests"] / (r["duration_us"] / 1e6), p50=r["p50_us"] / 1000,
                  p90=r["p90_us"] / 1000, p99=r["p99_us"] / 1000, max=r["max_us"] / 1000,
                  requests=r["requests"], errors=errors, wraps=r["wraps"],
                  note=f"non200={r['non200']} bad={r['bad']} socket="
                       f"{r['connect'] + r['read'] + r['write']} timeout={r['timeout']}")


async def run_python_load(port: int, file: Path, connections: int, duration: float) -> Result:
    """The fallback when wrk is missing: closed loop, `connections` workers, fixed duration."""
    items = read_requests(file)
    latencies: list[float] = []
    errors = wraps = 0
    cursor = 0
    connector = aiohttp.TCPConnector(limit=connections)
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        deadline = time.perf_counter() + duration

        async def worker() -> None:
            nonlocal errors, wraps, cursor
            while time.perf_counter() < deadline:
                if cursor == len(items):
                    cursor, wraps = 0, wraps + 1
                path, body = items[cursor]
                cursor += 1
                started = time.perf_counter()
                try:
                    async with session.post(f"http://127.0.0.1:{port}{path}",
                                            data=body) as response:
                        reply = await response.read()
                        if response.status != 200 or b"<Encrypt>" not in reply:
                            errors += 1
                except (aiohttp.ClientError, TimeoutError):
                    errors += 1
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.perf_counter() - started
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(len(latencies) * p))] * 1000

    return Result(rps=len(latencies) / elapsed, p50=pct(0.50), p90=pct(0.90), p99=pct(0.99),
                  max=latencies[-1] * 1000, requests=len(latencies), errors=errors, wraps=wraps,
                  note="python load generator")


async def wait_ready(url: str, process: multiprocessing.Process, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if not process.is_alive():
                raise RuntimeError(f"server exited with {process.exitcode}")
            try:
                async with session.get(url) as response:
                    if response.status < 500:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} never came up")


async def probe(port: int, openid: str) -> str:
    """One message; the reply's text (so (b), (c) and (d) can be compared)."""
    simulator = wire.WeChatSimulator(WECHAT, "aes")
    async with aiohttp.ClientSession() as session:
        reply = await simulator.post(session, f"http://127.0.0.1:{port}/wechat",
                                     wire.text(openid, "积分"))
    return (reply or {}).get("Content", "")


# --- CPU accounting (Linux /proc): who used the 2 cores during the measured run ---


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _postgres_pids() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() == "postgres":
                    pids.append(int(entry.name))
    return pids


def _machine_busy_seconds() -> float:
    """CPU seconds every core spent busy (not idle, not waiting on I/O) since boot."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU seconds used by the server process, by PostgreSQL, by the load generator, and by
    anything else on the machine (another test run on a 2-core box skews every figure)."""

    def __init__(self, server_pid: int):
        self.server_pid = server_pid

    def _sample(self) -> tuple[float, float, float, float]:
        times = os.times()  # wrk is a child; the Python load generator is this process
        return (_cpu_seconds(self.server_pid),
                sum(_cpu_seconds(pid) for pid in _postgres_pids()),
                times.children_user + times.children_system + times.user + times.system,
                _machine_busy_seconds())

    def __enter__(self) -> CpuMeter:
        self.start = self._sample()
        self.wall = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        end = self._sample()
        self.wall = time.perf_counter() - self.wall
        self.server, self.postgres, self.loadgen, busy = (
            b - a for a, b in zip(self.start, end, strict=True))
        self.other = max(0.0, busy - self.server - self.postgres - self.loadgen)


# --- one target ---


@dataclass
class Target:
    key: str
    name: str
    target: object
    args: tuple


def measure(t: Target, port: int, openids: list[str], args, tmp: Path, rng: random.Random):
    log = tmp / f"server-{t.key}.log"
    process = multiprocessing.get_context("spawn").Process(
        target=_child, args=(str(log), t.target, t.args, SERVER_CPU if args.pin else None),
        daemon=True)
    process.start()
    profiler = None
    try:
        asyncio.run(wait_ready(f"http://127.0.0.1:{port}/wechat", process))
        reply = asyncio.run(probe(port, openids[0]))
        # Fresh signatures for every run, written right before it (timestamps ±300 s).
        warm, main = tmp / f"warmup-{t.key}.tsv", tmp / f"requests-{t.key}.tsv"
        write_requests(warm, openids, args.warmup_pool, rng)
        write_requests(main, openids, args.pool, rng)
        if args.wrk:
            run_wrk(port, warm, args, args.warmup)
        else:
            asyncio.run(run_python_load(port, warm, args.connections, args.warmup))
        if args.profile and t.key in args.profile_targets:
            profiler = start_profiler(process.pid, Path(args.profile) / f"{t.key}.txt",
                                      args.duration)
        with CpuMeter(process.pid) as cpu:
            if args.wrk:
                result = run_wrk(port, main, args, args.duration)
            else:
                affinity = os.sched_getaffinity(0)
                if args.pin:
                    os.sched_setaffinity(0, {LOADGEN_CPU})
                try:
                    result = asyncio.run(run_python_load(port, main, args.connections,
                                                         args.duration))
                finally:
                    os.sched_setaffinity(0, affinity)
        result.cpu = {"server": cpu.server / cpu.wall, "postgres": cpu.postgres / cpu.wall,
                      "loadgen": cpu.loadgen / cpu.wall, "other": cpu.other / cpu.wall,
                      "ms_per_req": cpu.server / max(1, result.requests) * 1000,
                      "pg_ms_per_req": cpu.postgres / max(1, result.requests) * 1000}
        if profiler:
            profiler.wait(timeout=args.duration + 30)
    except Exception:
        print(f"--- {t.name}: server log {log} ---\n{log.read_text()[-3000:]}", flush=True)
        raise
    finally:
        if profiler and profiler.poll() is None:
            profiler.terminate()
        process.terminate()
        process.join(15)
        if process.is_alive():
            process.kill()
            process.join()
    if profiler:
        result.note += " (py-spy attached)"
    print(
        f"{t.name:<30} {result.rps:>7.0f} req/s  p50 {result.p50:>6.1f} ms  "
        f"p99 {result.p99:>6.1f} ms  max {result.max:>7.1f} ms  errors {result.errors}"
        + (f" ({result.note})" if result.errors else "")
        + (f"  REPLAYED: {result.wraps} wraps" if result.wraps and t.key != "a" else ""),
        flush=True,
    )
    c = result.cpu
    print(f"{'':<30} cores busy: server {c['server']:.2f}, load generator {c['loadgen']:.2f}"
          + (f", postgres {c['postgres']:.2f}" if c["postgres"] > 0.05 else "")
          + f", other processes {c['other']:.2f}"
          + f"; server CPU {c['ms_per_req']:.2f} ms/request"
          + (f" + postgres {c['pg_ms_per_req']:.2f} ms" if c["postgres"] > 0.05 else ""),
          flush=True)
    return result, reply


def start_profiler(pid: int, out: Path, duration: float) -> subprocess.Popen:
    out.parent.mkdir(parents=True, exist_ok=True)
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    return subprocess.Popen(
        [py_spy, "record", "--pid", str(pid), "--duration", str(int(duration)),
         "--rate", str(100), "--format", "raw", "--threads", "-o", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def ratio(results: dict, top: str, bottom: str) -> float | None:
    if top in results and bottom in results:
        return results[top].rps / results[bottom].rps
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=10_000)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--duration", type=float, default=15, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=3, help="warm-up seconds")
    parser.add_argument("--pool", type=int, default=60_000,
                        help="distinct signed requests for the measured run")
    parser.add_argument("--warmup-pool", type=int, default=15_000)
    parser.add_argument("--only", default="abcde", help="which of a, b, c, d, e to run")
    parser.add_argument("--pg", default=PG_DEFAULT, help="PostgreSQL URL for (c); '' to skip")
    parser.add_argument("--log-level", default="WARNING", choices=("WARNING", "INFO"),
                        help="memberbot's logging (b, c)")
    parser.add_argument("--uvloop", dest="loop", action="store_const", const="uvloop",
                        default="asyncio", help="run memberbot (b, c) on uvloop (pip install "
                        "uvloop; an experiment, memberbot does not use it)")
    parser.add_argument("--no-pin", dest="pin", action="store_false",
                        help=f"do not pin each server (all its threads) to CPU {SERVER_CPU} and "
                        f"wrk to CPU {LOADGEN_CPU} (PostgreSQL is never pinned)")
    parser.add_argument("--peer-server", default="waitress",
                        help="robot.run(server=...) for (d): waitress, wsgiref, auto, ...")
    parser.add_argument("--profile", metavar="DIR",
                        help="attach py-spy to memberbot during the measured run (slows it)")
    parser.add_argument("--profile-targets", default="b")
    parser.add_argument("--python-load", action="store_true",
                        help="use the Python load generator even if wrk is installed")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", metavar="DIR",
                        help="work in DIR and keep it (databases, request files, server logs)")
    args = parser.parse_args()
    args.wrk = bool(shutil.which("wrk")) and not args.python_load
    args.pin = args.pin and len(os.sched_getaffinity(0)) >= 2
    rng = random.Random(args.seed)

    with contextlib.ExitStack() as stack:
        if args.keep:
            tmp = Path(args.keep).resolve()
            tmp.mkdir(parents=True, exist_ok=False)
        else:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="memberbot-bench-")))
        sqlite_url = f"sqlite://{tmp}/bench.db"
        targets: list[tuple[Target, str]] = []
        openids: dict[str, list[str]] = {}

        if set(args.only) & set("bde"):
            started = time.perf_counter()
            openids["sqlite"] = asyncio.run(seed(sqlite_url, args.members))
            print(f"seeded {args.members} members on SQLite in "
                  f"{time.perf_counter() - started:.1f} s", flush=True)
        if "c" in args.only:
            try:
                if not args.pg:
                    raise OSError("no --pg URL")
                asyncio.run(reset_postgres(args.pg))
                started = time.perf_counter()
                openids["pg"] = asyncio.run(seed(args.pg, args.members))
                print(f"seeded {args.members} members on PostgreSQL in "
                      f"{time.perf_counter() - started:.1f} s", flush=True)
            except (OSError, ImportError) as exc:
                print(f"(c) skipped: PostgreSQL at {args.pg!r} is not reachable ({exc})")
        if "a" in args.only:
            openids.setdefault("sqlite", [f"o_bench_{i}" for i in range(1, args.members + 1)])
            targets.append((Target("a", "(a) ceiling: decrypt+reply", run_ceiling, ()),
                            "sqlite"))
        if "b" in args.only:
            targets.append((Target("b", "(b) memberbot 积分, SQLite", run_memberbot,
                                   (sqlite_url, args.log_level, args.loop)), "sqlite"))
        if "c" in args.only and "pg" in openids:
            targets.append((Target("c", "(c) memberbot 积分, PostgreSQL", run_memberbot,
                                   (args.pg, args.log_level, args.loop)), "pg"))
        if "d" in args.only:
            targets.append((Target("d", "(d) WeRoBot 积分, SQLite", run_werobot,
                                   (f"{tmp}/bench.db", str(tmp / "werobot_session.sqlite3"),
                                    args.peer_server)), "sqlite"))
        if "e" in args.only:
            targets.append((Target("e", "(e) WeRoBot, session off", run_werobot,
                                   (f"{tmp}/bench.db", None, args.peer_server)), "sqlite"))

        load = (f"wrk -t{args.threads} -c{args.connections} -d{args.duration:g}s "
                f"(after {args.warmup:g} s warm-up)" if args.wrk else
                f"PYTHON load generator, {args.connections} connections, {args.duration:g} s "
                "(wrk not found: `apt-get install wrk`; these figures are lower bounds, the "
                "generator competes with the server for the CPU)")
        print(f"{args.members} members, safe (AES) mode, {load}, {os.cpu_count()} CPUs, "
              f"memberbot logging {args.log_level} on {args.loop}, WeRoBot on "
              f"{args.peer_server}"
              + (f", server pinned to CPU {SERVER_CPU}, load generator to CPU {LOADGEN_CPU}"
                 if args.pin else "") + "\n", flush=True)

        results: dict[str, Result] = {}
        replies: dict[str, str] = {}
        for target, db in targets:
            port = free_port()
            target.args = (port, *target.args)
            results[target.key], replies[target.key] = measure(
                target, port, openids[db], args, tmp, rng)

    card = {k: v for k, v in replies.items() if k in "bcde"}
    if len(set(card.values())) > 1:
        print("\nWARNING: the probe replies differ:")
        for key, text in card.items():
            print(f"--- ({key}) ---\n{text}")
    elif card:
        print(f"\nprobe reply, identical for {', '.join(sorted(card))}:\n"
              + "\n".join("  " + line for line in next(iter(card.values())).splitlines()))

    print()
    for name, top, bottom, aim in (("b/a", "b", "a", AIMS["b/a"]), ("c/a", "c", "a", None),
                                   ("b/d", "b", "d", AIMS["b/d"]), ("b/e", "b", "e", None)):
        value = ratio(results, top, bottom)
        if value is not None:
            verdict = "" if aim is None else (f"  (aim >= {aim:g}: "
                                              f"{'met' if value >= aim else 'NOT met'})")
            print(f"{name} = {value:.2f}{verdict}")
    for key in "bc":
        if key in results:
            p99 = results[key].p99
            print(f"p99 ({key}) = {p99:.1f} ms  (aim < {AIMS['p99_ms']:g} ms: "
                  f"{'met' if p99 < AIMS['p99_ms'] else 'NOT met'})")
    noisy = [k for k, r in results.items() if r.cpu.get("other", 0) > 0.15]
    if noisy:
        busy = ", ".join(f"{results[k].cpu['other']:.2f} in ({k})" for k in noisy)
        print(f"\nWARNING: other processes kept cores busy during the runs: {busy}. On a "
              "2-core machine those figures are too low; re-run when the machine is quiet.")
    if args.profile:
        from pyspy_summary import summarize

        for key in args.profile_targets:
            path = Path(args.profile) / f"{key}.txt"
            if path.exists():
                print(f"\n--- py-spy profile of ({key}): {path} ---")
                print(summarize(path.read_text()))


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
