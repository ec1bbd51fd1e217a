"""WeChat's callback protocol: URL check, signatures, AES (safe and compatible mode), parsing into
Inbound, and passive replies in the mode the request came in.

wechatpy supplies the pure parts (signer, AES cipher, message classes, reply XML). We compare
signatures in constant time and refuse XML that declares a DOCTYPE or entities before any parser
sees it.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import re
import secrets
import struct
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from wechatpy.crypto import PrpCrypto, WeChatCrypto
from wechatpy.events import (
    EVENT_TYPES,
    BaseScanCodeEvent,
    ClickEvent,
    LocationEvent,
    MassSendJobFinishEvent,
    ScanEvent,
    SubscribeEvent,
    SubscribeScanEvent,
    TemplateSendJobFinishEvent,
    UnsubscribeEvent,
    ViewEvent,
)
from wechatpy.messages import (
    MESSAGE_TYPES,
    BaseMessage,
    ImageMessage,
    LocationMessage,
    TextMessage,
    UnknownMessage,
    VoiceMessage,
)

from bot.chat.inbound import Channel, Inbound, Kind
from bot.config import WeChatConfig
from bot.infra.vault import constant_time_equal
from bot.notifications.replies import Image, News, Reply, Text, Transfer

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


# wechatpy's TextReply and ImageReply, character for character (its render() walks field
# descriptors for every reply).
_ADDRESSED = ("<FromUserName><![CDATA[{source}]]></FromUserName>\n"
              "<ToUserName><![CDATA[{target}]]></ToUserName>\n"
              "<CreateTime>{time}</CreateTime>\n</xml>")
_TEXT_REPLY = ("<xml>\n<MsgType><![CDATA[text]]></MsgType>\n"
               "<Content><![CDATA[{content}]]></Content>\n" + _ADDRESSED)
_IMAGE_REPLY = ("<xml>\n<MsgType><![CDATA[image]]></MsgType>\n"
                "<Image>\n        <MediaId><![CDATA[{media_id}]]></MediaId>\n        </Image>\n"
                + _ADDRESSED)
# wechatpy's ArticlesReply with one article (WeChat takes no more since 2018), character for
# character.
_NEWS_REPLY = ("<xml>\n<MsgType><![CDATA[news]]></MsgType>\n<ArticleCount>1</ArticleCount>\n"
               "        <Articles><item>\n"
               "            <Title><![CDATA[{title}]]></Title>\n"
               "            <Description><![CDATA[{description}]]></Description>\n"
               "            <PicUrl><![CDATA[{pic_url}]]></PicUrl>\n"
               "            <Url><![CDATA[{url}]]></Url>\n"
               "            </item></Articles>\n" + _ADDRESSED)
# wechatpy's TransferCustomerServiceReply (no KfAccount: any agent on the workbench takes it).
_TRANSFER_REPLY = "<xml>\n<MsgType><![CDATA[transfer_customer_service]]></MsgType>\n" + _ADDRESSED
# wechatpy's reply envelope, character for character.
_ENVELOPE = """<xml>
<Encrypt><![CDATA[{encrypt}]]></Encrypt>
<MsgSignature><![CDATA[{signature}]]></MsgSignature>
<TimeStamp>{timestamp}</TimeStamp>
<Nonce><![CDATA[{nonce}]]></Nonce>
</xml>"""


def _sign(*parts: str) -> str:
    # WeChat's signature (wechatpy's WeChatSigner): SHA-1 of the parts sorted and joined.
    # Sorting the str sorts their UTF-8 bytes the same way.
    return hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()


class WeChatChannel:
    def __init__(
        self, config: WeChatConfig, max_clock_skew: int, clock: Callable[[], float] = time.time
    ):
        self._config = config
        self._skew = max_clock_skew
        self._clock = clock
        self._crypto = WeChatCrypto(config.token, config.encoding_aes_key, config.app_id)
        self._prp = PrpCrypto(self._crypto.key)
        self._app_id = config.app_id.encode()

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
        """Verify, decrypt and parse one POST. Raises Rejected; never anything else.

        Each document is parsed once and the ciphertext decrypted once: the message's fields
        from that one parse become the Inbound (docs/benchmarks.md, 2026-12-01)."""
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
            fields = _parse_xml(self._decrypt(encrypt))
        envelope = Envelope(encrypted, query.get("nonce", ""), query.get("timestamp", ""))
        message = _message(fields)
        try:
            return to_inbound(message), envelope
        except Exception as exc:  # wechatpy converts fields lazily, on first access
            raise Rejected(400, f"unparseable message ({type(exc).__name__})") from None

    def _decrypt(self, encrypt: str) -> bytes:
        """The message XML inside a safe-mode ciphertext: 16 random bytes, the XML's length
        (4 bytes, network order), the XML, our app_id, PKCS#7 padding to 32 bytes. wechatpy's
        PrpCrypto does the same but skips non-base64 characters and does not check the
        padding, so the layout is read here, after one decryption."""
        try:
            padded = self._prp.cipher.decrypt(base64.b64decode(encrypt, validate=True))
            pad = padded[-1]
            if not 1 <= pad <= 32 or padded[-pad:] != padded[-1:] * pad:
                raise ValueError("bad PKCS#7 padding")
            content = padded[16:-pad]
            if len(content) < 4:
                raise ValueError("no length field")
            (length,) = struct.unpack("!I", content[:4])
            xml, app_id = content[4:length + 4], content[length + 4:]
            xml.decode()  # UTF-8 or nothing, as wechatpy's to_text would have it
        except Exception as exc:  # whatever the bytes provoke
            raise Rejected(400, f"cannot decrypt ({type(exc).__name__})") from None
        if app_id != self._app_id:
            raise Rejected(400, "cannot decrypt (InvalidAppIdException)")
        return xml

    def render(self, reply: Reply | None, inbound: Inbound, envelope: Envelope) -> bytes:
        """The passive reply, or "success" when there is nothing to say (WeChat then stays
        quiet and does not retry)."""
        if reply is None:
            return b"success"
        # wechatpy puts every value in CDATA as it is: a "]]>" in any of them (a forged
        # FromUserName, a member's own words echoed back) would break the reply's XML.
        fields = {"source": _cdata_safe(inbound.account), "target": _cdata_safe(inbound.user),
                  "time": int(time.time())}
        if isinstance(reply, Image):
            rendered = _IMAGE_REPLY.format(media_id=_cdata_safe(reply.media_id), **fields)
        elif isinstance(reply, Text):
            rendered = _TEXT_REPLY.format(content=_cdata_safe(reply.content), **fields)
        elif isinstance(reply, News):
            rendered = _NEWS_REPLY.format(
                title=_cdata_safe(reply.title), description=_cdata_safe(reply.description),
                pic_url=_cdata_safe(reply.pic_url), url=_cdata_safe(reply.url), **fields)
        elif isinstance(reply, Transfer):
            rendered = _TRANSFER_REPLY.format(**fields)
        else:
            raise TypeError(f"cannot render {reply!r}")
        if envelope.encrypted:
            rendered = self._encrypt(rendered, envelope.nonce)
        return rendered.encode()

    def _encrypt(self, xml: str, nonce: str) -> str:
        """The reply in safe mode, as wechatpy's encrypt_message writes it, but on the cipher
        made at start-up: wechatpy builds a new cipher and a random.choice string per reply."""
        text = xml.encode()
        raw = secrets.token_hex(8).encode() + struct.pack("!I", len(text)) + text + self._app_id
        pad = 32 - len(raw) % 32  # PKCS#7 to WeChat's 32-byte blocks: 1 to 32 bytes
        encrypt = base64.b64encode(self._prp.cipher.encrypt(raw + bytes([pad]) * pad)).decode()
        timestamp = str(int(self._clock()))
        return _ENVELOPE.format(encrypt=encrypt, timestamp=timestamp, nonce=nonce,
                                signature=_sign(self._config.token, timestamp, nonce, encrypt))

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


def _message(fields: dict) -> BaseMessage:
    """wechatpy's message class for these fields: its parse_message without parsing the XML
    again (the same choice of class, the same rewriting of a subscribe's qrscene_ key)."""
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
        return _message_class(fields)(fields)
    except Exception as exc:
        raise Rejected(400, f"unparseable message ({type(exc).__name__})") from None


def _message_class(fields: dict) -> type[BaseMessage]:
    # wechatpy.parser.parse_message, step for step, on the fields we already have.
    message_type = fields["MsgType"].lower()
    if message_type != "event" and not message_type.startswith("device_"):
        return MESSAGE_TYPES.get(message_type, UnknownMessage)
    event_type = fields["Event"].lower() if "Event" in fields else None
    if event_type is None and message_type.startswith("device_"):
        event_type = message_type
    elif message_type.startswith("device_"):
        event_type = f"device_{event_type}"
    if event_type == "subscribe" and fields.get("EventKey"):
        event_key = fields["EventKey"]
        if event_key.startswith(("scanbarcode|", "scanimage|")):
            event_type = fields["Event"] = "subscribe_scan_product"
        elif event_key.startswith("qrscene_"):
            event_type = fields["Event"] = "subscribe_scan"
            fields["EventKey"] = event_key[len("qrscene_"):]
    return EVENT_TYPES.get(event_type, UnknownMessage)


# wechatpy's create_time is CreateTime as a datetime in Asia/Shanghai (UTC+8 since 1991).
_SHANGHAI = dt.timezone(dt.timedelta(hours=8))


def _created_at(message: BaseMessage) -> int:
    """CreateTime in seconds. wechatpy's create_time would build a datetime through dateutil
    only for us to take its timestamp again; building it in a fixed +8 zone refuses the same
    out-of-range values (OverflowError, OSError, ValueError) for a fraction of the cost."""
    seconds = message.time  # int(CreateTime), or 0 without one
    if seconds:
        dt.datetime.fromtimestamp(seconds, _SHANGHAI)
    return seconds


def to_inbound(message: BaseMessage) -> Inbound:
    """Map wechatpy's message classes onto our vocabulary."""
    base = {
        "channel": Channel.WECHAT,
        "user": message.source,
        "account": message.target or "",
        "created_at": _created_at(message),
    }
    msg_id = getattr(message, "id", None)
    if message.type == "event":
        # WeChat's rule: events have no MsgId, so FromUserName + CreateTime identify a retry.
        # The event and its key join them: two different taps within one second are two events,
        # while a retry repeats every field. Hashed, because a VIEW key is a long URL.
        scanned = (getattr(message, "scan_code_info", None) or {}).get("ScanResult", "")
        what = f"{getattr(message, 'event', '')}|{getattr(message, 'key', '')}|{scanned}"
        if isinstance(message, MassSendJobFinishEvent):
            # They all come from WeChat's mass-send assistant: two sends finishing in one
            # second are two events, told apart by their MsgID.
            what += f"|{message.id}"
        what = what.encode()
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
        case MassSendJobFinishEvent():
            return Inbound(
                kind=Kind.MASS_FINISH,
                extra={"msg_id": str(message.id), "status": message.status or "",
                       "total": str(message.total_count), "filtered": str(message.filter_count),
                       "sent": str(message.sent_count), "errors": str(message.error_count)},
                **base,
            )
        case TemplateSendJobFinishEvent():
            return Inbound(
                kind=Kind.TEMPLATE_FINISH,
                extra={"msg_id": str(message.id), "status": message.status or ""},
                **base,
            )
    kind = Kind.OTHER_EVENT if message.type == "event" else Kind.MEDIA
    return Inbound(kind=kind, extra={"type": str(message.type)}, **base)
