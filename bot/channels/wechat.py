"""WeChat's callback protocol: URL check, signatures, AES (safe and compatible mode), parsing into
Inbound, and passive replies in the mode the request came in.

wechatpy supplies the pure parts (signer, AES, parser, reply XML). We compare signatures in
constant time and refuse XML that declares a DOCTYPE or entities before any parser sees it.
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from wechatpy import parse_message
from wechatpy.crypto import PrpCrypto, WeChatCrypto
from wechatpy.events import (
    BaseScanCodeEvent,
    ClickEvent,
    LocationEvent,
    ScanEvent,
    SubscribeEvent,
    SubscribeScanEvent,
    TemplateSendJobFinishEvent,
    UnsubscribeEvent,
    ViewEvent,
)
from wechatpy.messages import (
    BaseMessage,
    ImageMessage,
    LocationMessage,
    TextMessage,
    VoiceMessage,
)
from wechatpy.replies import ImageReply, TextReply
from wechatpy.utils import WeChatSigner

from bot.chat.inbound import Channel, Inbound, Kind
from bot.config import WeChatConfig
from bot.infra.vault import constant_time_equal
from bot.notifications.replies import Image, Reply, Text

# The only fields WeChat sends with child elements.
_NESTED = frozenset({"ScanCodeInfo", "SendPicsInfo", "SendLocationInfo", "ArticleUrlResult"})
# Anything starting "<!" other than CDATA: DOCTYPE, ENTITY, comments. WeChat sends none of them.
_MARKUP_DECLARATION = re.compile(rb"<!(?!\[CDATA\[)")


class Rejected(Exception):
    """A request we refuse; status is the HTTP status to answer with, reason goes to the log."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class Envelope:
    """How a request arrived, so the reply goes back the same way."""

    encrypted: bool
    nonce: str
    timestamp: str


def _sign(*parts: str) -> str:
    signer = WeChatSigner()
    signer.add_data(*parts)
    return signer.signature


class WeChatChannel:
    def __init__(
        self, config: WeChatConfig, max_clock_skew: int, clock: Callable[[], float] = time.time
    ):
        self._config = config
        self._skew = max_clock_skew
        self._clock = clock
        self._crypto = WeChatCrypto(config.token, config.encoding_aes_key, config.app_id)
        self._prp = PrpCrypto(self._crypto.key)

    # --- URL verification (GET) ---

    def verify_url(self, query: Mapping[str, str]) -> str:
        self._check_timestamp(query)
        self._check_signature(query.get("signature", ""), query)
        echostr = query.get("echostr", "")
        if not echostr:
            raise Rejected(400, "URL check without echostr")
        return echostr

    # --- messages (POST) ---

    def open(self, query: Mapping[str, str], body: bytes) -> tuple[Inbound, Envelope]:
        """Verify, decrypt and parse one POST. Raises Rejected; never anything else."""
        self._check_timestamp(query)
        encrypted = query.get("encrypt_type", "raw").lower() == "aes"
        # WeChat signs the query in every mode; safe mode adds msg_signature over the ciphertext.
        self._check_signature(query.get("signature", ""), query)
        fields = _parse_xml(body)
        if encrypted:
            encrypt = fields.get("Encrypt")
            if not isinstance(encrypt, str) or not encrypt:
                raise Rejected(400, "safe-mode request without Encrypt")
            expected = _sign(self._config.token, query["timestamp"], query["nonce"], encrypt)
            if not constant_time_equal(expected, query.get("msg_signature", "")):
                raise Rejected(403, "bad msg_signature")
            try:
                # wechatpy skips non-base64 characters and does not check the PKCS#7 padding.
                padded = self._prp.cipher.decrypt(base64.b64decode(encrypt, validate=True))
                if not 1 <= padded[-1] <= 32 or padded[-padded[-1]:] != padded[-1:] * padded[-1]:
                    raise ValueError("bad PKCS#7 padding")
                plaintext = self._prp.decrypt(encrypt, self._config.app_id)
            except Exception as exc:  # wechatpy raises whatever the bytes provoke
                raise Rejected(400, f"cannot decrypt ({type(exc).__name__})") from None
            body = plaintext.encode()
        envelope = Envelope(encrypted, query.get("nonce", ""), query.get("timestamp", ""))
        message = _parse_message(body)
        try:
            return to_inbound(message), envelope
        except Exception as exc:  # wechatpy converts fields lazily, on first access
            raise Rejected(400, f"unparseable message ({type(exc).__name__})") from None

    def render(self, reply: Reply | None, inbound: Inbound, envelope: Envelope) -> bytes:
        """The passive reply, or "success" when there is nothing to say (WeChat then stays
        quiet and does not retry)."""
        if reply is None:
            return b"success"
        # wechatpy puts every value in CDATA as it is: a "]]>" in any of them (a forged
        # FromUserName, a member's own words echoed back) would break the reply's XML.
        source, target = _cdata_safe(inbound.account), _cdata_safe(inbound.user)
        if isinstance(reply, Image):
            xml = ImageReply(source=source, target=target, media_id=_cdata_safe(reply.media_id))
        elif isinstance(reply, Text):
            xml = TextReply(source=source, target=target, content=_cdata_safe(reply.content))
        else:
            raise TypeError(f"cannot render {reply!r}")
        rendered = xml.render()
        if envelope.encrypted:
            rendered = self._crypto.encrypt_message(
                rendered, envelope.nonce, str(int(self._clock()))
            )
        return rendered.encode()

    # --- checks ---

    def _check_timestamp(self, query: Mapping[str, str]) -> None:
        try:
            timestamp = int(query.get("timestamp", ""))
        except ValueError:
            raise Rejected(403, "missing or malformed timestamp") from None
        if abs(self._clock() - timestamp) > self._skew:
            raise Rejected(403, "timestamp outside the allowed clock skew (replay?)")
        if not query.get("nonce"):
            raise Rejected(403, "missing nonce")

    def _check_signature(self, signature: str, query: Mapping[str, str]) -> None:
        expected = _sign(self._config.token, query["timestamp"], query["nonce"])
        if not constant_time_equal(expected, signature):
            raise Rejected(403, "bad signature")


def _cdata_safe(value: str) -> str:
    """Split "]]>" across two CDATA sections, so that it reads back as the same text."""
    return value.replace("]]>", "]]]]><![CDATA[>")


def _parse_xml(body: bytes) -> dict:
    import xmltodict

    if not body.strip():
        raise Rejected(400, "empty body")
    if _MARKUP_DECLARATION.search(body):
        raise Rejected(400, "XML with a DOCTYPE, entity or comment")
    try:
        parsed = xmltodict.parse(body, disable_entities=True)
    except Exception as exc:
        raise Rejected(400, f"malformed XML ({type(exc).__name__})") from None
    fields = parsed.get("xml") if isinstance(parsed, dict) else None
    if not isinstance(fields, dict):
        raise Rejected(400, "XML root is not <xml>")
    return fields


def _parse_message(body: bytes) -> BaseMessage:
    fields = _parse_xml(body)
    for required in ("FromUserName", "MsgType", "CreateTime"):
        if not isinstance(fields.get(required), str) or not fields[required]:
            raise Rejected(400, f"message without {required}")
    if len(fields["FromUserName"]) > 64:
        raise Rejected(400, "FromUserName too long")
    nested = [k for k, v in fields.items() if isinstance(v, dict | list) and k not in _NESTED]
    if nested:
        raise Rejected(400, f"unexpected structure in <{nested[0]}>")
    try:
        int(fields["CreateTime"])
        return parse_message(body.decode())
    except Exception as exc:
        raise Rejected(400, f"unparseable message ({type(exc).__name__})") from None


def to_inbound(message: BaseMessage) -> Inbound:
    """Map wechatpy's message classes onto our vocabulary."""
    base = {
        "channel": Channel.WECHAT,
        "user": message.source,
        "account": message.target or "",
        "created_at": int(message.create_time.timestamp()) if message.create_time else 0,
    }
    msg_id = getattr(message, "id", None)
    if message.type == "event":
        # WeChat's rule: events have no MsgId, so FromUserName + CreateTime identify a retry.
        # The event and its key join them: two different taps within one second are two events,
        # while a retry repeats every field. Hashed, because a VIEW key is a long URL.
        scanned = (getattr(message, "scan_code_info", None) or {}).get("ScanResult", "")
        what = f"{getattr(message, 'event', '')}|{getattr(message, 'key', '')}|{scanned}".encode()
        digest = hashlib.sha256(what).hexdigest()[:16]
        base["dedup_key"] = f"evt:{message.source}:{base['created_at']}:{digest}"
    else:
        fallback = f"msg:{message.source}:{base['created_at']}"
        base["dedup_key"] = f"msg:{msg_id}" if msg_id else fallback

    match message:
        case TextMessage():
            return Inbound(kind=Kind.TEXT, text=message.content or "", **base)
        case VoiceMessage() if message.recognition:
            # Speech recognition text is handled exactly like typed text.
            return Inbound(kind=Kind.TEXT, text=message.recognition, extra={"via": "voice"}, **base)
        case VoiceMessage():
            return Inbound(kind=Kind.VOICE, **base)
        case ImageMessage():
            return Inbound(kind=Kind.IMAGE, **base)
        case LocationMessage():
            return Inbound(kind=Kind.LOCATION, text=message.label or "", **base)
        case SubscribeScanEvent():
            return Inbound(kind=Kind.SUBSCRIBE, scene=message.scene_id or None, **base)
        case SubscribeEvent():
            return Inbound(kind=Kind.SUBSCRIBE, **base)
        case UnsubscribeEvent():
            return Inbound(kind=Kind.UNSUBSCRIBE, **base)
        case ScanEvent():
            return Inbound(kind=Kind.SCAN, scene=message.scene_id or None, **base)
        case ClickEvent():
            return Inbound(kind=Kind.CLICK, text=message.key or "", **base)
        case ViewEvent():
            return Inbound(kind=Kind.VIEW, text=message.url or "", **base)
        case BaseScanCodeEvent():
            info = message.scan_code_info or {}
            return Inbound(
                kind=Kind.SCANCODE,
                text=str(info.get("ScanResult") or ""),
                extra={"key": message.key or "", "scan_type": str(info.get("ScanType") or "")},
                **base,
            )
        case LocationEvent():
            return Inbound(kind=Kind.LOCATION_REPORT, **base)
        case TemplateSendJobFinishEvent():
            return Inbound(
                kind=Kind.TEMPLATE_FINISH,
                extra={"msg_id": str(message.id), "status": message.status or ""},
                **base,
            )
    kind = Kind.OTHER_EVENT if message.type == "event" else Kind.MEDIA
    return Inbound(kind=kind, extra={"type": str(message.type)}, **base)
