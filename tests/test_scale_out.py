"""Three worker processes on PostgreSQL and Redis: every one of 500 messages, sent three times
to three different workers at the same moment, acts exactly once.

These are real `memberbot serve` processes (python -m bot.cli), talking to the WeChat and
Aliyun stand-ins over HTTP. Skips with a reason unless PostgreSQL and Redis are running.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import sys
from pathlib import Path

import aiohttp
import pytest

from bot.config import WeChatConfig
from bot.sandbox import wechat_client as wire
from tests.support import (
    AES_KEY,
    APP_ID,
    APP_SECRET,
    PG_URL,
    POSTGRES_UP,
    REDIS_UP,
    TOKEN,
    free_port,
    reset_postgres,
    worker_env,
)

pytestmark = pytest.mark.skipif(not (POSTGRES_UP and REDIS_UP),
                                reason="needs PostgreSQL and Redis on 127.0.0.1 (CI has both)")
ROOT = Path(__file__).resolve().parent.parent
WORKERS = 3
MESSAGES = 500


@pytest.fixture
async def workers(tmp_path, stand_ins):
    await reset_postgres(PG_URL)
    config = tmp_path / "config.toml"
    shutil.copy(ROOT / "config.toml", config)
    env = worker_env(PG_URL, stand_ins, redis_url="redis://127.0.0.1:6379/0",
                     redis_prefix=f"memberbot-scale-{secrets.token_hex(4)}", scheduler=True)
    ports = [free_port() for _ in range(WORKERS)]
    # Logs to files: a pipe nobody reads fills up and blocks the workers' logging.
    logs = [(tmp_path / f"worker-{i}.log").open("w") for i in range(WORKERS)]
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot.cli", "--config", str(config), "serve",
            env={**env, "MEMBERBOT_SERVER_PORT": str(port)}, cwd=tmp_path,
            stdout=asyncio.subprocess.DEVNULL, stderr=log)
        for port, log in zip(ports, logs, strict=True)
    ]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    try:
        async with aiohttp.ClientSession() as session:
            for url, process in zip(urls, processes, strict=True):
                for _ in range(300):
                    if process.returncode is not None:
                        pytest.fail("a worker exited: " + next(
                            (tmp_path / f"worker-{i}.log").read_text()[-2000:]
                            for i, p in enumerate(processes) if p is process))
                    try:
                        async with session.get(f"{url}/healthz") as response:
                            if response.status == 200:
                                break
                    except aiohttp.ClientError:
                        pass
                    await asyncio.sleep(0.1)
        yield urls
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            await asyncio.wait_for(process.wait(), 10)
        for log in logs:
            log.close()


async def test_every_message_acts_once_across_three_workers(workers, stand_ins):
    simulator = wire.WeChatSimulator(
        WeChatConfig(app_id=APP_ID, app_secret=APP_SECRET, token=TOKEN,
                     encoding_aes_key=AES_KEY), "aes")
    limit = asyncio.Semaphore(48)
    phones = {f"o_scale_{i:03d}": f"1390000{i:04d}" for i in range(MESSAGES)}

    async with aiohttp.ClientSession() as session:

        async def send(url: str, signed: wire.Signed) -> str:
            async with limit, session.post(f"{url}/wechat", params=signed.params,
                                           data=signed.body) as response:
                assert response.status == 200
                reply = simulator.read_reply(await response.read(), signed.params)
                return reply["Content"] if reply else ""

        # Everyone scans the poster and agrees, through whichever worker.
        for step in (lambda o: wire.event(o, "subscribe", "qrscene_store:S001"),
                     lambda o: wire.text(o, "同意")):
            await asyncio.gather(*(send(workers[i % WORKERS], simulator.sign(step(openid)))
                                   for i, openid in enumerate(phones)))

        # The phone step sends an SMS: three copies of each, one to each worker, at once.
        async def three_copies(openid: str, phone: str) -> list[str]:
            signed = simulator.sign(wire.text(openid, phone))
            return await asyncio.gather(*(send(url, signed) for url in workers))

        answers = await asyncio.gather(*(three_copies(o, p) for o, p in phones.items()))

    for replies in answers:
        assert len(set(replies)) == 1 and "验证码已发送" in replies[0], replies
    codes = [m for m in stand_ins.sms.messages if m["template_code"] == "SMS_VERIFY"]
    assert sorted(m["phone"] for m in codes) == sorted(phones.values())  # each exactly once
