"""`memberbot chat` shows a mass send (a campaign's promotion) as the member receives it, and
the sandbox's stand-in tells the bot it finished (MASSSENDJOBFINISH, answered "success")."""

from __future__ import annotations

import asyncio
import logging

import aiohttp

from bot.sandbox.runner import APP_ID, APP_SECRET, ports, sandbox_config
from tests.sandbox.test_chat import running_sandbox


async def test_the_chat_shows_a_mass_send_and_the_bot_hears_it_finished(tmp_path, capsys,
                                                                        caplog):
    caplog.set_level(logging.INFO)
    async with running_sandbox(tmp_path / "data", capsys) as sandbox:
        _, wechat_port, _ = ports(sandbox.config)
        base = f"http://127.0.0.1:{wechat_port}"
        async with sandbox.chat("o_demo_member_1") as chat:
            async with aiohttp.ClientSession() as session:
                async with session.post(f"{base}/cgi-bin/stable_token", json={
                        "grant_type": "client_credential", "appid": APP_ID,
                        "secret": APP_SECRET}) as response:
                    token = (await response.json())["access_token"]
                async with session.post(f"{base}/cgi-bin/message/mass/send",
                                        params={"access_token": token}, json={
                        "touser": ["o_demo_member_1", "o_demo_member_2"], "msgtype": "text",
                        "text": {"content": "周末双倍积分"}, "clientmsgid": "t1"}) as response:
                    assert (await response.json())["errcode"] == 0
            assert await chat.poll() == ["📣 群发 周末双倍积分"]
        # The bot takes the event (not one of its campaigns' sends, so it says so).
        for _ in range(100):
            if any("MASSSENDJOBFINISH for mass send" in r.getMessage()
                   for r in caplog.records):
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the bot never heard of the mass send")
        assert sandbox_config(sandbox.config, sandbox.data_dir).wechat.app_id == APP_ID
    assert not any("not delivered" in r.getMessage() for r in caplog.records)
