"""Aliyun's SMS pushes: member replies (POST /sms/uplink) and delivery receipts (POST /sms/report).

Aliyun does not sign its pushes, so the only gate is the optional ?token=<sms.push_token>; what it
pushes twice must be recorded once, and anything malformed is refused whole (400 / 413) with
nothing recorded.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from typing import Any

import pytest

from bot.models import Delivery, InboundMessage
from bot.sandbox import wechat_client as wire
from tests.support import FIXTURES, Harness, make_config

ACK = {"code": 0, "msg": "成功"}
UPLINK = json.loads((FIXTURES / "aliyun" / "sms_up.json").read_text(encoding="utf-8"))
REPORT = json.loads((FIXTURES / "aliyun" / "sms_report.json").read_text(encoding="utf-8"))
PHONE = UPLINK[0]["phone_number"]
SEQUENCE = UPLINK[0]["sequence_id"]


@pytest.fixture(autouse=True)
def _capture_http_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="memberbot.http")


async def push(h: Harness, path: str, payload: Any, *, params: dict[str, str] | None = None,
               raw: bytes | None = None) -> tuple[int, bytes]:
    body = raw if raw is not None else json.dumps(payload, ensure_ascii=False).encode()
    async with h.session.post(h.server.make_url(path), params=params or {}, data=body,
                              headers={"Content-Type": "application/json"}) as response:
        return response.status, await response.read()


def uplink(sequence: int | str = SEQUENCE, phone: str = PHONE, **changes: Any) -> dict:
    return {**UPLINK[0], "sequence_id": sequence, "phone_number": phone, **changes}


async def sms_keys() -> list[str]:
    return sorted(await InboundMessage.filter(dedup_key__startswith="sms:")
                  .values_list("dedup_key", flat=True))


def refusal_logged(caplog: pytest.LogCaptureFixture, path: str, status: int) -> bool:
    return any(path in r.getMessage() and re.search(rf"\b{status}\b", r.getMessage())
               for r in caplog.records if r.name == "memberbot.http")


# --- uplink ----------------------------------------------------------------------------------


async def test_uplink_fixture_is_acknowledged_and_recorded(harness):
    status, body = await push(harness, "/sms/uplink", UPLINK)
    assert status == 200 and json.loads(body) == ACK
    row = await InboundMessage.get(dedup_key=f"sms:{PHONE}:{SEQUENCE}")
    assert (row.user, row.kind) == (PHONE, "text")
    assert await InboundMessage.all().count() == 1


async def test_same_uplink_twice_is_recorded_once(harness):
    for _ in range(2):
        assert await push(harness, "/sms/uplink", UPLINK) == (200, json.dumps(ACK).encode())
    # Aliyun's retry may spell the number differently; the same message is still the same.
    assert (await push(harness, "/sms/uplink", [uplink(phone="+86 " + PHONE)]))[0] == 200
    # Twice inside one push, and with the sequence as a string.
    assert (await push(harness, "/sms/uplink", [uplink(), uplink(str(SEQUENCE))]))[0] == 200
    assert await sms_keys() == [f"sms:{PHONE}:{SEQUENCE}"]


async def test_different_sequence_ids_are_different_messages(harness):
    status, _ = await push(harness, "/sms/uplink", [uplink(1), uplink(2), uplink(1, "13900139000")])
    assert status == 200
    assert await sms_keys() == [f"sms:{PHONE}:1", f"sms:{PHONE}:2", "sms:13900139000:1"]


async def test_empty_array_is_acknowledged(harness):
    assert (await push(harness, "/sms/uplink", []))[0] == 200
    assert await InboundMessage.all().count() == 0


_NO_PHONE = {k: v for k, v in UPLINK[0].items() if k != "phone_number"}
_NO_SEQUENCE = {k: v for k, v in UPLINK[0].items() if k != "sequence_id"}
BAD_UPLINKS: dict[str, bytes] = {
    "malformed-json": b'[{"phone_number": "13800138000", ',
    "not-json": b"phone_number=13800138000&sequence_id=1",
    "empty-body": b"",
    "invalid-utf8": b'[{"phone_number": "\xff\xfe"}]',
    "object-not-array": json.dumps(UPLINK[0]).encode(),
    "string-not-array": b'"hello"',
    "array-of-strings": b'["13800138000"]',
    "array-of-arrays": b"[[1, 2]]",
    "no-phone_number": json.dumps([_NO_PHONE]).encode(),
    "no-sequence_id": json.dumps([_NO_SEQUENCE]).encode(),
    "null-sequence_id": json.dumps([uplink(None)]).encode(),
    "empty-sequence_id": json.dumps([uplink("")]).encode(),
    "object-sequence_id": json.dumps([uplink({"id": 1})]).encode(),
    # dedup_key is varchar(160): PostgreSQL would fail on it, SQLite would store it silently.
    "overlong-sequence_id": json.dumps([uplink("9" * 200)]).encode(),
    "not-a-phone-number": json.dumps([uplink(phone="12345")]).encode(),
    "no-content": json.dumps([{k: v for k, v in uplink().items() if k != "content"}]).encode(),
    "good-item-then-bad-item": json.dumps([uplink(7), _NO_SEQUENCE]).encode(),
}


@pytest.mark.parametrize("body", list(BAD_UPLINKS.values()), ids=list(BAD_UPLINKS))
async def test_malformed_uplink_is_400_and_nothing_recorded(harness, caplog, body):
    status, answer = await push(harness, "/sms/uplink", None, raw=body)
    assert status == 400, answer
    assert await InboundMessage.all().count() == 0
    assert refusal_logged(caplog, "/sms/uplink", 400)
    assert (await push(harness, "/sms/uplink", UPLINK))[0] == 200  # still serving


async def test_one_hundred_items_are_fine_one_more_is_413(harness, caplog):
    status, answer = await push(harness, "/sms/uplink", [uplink(i) for i in range(101)])
    assert status == 413, answer
    assert await InboundMessage.all().count() == 0
    assert refusal_logged(caplog, "/sms/uplink", 413)
    status, _ = await push(harness, "/sms/uplink", [uplink(i) for i in range(100)])
    assert status == 200
    assert len(await sms_keys()) == 100


async def test_uplink_body_over_64_kib_is_413(harness):
    item = uplink(content="退" * 400)
    payload = [item] * 60  # under 100 items, over 64 KiB
    assert len(json.dumps(payload, ensure_ascii=False).encode()) > 64 * 1024
    assert (await push(harness, "/sms/uplink", payload))[0] == 413
    assert await InboundMessage.all().count() == 0


# --- push token ------------------------------------------------------------------------------


@pytest.fixture
async def guarded(harness_factory, db_url, stand_ins) -> Harness:
    sms = dataclasses.replace(make_config(db_url, stand_ins).sms, push_token="s3cret")
    return await harness_factory(sms=sms)


@pytest.mark.parametrize("path", ["/sms/uplink", "/sms/report"])
@pytest.mark.parametrize("params", [{}, {"token": ""}, {"token": "wrong"}, {"token": "S3CRET"},
                                    {"token": "s3cret-and-more"}, {"token": "密码"},
                                    {"tok": "s3cret"}],
                         ids=["none", "empty", "wrong", "case", "longer", "non-ascii", "misnamed"])
async def test_push_without_the_token_is_403(guarded, caplog, path, params):
    payload = UPLINK if path == "/sms/uplink" else REPORT
    status, _ = await push(guarded, path, payload, params=params)
    assert status == 403
    assert await InboundMessage.all().count() == 0
    assert refusal_logged(caplog, path, 403)


async def test_push_with_the_token_is_accepted(guarded):
    assert (await push(guarded, "/sms/uplink", UPLINK, params={"token": "s3cret"}))[0] == 200
    assert (await push(guarded, "/sms/report", REPORT, params={"token": "s3cret"}))[0] == 200
    assert await sms_keys() == [f"sms:{PHONE}:{SEQUENCE}"]


async def test_token_is_checked_before_the_body(guarded):
    # A bad body without the token is a 403, not a 400: strangers learn nothing about parsing.
    assert (await push(guarded, "/sms/uplink", None, raw=b"{nonsense"))[0] == 403


async def test_without_push_token_configured_pushes_need_no_token(harness):
    assert harness.config.sms.push_token == ""
    assert (await push(harness, "/sms/uplink", UPLINK))[0] == 200


# --- delivery receipts -----------------------------------------------------------------------


async def sms_delivery(key: str, channel: str = "sms") -> Delivery:
    return await Delivery.create(key=key, channel=channel, purpose="welcome", payload={},
                                 status="sent")


def receipt(out_id: str, success: bool, err_code: str = "DELIVERED") -> dict:
    return {**REPORT[0], "out_id": out_id, "success": success, "err_code": err_code}


async def test_failure_receipt_marks_the_delivery_failed(harness):
    delivery = await sms_delivery("sms:fail")
    status, body = await push(harness, "/sms/report",
                              [receipt(str(delivery.id), False, "MOBILE_NOT_ON_SERVICE")])
    assert status == 200 and json.loads(body) == ACK
    await delivery.refresh_from_db()
    assert (delivery.status, delivery.error) == ("failed", "MOBILE_NOT_ON_SERVICE")


async def test_success_receipt_leaves_the_delivery_sent(harness):
    delivery = await sms_delivery("sms:ok")
    assert (await push(harness, "/sms/report", [receipt(str(delivery.id), True)]))[0] == 200
    await delivery.refresh_from_db()
    assert (delivery.status, delivery.error) == ("sent", None)


async def test_receipt_for_a_real_send_uses_the_out_id_aliyun_was_given(harness):
    # The bot sends a verification code; Aliyun later reports that it did not arrive.
    await harness.post(wire.event("o_sms_report", "subscribe", "qrscene_store:S001"))
    await harness.say("o_sms_report", "同意")
    await harness.say("o_sms_report", "13800138009")
    sent = [m for m in harness.stand_ins.sms.messages if m["phone"] == "13800138009"]
    assert sent and sent[-1]["out_id"]
    out_id = sent[-1]["out_id"]
    assert (await Delivery.get(id=int(out_id))).status == "sent"
    report = [receipt(out_id, False, "MOBILE_ACCOUNT_ABNORMAL")]
    assert (await push(harness, "/sms/report", report))[0] == 200
    delivery = await Delivery.get(id=int(out_id))
    assert (delivery.status, delivery.error) == ("failed", "MOBILE_ACCOUNT_ABNORMAL")


@pytest.mark.parametrize("out_id", [
    "delivery-42",  # the fixture's own value: not one of our ids
    "987654321", "", "-1", " 1", "1.0",
    "²",  # str.isdigit() says yes, int() says no
    "9" * 30,  # digits, but beyond a 64-bit id
    "1" * 5000,  # beyond what int() accepts from a string
], ids=["fixture", "unknown", "empty", "negative", "space", "decimal", "superscript",
        "huge", "enormous"])
async def test_receipt_for_an_unknown_out_id_is_ignored(harness, out_id):
    delivery = await sms_delivery("sms:bystander")
    status, body = await push(harness, "/sms/report", [receipt(out_id, False, "X")])
    assert status == 200, body
    assert json.loads(body) == ACK
    await delivery.refresh_from_db()
    assert delivery.status == "sent"


async def test_fixture_report_is_acknowledged(harness):
    status, body = await push(harness, "/sms/report", REPORT)
    assert status == 200 and json.loads(body) == ACK


async def test_receipt_does_not_touch_wechat_deliveries(harness):
    delivery = await sms_delivery("wechat:cs", channel="wechat_cs")
    assert (await push(harness, "/sms/report", [receipt(str(delivery.id), False, "X")]))[0] == 200
    await delivery.refresh_from_db()
    assert (delivery.status, delivery.error) == ("sent", None)


@pytest.mark.parametrize(("body", "expected"), [
    (b"not json", 400), (b'{"out_id": "1"}', 400), (b'["1"]', 400),
    (json.dumps([receipt("1", False)] * 101).encode(), 413),
], ids=["not-json", "object", "array-of-strings", "too-many-items"])
async def test_malformed_report_is_refused_and_changes_nothing(harness, caplog, body, expected):
    delivery = await sms_delivery("sms:untouched")
    body = body.replace(b'"1"', f'"{delivery.id}"'.encode())
    status, _ = await push(harness, "/sms/report", None, raw=body)
    assert status == expected
    assert refusal_logged(caplog, "/sms/report", expected)
    await delivery.refresh_from_db()
    assert delivery.status == "sent"
