"""`memberbot chat`: a terminal that acts as one WeChat user. What you type is signed and
AES-encrypted exactly as WeChat does and POSTed to the bot; the passive reply is decrypted and
shown, and so are messages the bot sends later (customer-service messages) and the SMS it
"sends" through the sandbox.

Commands: /scan <scene> (scan a poster QR: follows first if needed), /follow, /unfollow,
/click <KEY>, /voice <text>, /location, /image, /help, /quit. Anything else is a text message.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field

import aiohttp

from bot.config import Config
from bot.infra.vault import mask_phone
from bot.sandbox import wechat_client as wire
from bot.sandbox.runner import ports, sandbox_config

HELP = """Commands:
  /scan store:S001   scan a poster QR code (follows the account first if you don't yet)
  /follow            follow the account without a QR code
  /unfollow          unfollow
  /click MY_CARD     tap a menu button (MY_CARD, JOIN, HELP)
  /voice 我的积分     send a voice message (WeChat's speech recognition text)
  /image, /location  send a picture or a location
  /quit              leave
Anything else is sent as a text message."""


@dataclass
class ChatSession:
    """One simulated WeChat user talking to a running bot."""

    config: Config
    openid: str
    mode: str = "aes"
    following: bool = False
    _message_seq: int = 0
    _sms_seq: int = 0
    _template_seq: int = 0
    _session: aiohttp.ClientSession | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.simulator = wire.WeChatSimulator(self.config.wechat, self.mode)
        bot_port, wechat_port, sms_port = ports(self.config)
        self.bot_url = f"http://127.0.0.1:{bot_port}/wechat"
        self.messages_url = f"http://127.0.0.1:{wechat_port}/sandbox/messages"
        self.templates_url = f"http://127.0.0.1:{wechat_port}/sandbox/templates"
        self.sms_url = f"http://127.0.0.1:{sms_port}/sandbox/sms"

    async def __aenter__(self) -> ChatSession:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        # Start after what was already sent, so an old conversation is not replayed.
        self._message_seq = await self._latest(self.messages_url, {"openid": self.openid})
        self._sms_seq = await self._latest(self.sms_url, {})
        self._template_seq = await self._latest(self.templates_url, {"openid": self.openid})
        return self

    async def __aexit__(self, *exc) -> None:
        if self._session:
            await self._session.close()

    async def _latest(self, url: str, params: dict[str, str]) -> int:
        with contextlib.suppress(aiohttp.ClientError):
            async with self._session.get(url, params={**params, "after": "0"}) as response:
                entries = (await response.json())["messages"]
                return max((e["seq"] for e in entries), default=0)
        return 0

    async def _post(self, xml: str) -> str | None:
        reply = await self.simulator.post(self._session, self.bot_url, xml)
        if reply is None:
            return None
        if reply.get("MsgType") == "image":
            return f"[图片 media_id={reply['Image']['MediaId']}]"
        return str(reply.get("Content", ""))

    async def handle(self, line: str) -> list[str]:
        """What the user typed → what appears on screen."""
        line = line.strip()
        if not line:
            return []
        if not line.startswith("/"):
            return self._show(await self._post(wire.text(self.openid, line)))
        command, _, arg = line.partition(" ")
        arg = arg.strip()
        if command == "/scan" and arg:
            if self.following:
                return self._show(await self._post(wire.event(self.openid, "SCAN", arg)))
            self.following = True
            return self._show(await self._post(
                wire.event(self.openid, "subscribe", f"qrscene_{arg}")))
        if command == "/follow":
            self.following = True
            return self._show(await self._post(wire.event(self.openid, "subscribe", "")))
        if command == "/unfollow":
            self.following = False
            await self._post(wire.event(self.openid, "unsubscribe", ""))
            return ["(你已取消关注；公众号不会再收到你的消息，直到你重新关注)"]
        if command == "/click" and arg:
            return self._show(await self._post(wire.event(self.openid, "CLICK", arg)))
        if command == "/voice" and arg:
            return self._show(await self._post(wire.voice(self.openid, arg)))
        if command == "/image":
            return self._show(await self._post(wire.message_xml(
                self.openid, "image", {"PicUrl": "http://example.com/p.jpg",
                                       "MediaId": "sandbox_image"})))
        if command == "/location":
            return self._show(await self._post(wire.message_xml(
                self.openid, "location", {"Location_X": "31.2304", "Location_Y": "121.4737",
                                          "Scale": 15, "Label": "上海市黄浦区"})))
        return [HELP]

    def _show(self, reply: str | None) -> list[str]:
        return [f"🤖 {reply}"] if reply else []

    async def poll(self) -> list[str]:
        """Messages that arrived since the last poll: later replies and sandbox SMS."""
        lines = []
        async with self._session.get(self.messages_url, params={
                "openid": self.openid, "after": str(self._message_seq)}) as response:
            for message in (await response.json())["messages"]:
                self._message_seq = max(self._message_seq, message["seq"])
                lines.append(f"🤖 {message.get('content') or '[图片]'}")
        async with self._session.get(self.templates_url, params={
                "openid": self.openid, "after": str(self._template_seq)}) as response:
            for notice in (await response.json())["messages"]:
                self._template_seq = max(self._template_seq, notice["seq"])
                fields = "，".join(f"{k}：{v}" for k, v in notice["data"].items())
                lines.append(f"📋 服务通知 [{notice['template_id']}] {fields}")
        async with self._session.get(self.sms_url,
                                     params={"after": str(self._sms_seq)}) as response:
            for sms in (await response.json())["messages"]:
                self._sms_seq = max(self._sms_seq, sms["seq"])
                params = json.dumps(sms["params"], ensure_ascii=False)
                lines.append(f"📱 短信 → {mask_phone(sms['phone'])} [{sms['template_code']}] "
                             f"{params}")
        return lines


async def run_chat(config: Config, openid: str, mode: str = "aes") -> None:
    config = sandbox_config(config)
    print(f"Chatting as {openid} with the sandbox bot on port {ports(config)[0]} ({mode} mode). "
          "Type /help for commands.")
    async with ChatSession(config, openid, mode) as chat:
        stop = asyncio.Event()

        async def poller() -> None:
            while not stop.is_set():
                with contextlib.suppress(aiohttp.ClientError):
                    for line in await chat.poll():
                        print(line, flush=True)
                await asyncio.sleep(0.7)

        poll_task = asyncio.create_task(poller())
        try:
            while True:
                try:
                    line = await asyncio.to_thread(input, "你> ")
                except EOFError:
                    break
                if line.strip() in ("/quit", "/exit"):
                    break
                try:
                    for out in await chat.handle(line):
                        print(out, flush=True)
                except (aiohttp.ClientError, RuntimeError) as exc:
                    print(f"(could not reach the bot at {chat.bot_url}: {exc}. "
                          "Is `memberbot sandbox` running?)")
                await asyncio.sleep(0.3)
                for out in await chat.poll():
                    print(out, flush=True)
        finally:
            stop.set()
            await poll_task
