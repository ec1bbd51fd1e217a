"""SmsSender (the official Aliyun SDK) against the local dysmsapi stand-in, over real sockets."""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from alibabacloud_dysmsapi20170525 import models as sms_models
from alibabacloud_dysmsapi20170525.client import Client
from alibabacloud_tea_openapi import utils_models as openapi_models
from alibabacloud_tea_openapi.utils import Utils
from darabonba.policy.retry import RetryOptions
from darabonba.request import DaraRequest

from bot.config import SmsConfig
from bot.notifications.sms import SmsResult, SmsSender, member_message_for, split_endpoint
from bot.sandbox.sms_server import SMS_OUTBOX, SmsOutbox, create_sms_app

AK = "LTAI5tSandboxKey"
SECRET = "sandbox-secret-不要外传"
PHONE = "13800138000"
SIGN = "示例门店"


async def _serve(app: web.Application) -> TestServer:
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


@dataclass
class Sandbox:
    app: web.Application
    outbox: SmsOutbox
    endpoint: str  # http://127.0.0.1:<port>


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    app = create_sms_app(AK, SECRET)
    server = await _serve(app)
    yield Sandbox(app, app[SMS_OUTBOX], f"http://127.0.0.1:{server.port}")
    await server.close()


@pytest.fixture
def outbox(sandbox: Sandbox) -> SmsOutbox:
    return sandbox.outbox


def _config(endpoint: str, **overrides: str) -> SmsConfig:
    fields = {
        "access_key_id": AK,
        "access_key_secret": SECRET,
        "sign_name": SIGN,
        "endpoint": endpoint,
        "template_verify": "SMS_100001",
        "template_welcome": "SMS_100002",
    }
    fields.update(overrides)
    return SmsConfig(**fields)


@pytest.fixture
async def sender(sandbox: Sandbox) -> AsyncIterator[SmsSender]:
    s = SmsSender(_config(sandbox.endpoint))
    yield s
    await s.close()


async def test_successful_send_is_recorded_with_exact_params(
    sender: SmsSender, outbox: SmsOutbox
) -> None:
    params = {"code": "123456", "shop": "示例门店 & 咖啡+"}
    result = await sender.send(PHONE, "SMS_100001", params, out_id="delivery-42")

    assert result.ok and result.code == "OK"
    assert result.biz_id.endswith("^0") and result.biz_id[:-2].isdigit()
    assert result.request_id
    assert outbox.requests_received == 1
    [msg] = outbox.messages
    assert msg["seq"] == 1
    assert msg["phone"] == PHONE
    assert msg["sign_name"] == SIGN
    assert msg["template_code"] == "SMS_100001"
    assert msg["params"] == params
    assert msg["out_id"] == "delivery-42"
    assert msg["biz_id"] == result.biz_id
    assert msg["received_at"]


async def test_wrong_secret_is_rejected_by_signature_check(
    sandbox: Sandbox, outbox: SmsOutbox
) -> None:
    bad = SmsSender(_config(sandbox.endpoint, access_key_secret="not-the-secret"))
    result = await bad.send(PHONE, "SMS_100001", {"code": "1"}, out_id="d1")

    assert result == SmsResult(
        ok=False, code="SignatureDoesNotMatch", message=result.message, request_id=result.request_id
    )
    assert outbox.outcomes == [(400, "SignatureDoesNotMatch")]
    assert outbox.messages == []


async def test_unknown_access_key(sandbox: Sandbox, outbox: SmsOutbox) -> None:
    other = SmsSender(_config(sandbox.endpoint, access_key_id="LTAI-nobody"))
    result = await other.send(PHONE, "SMS_100001", {"code": "1"}, out_id="d1")
    assert not result.ok and result.code == "InvalidAccessKeyId.NotFound"
    assert outbox.outcomes == [(404, "InvalidAccessKeyId.NotFound")]


async def test_illegal_number(sender: SmsSender, outbox: SmsOutbox) -> None:
    for phone in ("12800138000", "1380013800", "+1 555 0100", ""):
        result = await sender.send(phone, "SMS_100001", {"code": "1"}, out_id="d1")
        assert not result.ok and result.code == "isv.MOBILE_NUMBER_ILLEGAL", phone
    assert outbox.messages == []


async def test_flow_control_one_per_minute_per_number_and_template(
    sender: SmsSender, outbox: SmsOutbox
) -> None:
    first = await sender.send(PHONE, "SMS_100001", {"code": "111111"}, out_id="d1")
    second = await sender.send(PHONE, "SMS_100001", {"code": "222222"}, out_id="d2")
    other_template = await sender.send(PHONE, "SMS_100002", {"name": "王"}, out_id="d3")
    other_phone = await sender.send("13900139000", "SMS_100001", {"code": "3"}, out_id="d4")

    assert first.ok
    assert not second.ok and second.code == "isv.BUSINESS_LIMIT_CONTROL"
    assert member_message_for(second.code) == "sms_rate_limited.j2"
    assert other_template.ok and other_phone.ok
    assert [m["out_id"] for m in outbox.messages] == ["d1", "d3", "d4"]


async def test_flow_control_can_be_disabled() -> None:
    app = create_sms_app(AK, SECRET, flow_control=False)
    server = await _serve(app)
    try:
        sender = SmsSender(_config(f"http://127.0.0.1:{server.port}"))
        for i in range(3):
            assert (await sender.send(PHONE, "SMS_100001", {"code": str(i)}, f"d{i}")).ok
        assert len(app[SMS_OUTBOX].messages) == 3
    finally:
        await server.close()


async def test_server_500_is_one_request_and_no_retry(sender: SmsSender, outbox: SmsOutbox) -> None:
    outbox.fail_next(status=500)
    result = await sender.send(PHONE, "SMS_100001", {"code": "1"}, out_id="d1")

    assert not result.ok and result.code == "InternalError"
    assert outbox.requests_received == 1
    assert outbox.messages == []


async def test_dropped_connection_is_one_request_and_network_error(
    sender: SmsSender, outbox: SmsOutbox
) -> None:
    outbox.fail_next(drop=True)
    result = await sender.send(PHONE, "SMS_100001", {"code": "1"}, out_id="d1")

    assert not result.ok and result.code == "network_error"
    assert outbox.requests_received == 1


async def test_the_harness_would_see_an_sdk_retry(sandbox: Sandbox, outbox: SmsOutbox) -> None:
    """Control for the two tests above: an SDK configured to retry does reach the server 3 times."""
    retrying = Client(
        openapi_models.Config(
            access_key_id=AK,
            access_key_secret=SECRET,
            protocol="http",
            endpoint=split_endpoint(sandbox.endpoint)[1],
            retry_options=RetryOptions(
                {
                    "retryable": True,
                    "retryCondition": [
                        {
                            "maxAttempts": 3,
                            "exception": ["ServerException"],
                            "backoff": {"policy": "Fixed", "period": 0},
                        }
                    ],
                }
            ),
        )
    )
    outbox.fail_next(3, status=500)
    request = sms_models.SendSmsRequest(
        phone_numbers=PHONE, sign_name=SIGN, template_code="SMS_100001", template_param="{}"
    )
    with pytest.raises(Exception, match="InternalError"):
        await retrying.send_sms_async(request)
    assert outbox.requests_received == 3


async def test_connection_refused_is_network_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    sender = SmsSender(_config(f"http://127.0.0.1:{port}"))
    result = await sender.send(PHONE, "SMS_100001", {"code": "1"}, out_id="d1")
    assert not result.ok and result.code == "network_error"
    assert member_message_for(result.code) == "sms_failed.j2"


async def test_injected_business_code(sender: SmsSender, outbox: SmsOutbox) -> None:
    outbox.fail_next(code="isv.DAY_LIMIT_CONTROL")
    result = await sender.send(PHONE, "SMS_100001", {"code": "1"}, out_id="d1")
    assert not result.ok and result.code == "isv.DAY_LIMIT_CONTROL"
    # Only the next request fails.
    assert (await sender.send(PHONE, "SMS_100001", {"code": "1"}, out_id="d2")).ok
    assert outbox.requests_received == 2


async def test_other_business_errors(sandbox: Sandbox, sender: SmsSender) -> None:
    # Aliyun wants string values in TemplateParam; a number is refused.
    numeric = await sender.send(PHONE, "SMS_100001", {"code": 123456}, out_id="d1")  # type: ignore[dict-item]
    assert numeric.code == "isv.INVALID_JSON_PARAM"
    unsigned = SmsSender(_config(sandbox.endpoint, sign_name=""))
    assert (await unsigned.send(PHONE, "SMS_1", {}, "d2")).code == "isv.SMS_SIGNATURE_ILLEGAL"
    assert (await sender.send(PHONE, "", {}, "d3")).code == "isv.SMS_TEMPLATE_ILLEGAL"


async def test_missing_credentials_fail_without_a_request(
    sandbox: Sandbox, outbox: SmsOutbox
) -> None:
    unconfigured = SmsSender(_config(sandbox.endpoint, access_key_id="", access_key_secret=""))
    result = await unconfigured.send(PHONE, "SMS_100001", {"code": "1"}, out_id="d1")
    assert not result.ok and result.code == "InvalidCredentials"
    assert outbox.requests_received == 0


async def test_member_message_for() -> None:
    assert member_message_for("isv.BUSINESS_LIMIT_CONTROL") == "sms_rate_limited.j2"
    assert member_message_for("isv.DAY_LIMIT_CONTROL") == "sms_rate_limited.j2"
    assert member_message_for("isv.MONTH_LIMIT_CONTROL") == "sms_rate_limited.j2"
    assert member_message_for("isv.MOBILE_NUMBER_ILLEGAL") == "sms_bad_number.j2"
    for code in ("network_error", "SignatureDoesNotMatch", "InternalError", "OK", ""):
        assert member_message_for(code) == "sms_failed.j2"


async def test_split_endpoint() -> None:
    assert split_endpoint("dysmsapi.aliyuncs.com") == ("https", "dysmsapi.aliyuncs.com")
    assert split_endpoint("") == ("https", "dysmsapi.aliyuncs.com")
    assert split_endpoint("http://127.0.0.1:9001") == ("http", "127.0.0.1:9001")
    assert split_endpoint("https://sms.example.com/") == ("https", "sms.example.com")
    with pytest.raises(ValueError):
        split_endpoint("http://127.0.0.1:9001/prefix")
    with pytest.raises(ValueError):
        split_endpoint("ftp://example.com")


async def test_logs_show_code_in_sandbox_but_never_full_number(
    sender: SmsSender, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    await sender.send(PHONE, "SMS_100001", {"code": "123456"}, out_id="d1")
    await sender.send(PHONE, "SMS_100001", {"code": "654321"}, out_id="d2")  # flow-controlled

    sandbox = [r.getMessage() for r in caplog.records if r.name == "memberbot.sandbox.sms"]
    assert 'SMS to 138****8000 [SMS_100001]: {"code": "123456"}' in sandbox
    ours = [r.getMessage() for r in caplog.records if r.name == "memberbot.sms"]
    assert len(ours) == 2
    assert all(PHONE not in line and "138****8000" in line for line in ours)


async def test_outbox_http_listing(sandbox: Sandbox, sender: SmsSender) -> None:
    for i, phone in enumerate(("13800138000", "13900139000", "15000150000"), start=1):
        assert (await sender.send(phone, "SMS_100001", {"code": f"{i}" * 6}, f"d{i}")).ok
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{sandbox.endpoint}/sandbox/sms?after=1") as resp,
    ):
        assert resp.status == 200
        data = await resp.json()
    assert [m["seq"] for m in data["messages"]] == [2, 3]
    assert data["messages"][0]["phone"] == "13900139000"
    assert data["messages"][1]["params"] == {"code": "333333"}
    assert set(data["messages"][0]) >= {
        "seq", "phone", "sign_name", "template_code", "params", "out_id", "biz_id", "received_at"
    }  # fmt: skip


def _signed_request(endpoint: str, query: dict[str, str], secret: str = SECRET) -> DaraRequest:
    """Sign like the SDK does, with the SDK's own signer (independent of the stand-in's code)."""
    req = DaraRequest()
    req.method = "POST"
    req.pathname = "/"
    req.query = dict(query)
    req.headers = {
        "host": endpoint,
        "x-acs-version": "2017-05-25",
        "x-acs-action": "SendSms",
        "x-acs-date": Utils.get_timestamp(),
        "x-acs-signature-nonce": Utils.get_nonce(),
        "accept": "application/json",
    }
    payload = Utils.hash(b"", "ACS3-HMAC-SHA256").hex()
    req.headers["x-acs-content-sha256"] = payload
    req.headers["Authorization"] = Utils.get_authorization(
        req, "ACS3-HMAC-SHA256", payload, AK, secret
    )
    return req


async def test_tampered_and_replayed_requests_are_refused(
    sandbox: Sandbox, outbox: SmsOutbox
) -> None:
    host = split_endpoint(sandbox.endpoint)[1]
    query = {
        "PhoneNumbers": PHONE,
        "SignName": SIGN,
        "TemplateCode": "SMS_100001",
        "TemplateParam": json.dumps({"code": "1 2+3"}, ensure_ascii=False),
        "OutId": "d1",
    }
    signed = _signed_request(host, query)
    url = f"{sandbox.endpoint}/"

    async with aiohttp.ClientSession() as http:

        async def post(q: dict[str, str]) -> dict[str, str]:
            async with http.post(url, params=q, headers=signed.headers) as resp:
                return await resp.json()

        tampered = await post({**query, "PhoneNumbers": "13900139000"})
        genuine = await post(query)
        replayed = await post(query)

    assert tampered["Code"] == "SignatureDoesNotMatch"
    assert genuine["Code"] == "OK"
    assert replayed["Code"] == "SignatureNonceUsed"
    assert [m["params"] for m in outbox.messages] == [{"code": "1 2+3"}]
