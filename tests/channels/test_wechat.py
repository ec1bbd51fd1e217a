"""The WeChat webhook as an attacker and a sloppy network see it.

GET /wechat answers URL verification; POST /wechat takes plain, compatible and safe (AES) mode and
answers in the mode it was asked in. Anything forged, stale, oversized or malformed is refused with
403 / 413 / 400, leaves no trace in the database, is logged on "memberbot.http" and counted in
/metrics, and the worker goes on answering real traffic.

Behaviour documented here (not spelled out by WeChat):
* The Content-Type header is ignored: a valid body is answered whatever the header says.
* A body of exactly max_body_bytes (64 KiB) is accepted; one byte more is 413, whether the size is
  announced by Content-Length, streamed chunked, or only reached after gzip decoding.
* GET without echostr (but correctly signed) is 400.
* XML comments are refused like DOCTYPEs (WeChat never sends "<!" other than CDATA).
"""

from __future__ import annotations

import base64
import gzip
import logging
import os
import re
import struct
import time
from collections.abc import AsyncIterator, Callable

import pytest
import xmltodict
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from prometheus_client.parser import text_string_to_metric_families
from wechatpy import parse_message
from wechatpy.crypto import WeChatCrypto
from wechatpy.exceptions import InvalidAppIdException, InvalidSignatureException
from wechatpy.replies import ImageReply, TextReply
from wechatpy.utils import WeChatSigner

from bot.channels import wechat as wechat_module
from bot.channels.wechat import WeChatChannel, to_inbound
from bot.config import WeChatConfig
from bot.models import Conversation, Follower, InboundMessage, Member
from bot.notifications.replies import Image, Text
from bot.sandbox import wechat_client as wire
from bot.sandbox.wechat_client import Signed
from tests.support import (
    AES_KEY,
    APP_ID,
    APP_SECRET,
    FIXTURES,
    TOKEN,
    Harness,
    fixture_xml,
)

MODES = ("plain", "compat", "aes")
LIMIT = 64 * 1024
SKEW_OK, SKEW_BAD = 290, 310  # the limit is 300 s; keep a margin for the clock ticking meanwhile
MESSAGE_FIXTURES = sorted(
    p.name for p in (FIXTURES / "wechat").glob("*.xml") if p.name != "encrypted_envelope.xml"
)
# What each sample gets from a stranger: a phrase of the reply, or None for "success".
EXPECTED = {
    "event_click.xml": "还不是",  # MY_CARD from a non-member: the invitation to join
    "event_location.xml": None,
    "event_scan.xml": "欢迎关注",
    "event_scancode_waitmsg.xml": "店员核销",  # a staff scan from someone who is not staff
    "event_subscribe_plain.xml": "欢迎关注",
    "event_subscribe_scene.xml": "欢迎关注",
    "event_templatesendjobfinish.xml": None,
    "event_unsubscribe.xml": None,
    "event_view.xml": None,
    "image.xml": "帮助",
    "location.xml": "帮助",
    "text.xml": "还不是",
    "voice.xml": "还不是",
}
AES_RAW_KEY = base64.b64decode(AES_KEY + "=")

BILLION_LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY a "aaaaaaaaaa">'
    '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">'
    '<!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;"><!ENTITY e "&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;">]>'
    "<xml><ToUserName>gh_x</ToUserName><FromUserName>o_lol</FromUserName>"
    "<CreateTime>1732240800</CreateTime><MsgType>text</MsgType><Content>&e;</Content>"
    "<MsgId>1</MsgId></xml>"
)
EXTERNAL_ENTITY = (
    '<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    "<xml><ToUserName>gh_x</ToUserName><FromUserName>o_xxe</FromUserName>"
    "<CreateTime>1732240800</CreateTime><MsgType>text</MsgType><Content>&xxe;</Content>"
    "<MsgId>2</MsgId></xml>"
)


# --- helpers ---------------------------------------------------------------------------------


def sha1_sign(*parts: str) -> str:
    signer = WeChatSigner()
    signer.add_data(*parts)
    return signer.signature


def forged_message() -> str:
    """A subscribe through a store QR code: processed, it would write Follower, Conversation and
    InboundMessage rows and answer with a welcome."""
    return wire.event("o_forged_0001", "subscribe", "qrscene_store:S001")


def without(name: str, xml: str) -> str:
    start, end = xml.index(f"<{name}>"), xml.index(f"</{name}>") + len(f"</{name}>")
    return xml[:start] + xml[end:]


def pkcs7(count: int) -> bytes:
    return bytes([count]) * count


def not_pkcs7(count: int) -> bytes:
    """Last byte right, the others not: PKCS#7 would refuse it."""
    count = count if count > 1 else count + 32
    return bytes(range(1, count)) + bytes([count])


def aes_encrypt(plaintext: bytes, *, app_id: str = APP_ID, key: bytes = AES_RAW_KEY,
                length: int | None = None, padding: Callable[[int], bytes] = pkcs7) -> str:
    """WeChat's ciphertext built by hand, so that length field and padding can be wrong.
    `padding` gets the number of bytes PKCS#7 would add (to a 32-byte block, like WeChat)."""
    raw = os.urandom(16) + struct.pack(">I", len(plaintext) if length is None else length)
    raw += plaintext + app_id.encode()
    padding = padding(32 - len(raw) % 32)
    encryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    return base64.b64encode(encryptor.update(raw + padding) + encryptor.finalize()).decode()


def safe_mode_request(encrypt: str, *, envelope: str | None = None) -> Signed:
    """A correctly signed safe-mode request carrying `encrypt`, whatever it is."""
    timestamp, nonce = str(int(time.time())), os.urandom(6).hex()
    params = {"signature": sha1_sign(TOKEN, timestamp, nonce), "timestamp": timestamp,
              "nonce": nonce, "encrypt_type": "aes",
              "msg_signature": sha1_sign(TOKEN, timestamp, nonce, encrypt)}
    body = envelope or ("<xml><ToUserName><![CDATA[gh_sandbox00001]]></ToUserName>"
                        f"<Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>")
    return Signed(params, body.encode())


async def row_counts() -> dict[str, int]:
    return {model.__name__: await model.all().count()
            for model in (InboundMessage, Follower, Conversation, Member)}


NOTHING = {"InboundMessage": 0, "Follower": 0, "Conversation": 0, "Member": 0}


def open_reply(body: bytes, params: dict[str, str], mode: str) -> dict | None:
    """Check the reply came back in the request's mode and return its fields (None: "success").
    Encrypted replies are verified here, independently of the bot's own code."""
    if body == b"success":
        return None
    if mode == "plain":
        assert b"<Encrypt>" not in body
        return xmltodict.parse(body)["xml"]
    envelope = xmltodict.parse(body)["xml"]
    assert set(envelope) == {"Encrypt", "MsgSignature", "TimeStamp", "Nonce"}, envelope
    assert b"<Content>" not in body and b"<MsgType>" not in body  # nothing leaks in clear
    assert envelope["Nonce"] == params["nonce"]
    assert abs(int(envelope["TimeStamp"]) - time.time()) < 60
    assert envelope["MsgSignature"] == sha1_sign(
        TOKEN, envelope["TimeStamp"], envelope["Nonce"], envelope["Encrypt"])
    plaintext = WeChatCrypto(TOKEN, AES_KEY, APP_ID).decrypt_message(
        body.decode(), envelope["MsgSignature"], envelope["TimeStamp"], envelope["Nonce"])
    return xmltodict.parse(plaintext)["xml"]


async def send(h: Harness, xml: str, **sign: int | str) -> tuple[int, bytes, Signed]:
    signed = h.simulator.sign(xml, **sign)
    status, body = await h.raw(signed.params, signed.body)
    return status, body, signed


_alive_ids = iter(range(10**6))


async def assert_alive(h: Harness) -> None:
    """A genuine message still gets a normal reply, in the harness' mode."""
    openid = f"o_alive_{next(_alive_ids):06d}"
    status, body, signed = await send(h, wire.text(openid, "帮助"))
    assert status == 200, body
    reply = open_reply(body, signed.params, h.mode)
    assert reply and reply["ToUserName"] == openid and reply["Content"]


async def assert_refused(h: Harness, caplog: pytest.LogCaptureFixture, expected: int,
                         params: dict[str, str], body: bytes, method: str = "POST",
                         headers: dict[str, str] | None = None) -> None:
    caplog.clear()
    status, answer = await h.raw(params, body, method=method, headers=headers)
    assert status == expected, answer
    assert not answer.startswith(b"<xml") and answer != b"success"  # no reply of any kind
    assert await row_counts() == NOTHING
    refusals = [r.getMessage() for r in caplog.records if r.name == "memberbot.http"]
    assert any(re.search(rf"\b{expected}\b", line) for line in refusals), refusals
    await assert_alive(h)


@pytest.fixture(autouse=True)
def _capture_http_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="memberbot.http")


# --- URL verification (GET) ------------------------------------------------------------------


def _url_check(at: int | None = None, **changes: str | None) -> dict[str, str]:
    ts = str(at or int(time.time()))
    params = {"signature": sha1_sign(TOKEN, ts, "n0nce"), "timestamp": ts, "nonce": "n0nce",
              "echostr": "7461386538447811042", **changes}
    return {k: v for k, v in params.items() if v is not None}


async def test_url_verification_echoes_echostr(harness):
    status, body = await harness.raw(_url_check(), b"", method="GET")
    assert (status, body) == (200, b"7461386538447811042")


def _other_token_url_check() -> dict[str, str]:
    params = _url_check()
    return {**params, "signature": sha1_sign("othertoken123", params["timestamp"], "n0nce")}


URL_CHECK_REFUSALS: dict[str, tuple[int, Callable[[], dict[str, str]]]] = {
    "wrong-signature": (403, lambda: _url_check(signature="0" * 40)),
    "other-token": (403, _other_token_url_check),
    "other-nonce": (403, lambda: _url_check(nonce="other")),  # signature no longer matches
    "no-signature": (403, lambda: _url_check(signature=None)),
    "no-timestamp": (403, lambda: _url_check(timestamp=None)),
    "no-nonce": (403, lambda: _url_check(nonce=None)),
    "non-ascii-signature": (403, lambda: _url_check(signature="签名")),  # must not crash
    "no-echostr": (400, lambda: _url_check(echostr=None)),
}


@pytest.mark.parametrize(("expected", "make"), list(URL_CHECK_REFUSALS.values()),
                         ids=list(URL_CHECK_REFUSALS))
async def test_url_verification_refusals(harness, caplog, expected, make):
    await assert_refused(harness, caplog, expected, make(), b"", method="GET")


@pytest.mark.parametrize("offset", [-SKEW_BAD, SKEW_BAD])
async def test_url_verification_with_stale_timestamp(harness, caplog, offset):
    params = _url_check(at=int(time.time()) + offset)
    await assert_refused(harness, caplog, 403, params, b"", method="GET")


# --- the three modes, with every shared sample ----------------------------------------------


def test_all_thirteen_samples_and_the_envelope_are_covered():
    assert len(MESSAGE_FIXTURES) == 13 and set(EXPECTED) == set(MESSAGE_FIXTURES)
    assert (FIXTURES / "wechat" / "encrypted_envelope.xml").exists()


@pytest.mark.parametrize("name", MESSAGE_FIXTURES)
@pytest.mark.parametrize("mode", MODES)
async def test_shared_samples_in_every_mode(harness_factory, mode, name):
    h = await harness_factory(mode=mode)
    xml = fixture_xml(name)
    status, body, signed = await send(h, xml)
    assert status == 200, body
    reply = open_reply(body, signed.params, mode)
    phrase = EXPECTED[name]
    if phrase is None:
        assert reply is None
    else:
        sample = xmltodict.parse(xml)["xml"]
        assert phrase in reply["Content"]
        assert reply["ToUserName"] == sample["FromUserName"]
        assert reply["FromUserName"] == sample["ToUserName"]
    assert await InboundMessage.all().count() == 1


EXTRA_SAMPLES = {  # what the shared samples do not show: wechatpy's other branches
    "subscribe-product": wire.event("o_x", "subscribe", "scanbarcode|EAN13|123"),
    "masssendjobfinish": wire.message_xml("o_x", "event", {"Event": "MASSSENDJOBFINISH"}),
    "unknown-event": wire.message_xml("o_x", "event", {"Event": "no_such_event"}),
    "device-event": wire.message_xml("o_x", "device_text", {"Content": "x"}),
    "unknown-type": wire.message_xml("o_x", "nonsense", {"Content": "x"}),
    "link": wire.message_xml("o_x", "link", {"Url": "https://example.com"}),
}


@pytest.mark.parametrize("xml", [fixture_xml(n) for n in MESSAGE_FIXTURES]
                         + list(EXTRA_SAMPLES.values()),
                         ids=MESSAGE_FIXTURES + list(EXTRA_SAMPLES))
@pytest.mark.parametrize("mode", MODES)
def test_one_parse_per_document_and_one_decryption_give_wechatpys_message(mode, xml,
                                                                          monkeypatch):
    channel = WeChatChannel(WeChatConfig(app_id=APP_ID, app_secret=APP_SECRET, token=TOKEN,
                                         encoding_aes_key=AES_KEY), 300)
    signed = wire.WeChatSimulator(channel._config, mode).sign(xml)
    parses, decryptions = [], []
    real_parse, real_decrypt = xmltodict.parse, channel._prp.cipher.decrypt
    monkeypatch.setattr(xmltodict, "parse", lambda *a, **k: parses.append(1) or real_parse(*a, **k))
    monkeypatch.setattr(channel._prp.cipher, "decrypt",
                        lambda raw: decryptions.append(1) or real_decrypt(raw))
    inbound, envelope = channel.open(signed.params, signed.body)
    monkeypatch.undo()
    # The envelope and the message each parsed once (the same document in plain mode).
    assert (len(parses), len(decryptions)) == ((1, 0) if mode == "plain" else (2, 1))
    assert envelope.encrypted is (mode != "plain")
    assert inbound == to_inbound(parse_message(xml))


@pytest.mark.parametrize("reply", [Text("积分：100 {not a field} ]]> <b>"), Image("media_1")])
def test_replies_are_wechatpys_xml_character_for_character(reply, monkeypatch):
    channel = WeChatChannel(WeChatConfig(app_id=APP_ID, app_secret=APP_SECRET, token=TOKEN,
                                         encoding_aes_key=AES_KEY), 300)
    signed = wire.WeChatSimulator(channel._config, "plain").sign(wire.text("o_]]>reply", "积分"))
    inbound, envelope = channel.open(signed.params, signed.body)
    monkeypatch.setattr(wechat_module.time, "time", lambda: 1_700_000_000.7)
    cdata = wechat_module._cdata_safe
    if isinstance(reply, Text):
        expected = TextReply(source=cdata(inbound.account), target=cdata(inbound.user),
                             content=cdata(reply.content), time=1_700_000_000)
    else:
        expected = ImageReply(source=cdata(inbound.account), target=cdata(inbound.user),
                              media_id=reply.media_id, time=1_700_000_000)
    assert channel.render(reply, inbound, envelope) == expected.render().encode()


@pytest.mark.parametrize("mode", ["compat", "aes"])
async def test_reply_is_encrypted_for_our_app_and_signed_with_our_token(harness_factory, mode):
    h = await harness_factory(mode=mode)
    status, body, signed = await send(h, fixture_xml("text.xml"))
    assert status == 200
    reply = open_reply(body, signed.params, mode)
    assert reply["MsgType"] == "text" and "还不是" in reply["Content"]
    envelope = xmltodict.parse(body)["xml"]
    args = (body.decode(), envelope["MsgSignature"], envelope["TimeStamp"], envelope["Nonce"])
    with pytest.raises(InvalidSignatureException):
        WeChatCrypto("othertoken123", AES_KEY, APP_ID).decrypt_message(*args)
    with pytest.raises(InvalidAppIdException):
        WeChatCrypto(TOKEN, AES_KEY, "wxOTHERAPPID").decrypt_message(*args)


async def test_plain_reply_is_plain_xml(harness_factory):
    h = await harness_factory(mode="plain")
    status, body, signed = await send(h, fixture_xml("text.xml"))
    assert status == 200 and body.startswith(b"<xml>") and b"<Encrypt>" not in body
    assert "还不是" in open_reply(body, signed.params, "plain")["Content"]


@pytest.mark.parametrize("mode", ["compat", "aes"])
async def test_envelope_sample_with_a_real_ciphertext_is_accepted(harness_factory, mode):
    h = await harness_factory(mode=mode)
    encrypt = aes_encrypt(fixture_xml("text.xml").encode())
    template = fixture_xml("encrypted_envelope.xml")
    start = template.index("<![CDATA[", template.index("<Encrypt>")) + len("<![CDATA[")
    envelope = template[:start] + encrypt + template[template.index("]]></Encrypt>"):]
    signed = safe_mode_request(encrypt, envelope=envelope)
    status, body = await h.raw(signed.params, signed.body)
    assert status == 200, body
    assert "还不是" in open_reply(body, signed.params, mode)["Content"]


@pytest.mark.parametrize("mode", MODES)
async def test_envelope_sample_as_is_is_refused(harness_factory, caplog, mode):
    # Its Encrypt is a description, not a ciphertext; in plain mode it is a message without sender.
    h = await harness_factory(mode=mode)
    template = fixture_xml("encrypted_envelope.xml")
    encrypt = xmltodict.parse(template)["xml"]["Encrypt"]
    if mode == "plain":
        signed = h.simulator.sign("<xml></xml>")
        signed = Signed(signed.params, template.encode())
    else:
        signed = safe_mode_request(encrypt, envelope=template)
    await assert_refused(h, caplog, 400, signed.params, signed.body)


async def test_compat_mode_acts_on_the_ciphertext_not_the_clear_copy(harness_factory):
    h = await harness_factory(mode="compat")
    signed = h.simulator.sign(wire.text("o_real_sender", "积分"))
    spoofed = signed.body.replace(b"o_real_sender", b"o_spoofed_one")
    status, body = await h.raw(signed.params, spoofed)
    assert status == 200
    assert open_reply(body, signed.params, "compat")["ToUserName"] == "o_real_sender"
    assert await Follower.filter(openid="o_spoofed_one").count() == 0


@pytest.mark.parametrize("content_type", [
    "text/xml", "text/xml; charset=utf-8", "application/xml", "text/plain", "application/json",
    "application/x-www-form-urlencoded", "application/octet-stream", "multipart/form-data",
])
async def test_content_type_is_ignored_and_the_body_judged(harness_factory, content_type):
    h = await harness_factory(mode="aes")
    signed = h.simulator.sign(wire.text("o_ctype_0001", "帮助"))
    status, body = await h.raw(signed.params, signed.body, headers={"Content-Type": content_type})
    assert status == 200, body
    assert open_reply(body, signed.params, "aes")["ToUserName"] == "o_ctype_0001"


# --- forged and stale requests: 403, nothing happens ----------------------------------------


def _set(**changes: str | None) -> Callable[[Signed], Signed]:
    def forge(signed: Signed) -> Signed:
        params = {**signed.params, **changes}
        return Signed({k: v for k, v in params.items() if v is not None}, signed.body)
    return forge


def _resigned_for(token: str) -> Callable[[Signed], Signed]:
    def forge(signed: Signed) -> Signed:
        p = signed.params
        return Signed({**p, "signature": sha1_sign(token, p["timestamp"], p["nonce"])}, signed.body)
    return forge


def _other_ciphertext(signed: Signed) -> Signed:
    """msg_signature of the original Encrypt, body carrying another (valid) ciphertext."""
    other = aes_encrypt(wire.text("o_forged_0002", "积分").encode())
    encrypt = xmltodict.parse(signed.body)["xml"]["Encrypt"]
    return Signed(signed.params, signed.body.replace(encrypt.encode(), other.encode()))


FORGERIES = [
    ("plain", "wrong-signature", _set(signature="0" * 40)),
    ("plain", "signature-of-other-token", _resigned_for("othertoken123")),
    ("plain", "signature-for-other-nonce", _set(nonce="a-different-nonce")),
    ("plain", "non-ascii-signature", _set(signature="签名")),
    ("plain", "no-signature", _set(signature=None)),
    ("plain", "no-timestamp", _set(timestamp=None)),
    ("plain", "no-nonce", _set(nonce=None)),
    ("plain", "empty-nonce", _set(nonce="")),
    ("plain", "non-numeric-timestamp", _set(timestamp="yesterday")),
    ("aes", "wrong-msg-signature", _set(msg_signature="0" * 40)),
    ("aes", "no-msg-signature", _set(msg_signature=None)),
    ("aes", "msg-signature-of-other-ciphertext", _other_ciphertext),
    ("aes", "wrong-signature", _set(signature="0" * 40)),
    ("aes", "no-signature", _set(signature=None)),
    ("aes", "no-timestamp", _set(timestamp=None)),
    ("aes", "no-nonce", _set(nonce=None)),
    ("compat", "wrong-msg-signature", _set(msg_signature="0" * 40)),
    ("compat", "wrong-signature", _set(signature="0" * 40)),
    ("compat", "msg-signature-of-other-ciphertext", _other_ciphertext),
]


@pytest.mark.parametrize(("mode", "forge"), [(m, f) for m, _, f in FORGERIES],
                         ids=[f"{m}-{name}" for m, name, _ in FORGERIES])
async def test_forged_requests_are_refused_without_trace(harness_factory, caplog, mode, forge):
    h = await harness_factory(mode=mode)
    forged = forge(h.simulator.sign(forged_message()))
    await assert_refused(h, caplog, 403, forged.params, forged.body)


@pytest.mark.parametrize("mode", ["plain", "aes"])
@pytest.mark.parametrize("offset", [-SKEW_BAD, SKEW_BAD, -3600, 86400])
async def test_stale_or_future_timestamp_is_refused(harness_factory, caplog, mode, offset):
    h = await harness_factory(mode=mode)
    signed = h.simulator.sign(forged_message(), timestamp=int(time.time()) + offset)
    await assert_refused(h, caplog, 403, signed.params, signed.body)


@pytest.mark.parametrize("offset", [-SKEW_OK, SKEW_OK])
async def test_timestamp_within_five_minutes_is_accepted(harness_factory, offset):
    h = await harness_factory(mode="aes")
    status, body, signed = await send(h, wire.text("o_skew_0001", "帮助"),
                                      timestamp=int(time.time()) + offset)
    assert status == 200 and open_reply(body, signed.params, "aes")["Content"]


# --- size limit: 413 -------------------------------------------------------------------------


def _padded(size: int) -> bytes:
    xml = wire.text("o_big_0001", "帮助").encode()
    return xml.replace(b"</xml>", b" " * (size - len(xml)) + b"</xml>")


async def test_body_of_exactly_64_kib_is_accepted(harness_factory):
    h = await harness_factory(mode="plain")
    signed = h.simulator.sign("<xml/>")
    body = _padded(LIMIT)
    assert len(body) == LIMIT
    status, answer = await h.raw(signed.params, body)
    assert status == 200 and "帮助" in open_reply(answer, signed.params, "plain")["Content"]


async def test_body_over_64_kib_with_content_length_is_413(harness_factory, caplog):
    h = await harness_factory(mode="plain")
    signed = h.simulator.sign("<xml/>")
    await assert_refused(h, caplog, 413, signed.params, _padded(LIMIT + 1))


async def test_body_over_64_kib_chunked_is_413(harness_factory, caplog):
    h = await harness_factory(mode="plain")
    signed = h.simulator.sign("<xml/>")
    body = _padded(LIMIT + 1)

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 8192):
            yield body[start:start + 8192]

    caplog.clear()
    async with h.session.post(h.url, params=signed.params, data=chunks()) as response:
        assert response.request_info.headers.get("Transfer-Encoding") == "chunked"
        assert "Content-Length" not in response.request_info.headers
        assert response.status == 413, await response.read()
    assert await row_counts() == NOTHING
    assert any(re.search(r"\b413\b", r.getMessage())
               for r in caplog.records if r.name == "memberbot.http")
    await assert_alive(h)


async def test_gzip_body_expanding_past_64_kib_is_413(harness_factory, caplog):
    h = await harness_factory(mode="plain")
    signed = h.simulator.sign("<xml/>")
    bomb = gzip.compress(_padded(4 * 1024 * 1024))
    assert len(bomb) < LIMIT
    await assert_refused(h, caplog, 413, signed.params, bomb,
                         headers={"Content-Encoding": "gzip"})


# --- malformed bodies: 400 -------------------------------------------------------------------

_TEXT = wire.text("o_bad_0001", "积分")

MALFORMED_PLAIN = {
    "not-xml": b"hello, world",
    "unclosed": b"<xml><FromUserName><![CDATA[o_bad_0001]]></FromUserName>",
    "two-documents": (_TEXT + _TEXT).encode(),
    "billion-laughs": BILLION_LAUGHS.encode(),
    "external-entity": EXTERNAL_ENTITY.encode(),
    "empty-doctype": ("<!DOCTYPE xml>" + _TEXT).encode(),
    "billion-laughs-utf16": BILLION_LAUGHS.replace('"1.0"', '"1.0" encoding="UTF-16"')
    .encode("utf-16"),
    "comment": _TEXT.replace("<MsgType>", "<!-- hi --><MsgType>").encode(),
    "empty": b"",
    "whitespace": b"  \r\n\t ",
    "invalid-utf8": _TEXT.replace("积分", "\udcff\udcfe").encode("utf-8", "surrogateescape"),
    "root-not-xml": _TEXT.replace("<xml>", "<root>").replace("</xml>", "</root>").encode(),
    "xml-with-text-only": b"<xml>just text</xml>",
    "self-closing-xml": b"<xml/>",
    "no-FromUserName": without("FromUserName", _TEXT).encode(),
    "no-MsgType": without("MsgType", _TEXT).encode(),
    "no-CreateTime": without("CreateTime", _TEXT).encode(),
    "empty-FromUserName": _TEXT.replace("o_bad_0001", "").encode(),
    "nested-FromUserName": _TEXT.replace("<![CDATA[o_bad_0001]]>", "<a>o</a>").encode(),
    "repeated-FromUserName": _TEXT.replace(
        "<CreateTime>", "<FromUserName>o_two</FromUserName><CreateTime>").encode(),
    "FromUserName-too-long": _TEXT.replace("o_bad_0001", "o" * 65).encode(),
    "non-numeric-CreateTime": wire.text("o_bad_0001", "积分", create_time="yesterday").encode(),
    # Pass int() but cannot be a date: wechatpy converts them lazily, after the checks.
    "CreateTime-out-of-range": wire.text("o_bad_0001", "积分", create_time=10**14).encode(),
    "non-numeric-MsgId": wire.text("o_bad_0001", "积分", msg_id="12ab").encode(),
    "non-numeric-template-MsgID": wire.message_xml(
        "o_bad_0001", "event",
        {"Event": "TEMPLATESENDJOBFINISH", "MsgID": "x1", "Status": "success"}).encode(),
    "ScanCodeInfo-not-a-structure": wire.message_xml(
        "o_bad_0001", "event",
        {"Event": "scancode_waitmsg", "EventKey": "STAFF_SCAN", "ScanCodeInfo": "qrcode"}).encode(),
}


@pytest.mark.parametrize("body", list(MALFORMED_PLAIN.values()), ids=list(MALFORMED_PLAIN))
async def test_malformed_plain_bodies_are_400(harness_factory, caplog, body):
    h = await harness_factory(mode="plain")
    signed = h.simulator.sign("<xml/>")  # valid query signature; the body is what is wrong
    await assert_refused(h, caplog, 400, signed.params, body)


def _ciphertext(xml: str = _TEXT) -> str:
    return aes_encrypt(xml.encode())


_GOOD = _ciphertext()
_GOOD_RAW = base64.b64decode(_GOOD)

MALFORMED_SAFE_MODE: dict[str, Callable[[], Signed]] = {
    "envelope-not-xml": lambda: safe_mode_request(_GOOD, envelope="Encrypt=" + _GOOD),
    "envelope-without-Encrypt": lambda: safe_mode_request(
        "", envelope="<xml><ToUserName>gh_x</ToUserName></xml>"),
    "envelope-with-doctype": lambda: safe_mode_request(
        _GOOD, envelope='<!DOCTYPE xml [<!ENTITY e "x">]><xml><Encrypt>' + _GOOD
        + "</Encrypt></xml>"),
    "empty-Encrypt": lambda: safe_mode_request(
        "", envelope="<xml><Encrypt><![CDATA[]]></Encrypt></xml>"),
    "other-app-id": lambda: safe_mode_request(aes_encrypt(_TEXT.encode(), app_id="wxOTHERAPPID")),
    "other-app-id-wechatpy": lambda: safe_mode_request(xmltodict.parse(
        WeChatCrypto(TOKEN, AES_KEY, "wxOTHERAPPID").encrypt_message(_TEXT, "n", "1")
    )["xml"]["Encrypt"]),
    "other-aes-key": lambda: safe_mode_request(aes_encrypt(_TEXT.encode(), key=os.urandom(32))),
    "truncated-by-a-block": lambda: safe_mode_request(
        base64.b64encode(_GOOD_RAW[:-16]).decode()),
    "truncated-mid-block": lambda: safe_mode_request(base64.b64encode(_GOOD_RAW[:-5]).decode()),
    "truncated-base64": lambda: safe_mode_request(_GOOD[:-3]),
    "only-one-block": lambda: safe_mode_request(base64.b64encode(_GOOD_RAW[:16]).decode()),
    "padding-byte-zero": lambda: safe_mode_request(
        aes_encrypt(_TEXT.encode(), padding=bytes)),
    "padding-byte-too-big": lambda: safe_mode_request(
        aes_encrypt(_TEXT.encode(), padding=lambda n: bytes([200]) * n)),
    "padding-not-pkcs7": lambda: safe_mode_request(
        aes_encrypt(_TEXT.encode(), padding=not_pkcs7)),
    "length-field-too-big": lambda: safe_mode_request(aes_encrypt(_TEXT.encode(), length=9999)),
    "length-field-too-small": lambda: safe_mode_request(aes_encrypt(_TEXT.encode(), length=10)),
    "non-base64": lambda: safe_mode_request("%%% this is not base64 %%%"),
    "base64-with-junk-characters": lambda: safe_mode_request(_GOOD[:20] + "!*$" + _GOOD[20:]),
    "decrypts-to-invalid-utf8": lambda: safe_mode_request(
        aes_encrypt(_TEXT.encode().replace("积分".encode(), b"\xff\xfe"))),
    "decrypts-to-billion-laughs": lambda: safe_mode_request(_ciphertext(BILLION_LAUGHS)),
    "decrypts-to-external-entity": lambda: safe_mode_request(_ciphertext(EXTERNAL_ENTITY)),
    "decrypts-to-other-root": lambda: safe_mode_request(
        _ciphertext(_TEXT.replace("<xml>", "<root>").replace("</xml>", "</root>"))),
    "decrypts-to-garbage": lambda: safe_mode_request(_ciphertext("not xml at all")),
    "decrypts-to-message-without-sender": lambda: safe_mode_request(
        _ciphertext(without("FromUserName", _TEXT))),
    "decrypts-to-non-numeric-CreateTime": lambda: safe_mode_request(
        _ciphertext(wire.text("o_bad_0001", "x", create_time="soon"))),
    "decrypts-to-bad-MsgId": lambda: safe_mode_request(
        _ciphertext(wire.text("o_bad_0001", "x", msg_id="NaN"))),
}


@pytest.mark.parametrize("make", list(MALFORMED_SAFE_MODE.values()), ids=list(MALFORMED_SAFE_MODE))
async def test_malformed_safe_mode_payloads_are_400(harness_factory, caplog, make):
    h = await harness_factory(mode="aes")
    signed = make()  # msg_signature is right, so the payload itself is what gets judged
    await assert_refused(h, caplog, 400, signed.params, signed.body)


async def test_worker_survives_a_barrage_of_bad_requests(harness_factory):
    h = await harness_factory(mode="aes")
    for make in MALFORMED_SAFE_MODE.values():
        signed = make()
        status, _ = await h.raw(signed.params, signed.body)
        assert status == 400
    for body in MALFORMED_PLAIN.values():
        signed = h.simulator.sign("<xml/>")
        status, _ = await h.raw({k: v for k, v in signed.params.items()
                                 if k not in ("encrypt_type", "msg_signature")}, body)
        assert status == 400
    assert await row_counts() == NOTHING
    await assert_alive(h)


# --- health and metrics ----------------------------------------------------------------------


async def test_healthz(harness):
    async with harness.session.get(harness.server.make_url("/healthz")) as response:
        assert response.status == 200
        assert (await response.json())["status"] == "ok"


async def _samples(h: Harness) -> dict[tuple[str, frozenset], float]:
    async with h.session.get(h.server.make_url("/metrics")) as response:
        assert response.status == 200
        text = await response.text()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


async def test_metrics_count_inbound_and_refusals(harness):
    def value(samples: dict, name: str, **labels: str) -> float:
        return samples.get((name, frozenset(labels.items())), 0.0)

    def total(samples: dict, name: str) -> float:
        return sum(v for (sample, _), v in samples.items() if sample == name)

    before = await _samples(harness)
    replied = {"channel": "wechat", "kind": "text", "outcome": "replied"}
    status, _, _ = await send(harness, wire.text("o_metrics_01", "帮助"))
    assert status == 200
    forged = _set(msg_signature="0" * 40)(harness.simulator.sign(forged_message()))
    assert (await harness.raw(forged.params, forged.body))[0] == 403
    for _ in range(2):
        signed = safe_mode_request("%%%")
        assert (await harness.raw(signed.params, signed.body))[0] == 400
    after = await _samples(harness)

    assert value(after, "memberbot_inbound_total", **replied) == \
        value(before, "memberbot_inbound_total", **replied) + 1
    # Refused requests never count as inbound.
    inbound = "memberbot_inbound_total"
    assert total(after, inbound) == total(before, inbound) + 1
    for code, count in (("403", 1), ("400", 2)):
        assert value(after, "memberbot_rejected_total", status=code) == \
            value(before, "memberbot_rejected_total", status=code) + count
