"""`memberbot chat`: a terminal that acts as one WeChat user. What you type is signed and
AES-encrypted exactly as WeChat does and POSTed to the bot; the passive reply is decrypted and
shown, and so are messages the bot sends later (customer-service messages, service notices,
campaigns' mass sends) and the SMS it "sends" through the sandbox to this user's phone.

Which phone is this user's: a seeded demo member's own, any number typed as a message of its
own (as registration asks for it), and numbers added with /phone. SMS to other people's phones
(a clerk types theirs in 消费 …) are not shown, as they would not reach this person.

Commands: /scan <scene> (scan a poster QR, or the console's login:<nonce>: follows first if
needed), /follow, /unfollow, /click <KEY>, /scancode <text> (what a scan button's camera
read), /voice <text>, /location, /image, /phone <number>, /help, /quit. Anything else is a
text message.

Images the bot sends are fetched from the WeChat stand-in and saved under data/chat-images/;
a QR code in one is drawn in the terminal from the payload the poster renderer writes into
the PNG (there is no QR decoder in our stack). When the sandbox stops, a message is retried a
few times (with the same MsgId, as WeChat retries) and the chat waits for it to come back.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import qrcode
from PIL import Image, UnidentifiedImageError

from bot.config import Config
from bot.infra.vault import mask_phone
from bot.notifications.poster import QR_PAYLOAD_KEY
from bot.rules.parsing import normalize_phone
from bot.sandbox import wechat_client as wire
from bot.sandbox.runner import demo_phone, ports, sandbox_config

HELP = """Commands:
  /scan store:S001   scan a poster QR code (follows the account first if you don't yet);
                     /scan login:<nonce> logs the console's waiting browser in (staff only)
  /follow            follow the account without a QR code
  /unfollow          unfollow
  /click MY_CARD     tap a menu button (MY_CARD, JOIN, HELP)
  /scancode CODE     what the camera read after tapping a scan button (店员扫码核销,
                     STAFF_SCAN): e.g. /scancode <券码> as a clerk redeems a coupon
  /voice 我的积分     send a voice message (WeChat's speech recognition text)
  /image, /location  send a picture or a location
  /phone 13700000001 also show the SMS sent to this number (yours, registered earlier)
  /quit              leave
Anything else is sent as a text message. Images the bot sends are saved under
data/chat-images/ and QR codes are drawn here."""

# Waits before each retry of a message the sandbox did not take (about 7 s in all).
RETRY_DELAYS = (0.5, 1.5, 5.0)
UNREACHABLE = ("(The sandbox is not answering at {url}. Start it with `make sandbox` in "
               "another terminal; trying again…)")
NOT_RUNNING = ("(The sandbox is not running at {url}: start it with `make sandbox` in another "
               "terminal. You can type already; what you send is retried for a few seconds.)")
GAVE_UP = "(Not sent: the sandbox is still down. Type it again once `make sandbox` is running.)"
BACK = "(The sandbox is answering again.)"
SCAN_BUTTON = ("({key} opens the camera in WeChat; nothing is sent until it reads a code. "
               "Here, type what it read: /scancode <text>, e.g. /scancode <券码>.)")
NO_SCAN_BUTTON = "(The menu in config.toml has no scancode button to send this from.)"
SCAN_TYPES = ("scancode_waitmsg", "scancode_push")


class SandboxDown(Exception):
    """The bot did not answer after every retry."""


def _buttons(menu: dict) -> list[dict]:
    """Every leaf button of a menu in WeChat's format."""
    found = []
    for button in menu.get("button", []):
        found.extend(button.get("sub_button") or [button])
    return found


@dataclass
class ChatSession:
    """One simulated WeChat user talking to a running bot."""

    config: Config
    openid: str
    mode: str = "aes"
    following: bool = False
    images_dir: Path = Path("data/chat-images")
    color: bool = False  # draw QR codes white-on-black with ANSI colours (a real terminal)
    notice: Callable[[str], None] = print  # a line shown at once, while a retry waits
    _message_seq: int = 0
    _sms_seq: int = 0
    _template_seq: int = 0
    _session: aiohttp.ClientSession | None = field(default=None, repr=False)
    _down: bool = False
    _polling: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)
    _instances: dict[str, str | None] = field(default_factory=dict, repr=False)
    phones: set[str] = field(default_factory=set)  # whose SMS this user sees

    def __post_init__(self) -> None:
        if own := demo_phone(self.openid):
            self.phones.add(own)
        self.simulator = wire.WeChatSimulator(self.config.wechat, self.mode)
        bot_port, wechat_port, sms_port = ports(self.config)
        self.bot_url = f"http://127.0.0.1:{bot_port}/wechat"
        self.messages_url = f"http://127.0.0.1:{wechat_port}/sandbox/messages"
        self.templates_url = f"http://127.0.0.1:{wechat_port}/sandbox/templates"
        self.media_url = f"http://127.0.0.1:{wechat_port}/sandbox/media"
        self.sms_url = f"http://127.0.0.1:{sms_port}/sandbox/sms"

    async def __aenter__(self) -> ChatSession:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        # Start after what was already sent, so an old conversation is not replayed.
        self._message_seq = await self._latest(self.messages_url, {"openid": self.openid})
        self._sms_seq = await self._latest(self.sms_url, {})
        self._template_seq = await self._latest(self.templates_url, {"openid": self.openid})
        if self._down:
            self.notice(NOT_RUNNING.format(url=self.bot_url))
        return self

    async def __aexit__(self, *exc) -> None:
        if self._session:
            await self._session.close()

    async def _latest(self, url: str, params: dict[str, str]) -> int:
        try:
            async with self._session.get(url, params={**params, "after": "0"}) as response:
                body = await response.json()
            self._instances[url] = body.get("instance")
            return max((e["seq"] for e in body["messages"]), default=0)
        except (aiohttp.ClientConnectionError, TimeoutError):
            self._down = True
        return 0

    async def _resync(self) -> None:
        """After an outage, for a feed without an `instance` (the SMS stand-in): a restarted
        one numbers from 1 again, so a counter past its newest entry starts over."""
        if await self._latest(self.sms_url, {}) < self._sms_seq:
            self._sms_seq = 0

    async def _came_back(self) -> list[str]:
        if not self._down:
            return []
        self._down = False
        await self._resync()
        return [BACK]

    async def _post(self, xml: str) -> list[str]:
        """Send a callback; the reply as screen lines. A sandbox that is down is retried with
        the same XML (same MsgId / CreateTime), so a bot that did take it answers it once."""
        for delay in (*RETRY_DELAYS, None):
            try:
                reply = await self.simulator.post(self._session, self.bot_url, xml)
                break
            except (aiohttp.ClientConnectionError, TimeoutError):
                if delay is None:
                    raise SandboxDown(GAVE_UP) from None
                if not self._down:
                    self._down = True
                    self.notice(UNREACHABLE.format(url=self.bot_url))
                await asyncio.sleep(delay)
        lines = await self._came_back()
        if reply is None:
            return lines
        if reply.get("MsgType") == "image":
            return lines + await self._image(reply["Image"]["MediaId"])
        if reply.get("MsgType") == "news":
            article = reply["Articles"]["item"]
            described = str(article.get("Description") or "").splitlines()
            return [*lines, f"🤖 [图文] {article.get('Title') or ''}",
                    *(f"   {line}" for line in described), f"   🔗 {article.get('Url') or ''}"]
        if reply.get("MsgType") == "transfer_customer_service":
            return [*lines, "🤖 [已转到微信客服工作台（[service] mode = \"wechat\"）]"]
        return lines + self._show(str(reply.get("Content", "")))

    async def _image(self, media_id: str) -> list[str]:
        """An image the bot sent: saved to images_dir, and its QR code drawn when it has one."""
        async with self._session.get(self.media_url, params={"media_id": media_id}) as response:
            data = await response.read()
            if response.status != 200 or not response.content_type.startswith("image/"):
                return [f"🤖 [图片 media_id={media_id}: the stand-in no longer has it]"]
        try:
            with Image.open(io.BytesIO(data)) as picture:
                extension = (picture.format or "png").lower()
                payload = getattr(picture, "text", {}).get(QR_PAYLOAD_KEY)
        except UnidentifiedImageError:
            extension, payload = "bin", None
        path = self.images_dir / f"{media_id[:24]}.{extension}"
        await asyncio.to_thread(_write, path, data)
        lines = [f"🤖 [图片] saved to {path}"]
        if payload:
            lines.append(self._terminal_qr(payload))
        else:
            lines.append("   (no QR payload in this image, so it is not drawn here; open the file)")
        return lines

    def _terminal_qr(self, payload: str) -> str:
        """The QR code in block characters, light modules drawn so that a dark terminal shows
        dark-on-light, as a phone's scanner expects."""
        code = qrcode.QRCode(border=2)
        code.add_data(payload)
        out = io.StringIO()
        code.print_ascii(out=out, invert=True)
        rows = out.getvalue().rstrip("\n").split("\n")
        if self.color:
            rows = [f"\x1b[48;5;232m\x1b[38;5;255m{row}\x1b[0m" for row in rows]
        return "\n".join(rows)

    async def handle(self, line: str) -> list[str]:
        """What the user typed → what appears on screen."""
        line = line.strip()
        if not line:
            return []
        if not line.startswith("/"):
            if phone := normalize_phone(line):
                self.phones.add(phone)  # giving one's number (registration, 换绑)
            return await self._post(wire.text(self.openid, line))
        command, _, arg = line.partition(" ")
        arg = arg.strip()
        if command == "/scan" and arg:
            if self.following:
                return await self._post(wire.event(self.openid, "SCAN", arg))
            self.following = True
            return await self._post(wire.event(self.openid, "subscribe", f"qrscene_{arg}"))
        if command == "/follow":
            self.following = True
            return await self._post(wire.event(self.openid, "subscribe", ""))
        if command == "/unfollow":
            self.following = False
            shown = await self._post(wire.event(self.openid, "unsubscribe", ""))
            return [*shown, "(你已取消关注；公众号不会再收到你的消息，直到你重新关注)"]
        if command == "/click" and arg:
            button = self._button(arg)
            if button and button.get("type") in SCAN_TYPES:
                # WeChat sends nothing for the tap itself: the event comes after the scan.
                return [SCAN_BUTTON.format(key=arg)]
            return await self._post(wire.event(self.openid, "CLICK", arg))
        if command == "/scancode" and arg:
            button = next((b for b in _buttons(self.config.menu)
                           if b.get("type") in SCAN_TYPES), None)
            if button is None:
                return [NO_SCAN_BUTTON]
            return await self._post(wire.scancode(self.openid, button["key"], arg,
                                                  kind=button["type"]))
        if command == "/phone" and normalize_phone(arg):
            self.phones.add(normalize_phone(arg))
            return [f"(SMS to {mask_phone(normalize_phone(arg))} are shown here from now on.)"]
        if command == "/voice" and arg:
            return await self._post(wire.voice(self.openid, arg))
        if command == "/image":
            return await self._post(wire.message_xml(
                self.openid, "image", {"PicUrl": "http://example.com/p.jpg",
                                       "MediaId": "sandbox_image"}))
        if command == "/location":
            return await self._post(wire.message_xml(
                self.openid, "location", {"Location_X": "31.2304", "Location_Y": "121.4737",
                                          "Scale": 15, "Label": "上海市黄浦区"}))
        return [HELP]

    def _button(self, key: str) -> dict | None:
        return next((b for b in _buttons(self.config.menu) if b.get("key") == key), None)

    def _show(self, reply: str | None) -> list[str]:
        return [f"🤖 {reply}"] if reply else []

    async def poll(self) -> list[str]:
        """Messages that arrived since the last poll: later replies and sandbox SMS. A
        sandbox that is down shows nothing (the first failure says so once)."""
        async with self._polling:  # the background poller and the prompt both poll
            try:
                lines = await self._came_back() if self._down else []
                return lines + await self._fetch_new()
            except (aiohttp.ClientConnectionError, TimeoutError):
                if not self._down:
                    self._down = True
                    self.notice(UNREACHABLE.format(url=self.bot_url))
            except aiohttp.ClientError:
                pass  # something else on the port, or a stand-in mid-start: next poll
            return []

    async def _entries(self, url: str, attr: str, params: dict[str, str]) -> list[dict]:
        """One feed's entries after the counter in attr. A stand-in that restarted (another
        `instance`) numbers from 1 again: then start over from its first entry."""
        async with self._session.get(url, params={
                **params, "after": str(getattr(self, attr))}) as response:
            body = await response.json()
        instance, known = body.get("instance"), self._instances.get(url)
        self._instances[url] = instance
        if known is not None and instance != known and getattr(self, attr):
            setattr(self, attr, 0)
            return await self._entries(url, attr, params)
        entries = body["messages"]
        setattr(self, attr, max([getattr(self, attr), *(e["seq"] for e in entries)]))
        return entries

    async def _fetch_new(self) -> list[str]:
        lines = []
        mine = {"openid": self.openid}
        for message in await self._entries(self.messages_url, "_message_seq", mine):
            if message.get("media_id"):
                lines.extend(await self._image(message["media_id"]))
            elif message.get("via") == "mass":
                lines.append(f"📣 群发 {message.get('content')}")
            else:
                lines.append(f"🤖 {message.get('content')}")
        for notice in await self._entries(self.templates_url, "_template_seq", mine):
            fields = "，".join(f"{k}：{v}" for k, v in notice["data"].items())
            lines.append(f"📋 服务通知 [{notice['template_id']}] {fields}")
        for sms in await self._entries(self.sms_url, "_sms_seq", {}):
            if sms["phone"] not in self.phones:
                continue
            params = json.dumps(sms["params"], ensure_ascii=False)
            lines.append(f"📱 短信 → {mask_phone(sms['phone'])} [{sms['template_code']}] "
                         f"{params}")
        return lines


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


async def run_chat(config: Config, openid: str, mode: str = "aes") -> None:
    config = sandbox_config(config)
    print(f"Chatting as {openid} with the sandbox bot on port {ports(config)[0]} ({mode} mode). "
          "Type /help for commands.")
    color = sys.stdout.isatty()
    async with ChatSession(config, openid, mode, color=color) as chat:
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
                except SandboxDown as down:
                    print(down, flush=True)
                except (aiohttp.ClientError, RuntimeError) as exc:
                    print(f"(the bot at {chat.bot_url} failed: {exc}. See the sandbox's "
                          "terminal.)", flush=True)
                await asyncio.sleep(0.3)
                for out in await chat.poll():
                    print(out, flush=True)
        finally:
            stop.set()
            await poll_task
