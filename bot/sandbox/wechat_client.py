"""Acting as WeChat's servers: build callback XML, sign it and encrypt it exactly as WeChat does,
and read the passive reply. Used by `memberbot chat`, the tests and the benchmarks."""

from __future__ import annotations

import itertools
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
import xmltodict
from wechatpy.crypto import WeChatCrypto
from wechatpy.utils import WeChatSigner

from bot.config import WeChatConfig

ACCOUNT = "gh_sandbox00001"
_msg_ids = itertools.count(int(time.time() * 1000) * 1000 + secrets.randbelow(1000))


def _cdata(value: str) -> str:
    return f"<![CDATA[{value.replace(']]>', ']]]]><![CDATA[>')}]]>"


def message_xml(openid: str, msg_type: str, fields: dict[str, str | int], *,
                create_time: int | None = None, msg_id: int | None = None,
                account: str = ACCOUNT) -> str:
    """One callback message. Text/voice/image carry a MsgId; events do not."""
    parts = [
        f"<ToUserName>{_cdata(account)}</ToUserName>",
        f"<FromUserName>{_cdata(openid)}</FromUserName>",
        f"<CreateTime>{create_time or int(time.time())}</CreateTime>",
        f"<MsgType>{_cdata(msg_type)}</MsgType>",
    ]
    for name, value in fields.items():
        if isinstance(value, int) or name == "ScanCodeInfo":
            parts.append(f"<{name}>{value}</{name}>")
        else:
            parts.append(f"<{name}>{_cdata(value)}</{name}>")
    if msg_type != "event":
        parts.append(f"<MsgId>{msg_id or next(_msg_ids)}</MsgId>")
    return "<xml>" + "".join(parts) + "</xml>"


def text(openid: str, content: str, **kw) -> str:
    return message_xml(openid, "text", {"Content": content}, **kw)


def voice(openid: str, recognition: str, **kw) -> str:
    return message_xml(openid, "voice", {"MediaId": "sandbox_voice", "Format": "amr",
                                         "Recognition": recognition}, **kw)


def event(openid: str, name: str, key: str | None = None, **kw) -> str:
    fields: dict[str, str | int] = {"Event": name}
    if key is not None:
        fields["EventKey"] = key
    return message_xml(openid, "event", fields, **kw)


def scancode(openid: str, key: str, result: str, *, kind: str = "scancode_waitmsg",
             **kw) -> str:
    """What WeChat sends after a scancode_waitmsg / scancode_push menu button read a QR code:
    the button's EventKey and a ScanCodeInfo holding ScanType and ScanResult."""
    if kind not in ("scancode_waitmsg", "scancode_push"):
        raise ValueError("kind is scancode_waitmsg or scancode_push")
    info = (f"<ScanType>{_cdata('qrcode')}</ScanType>"
            f"<ScanResult>{_cdata(result)}</ScanResult>")
    return message_xml(openid, "event", {"Event": kind, "EventKey": key,
                                         "ScanCodeInfo": info}, **kw)


@dataclass(frozen=True)
class Signed:
    """A request as WeChat would send it: query string and body."""

    params: dict[str, str]
    body: bytes


class WeChatSimulator:
    """Signs (and in safe mode encrypts) callbacks with the account's token and AES key."""

    def __init__(self, config: WeChatConfig, mode: str = "aes",
                 clock: Callable[[], float] = time.time):
        if mode not in ("plain", "compat", "aes"):
            raise ValueError("mode is plain, compat or aes")
        self.config = config
        self.mode = mode
        self.clock = clock  # signs with this time: tests move the bot's clock and this one with it
        self.crypto = WeChatCrypto(config.token, config.encoding_aes_key, config.app_id)

    def sign(self, xml: str, *, timestamp: int | None = None, nonce: str | None = None) -> Signed:
        timestamp_s = str(timestamp or int(self.clock()))
        nonce = nonce or secrets.token_hex(8)
        signer = WeChatSigner()
        signer.add_data(self.config.token, timestamp_s, nonce)
        params = {"signature": signer.signature, "timestamp": timestamp_s, "nonce": nonce,
                  "openid": _openid_of(xml)}
        if self.mode == "plain":
            return Signed(params, xml.encode())
        envelope = xmltodict.parse(
            self.crypto.encrypt_message(xml, nonce, timestamp_s)
        )["xml"]
        encrypt = envelope["Encrypt"]
        params.update(encrypt_type="aes", msg_signature=envelope["MsgSignature"])
        if self.mode == "compat":
            # Compatible mode: the plaintext fields travel beside the ciphertext.
            body = xml.replace("</xml>", f"<Encrypt>{_cdata(encrypt)}</Encrypt></xml>")
        else:
            body = (f"<xml><ToUserName>{_cdata(ACCOUNT)}</ToUserName>"
                    f"<Encrypt>{_cdata(encrypt)}</Encrypt></xml>")
        return Signed(params, body.encode())

    def read_reply(self, body: bytes, params: dict[str, str]) -> dict | None:
        """The reply's fields (Content, MsgType, ...), or None for "success" / empty."""
        if body in (b"", b"success"):
            return None
        if self.mode != "plain":
            decrypted = self.crypto.decrypt_message(body.decode(), _field(body, "MsgSignature"),
                                                    _field(body, "TimeStamp"),
                                                    _field(body, "Nonce"))
            body = decrypted.encode()
        return xmltodict.parse(body)["xml"]

    async def post(self, session: aiohttp.ClientSession, url: str, xml: str) -> dict | None:
        signed = self.sign(xml)
        async with session.post(url, params=signed.params, data=signed.body) as response:
            body = await response.read()
            if response.status != 200:
                raise RuntimeError(f"HTTP {response.status}: {body[:200]!r}")
        return self.read_reply(body, signed.params)


def _openid_of(xml: str) -> str:
    start = xml.find("<FromUserName><![CDATA[")
    if start < 0:
        return ""
    start += len("<FromUserName><![CDATA[")
    return xml[start:xml.find("]]>", start)]


def _field(body: bytes, name: str) -> str:
    return str(xmltodict.parse(body)["xml"][name])
