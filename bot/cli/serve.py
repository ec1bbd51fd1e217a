"""`memberbot serve` and `memberbot worker`: the webhook, and the scheduled jobs on their own."""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing
import signal

from aiohttp import web

from bot.app import create_app
from bot.config import Config
from bot.runtime import open_bot

log = logging.getLogger("memberbot")


def register(commands: argparse._SubParsersAction) -> None:
    serve = commands.add_parser("serve", help="run the webhook server")
    serve.add_argument("--workers", type=int, default=1,
                       help="processes sharing the port (SO_REUSEPORT); default 1")
    serve.set_defaults(run=_run_serve, needs="serving")
    worker = commands.add_parser("worker", help="run the scheduled jobs without the webhook")
    worker.set_defaults(run=_run_worker, needs="serving")


def _run_serve(args: argparse.Namespace, config: Config) -> int:
    return serve(config, args.workers)


def _run_worker(args: argparse.Namespace, config: Config) -> None:
    asyncio.run(worker(config))


def serve(config: Config, workers: int = 1) -> int:
    """The webhook. With several workers, each is a process listening on the same port
    (SO_REUSEPORT: the kernel spreads connections); they share everything through the
    database (and Redis, if configured), so any worker can take any message."""
    if workers <= 1:
        serve_one(config, reuse_port=False)
        return 0
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=serve_one, args=(config, True), name=f"worker-{i}")
                 for i in range(workers)]
    for process in processes:
        process.start()

    def stop(signum, frame) -> None:
        for process in processes:
            if process.is_alive():
                process.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for process in processes:
        process.join()
    return max((p.exitcode or 0 for p in processes), default=0)


def serve_one(config: Config, reuse_port: bool) -> None:
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(processName)s %(name)s %(message)s")
    for noisy in ("tortoise", "apscheduler", "aiosqlite"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    log.info("memberbot listening on http://%s:%d/wechat", config.server.host, config.server.port)
    web.run_app(create_app(config), host=config.server.host, port=config.server.port,
                access_log=None, print=None, reuse_port=reuse_port)


async def worker(config: Config) -> None:
    """The scheduler alone, without the webhook (for a separate worker process)."""
    async with open_bot(config, scheduler=True):
        log.info("memberbot worker running its scheduled jobs; Ctrl+C to stop")
        await asyncio.Event().wait()
