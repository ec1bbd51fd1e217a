"""A local stand-in for Aliyun's SMS API (dysmsapi, SendSms) that speaks the real wire format.

The official SDK (alibabacloud-dysmsapi20170525 4.x, tea-openapi 0.4) talks to it unchanged; point
``SmsConfig.endpoint`` at ``http://127.0.0.1:<port>``. What the SDK sends, and what is checked here:

* ``POST /?OutId=..&PhoneNumbers=..&SignName=..&TemplateCode=..&TemplateParam=..`` with an empty
  body (RPC style, parameters in the query string; form-encoded bodies are accepted too).
* Headers ``x-acs-action: SendSms``, ``x-acs-version: 2017-05-25``, ``x-acs-date``,
  ``x-acs-signature-nonce``, ``x-acs-content-sha256`` and
  ``Authorization: ACS3-HMAC-SHA256 Credential=<AccessKeyId>,SignedHeaders=..,Signature=..``.
  The signature is recomputed with the configured secret exactly as Aliyun does (V3 signing):
  canonical request (method, path, sorted and %-encoded query, the signed headers, hex SHA-256 of
  the body) → string to sign (``ACS3-HMAC-SHA256\\n`` + hex SHA-256 of the canonical request) →
  hex HMAC-SHA256. A wrong signature, unknown key, stale date or reused nonce is answered with the
  HTTP status and JSON body Aliyun uses (``SignatureDoesNotMatch`` 400,
  ``InvalidAccessKeyId.NotFound`` 404, ``InvalidTimeStamp.Expired`` 400, ``SignatureNonceUsed``
  400, ``IncompleteSignature`` 400).
* Business errors come back as HTTP 200 with an ``isv.*`` Code, as Aliyun does:
  ``isv.MOBILE_NUMBER_ILLEGAL`` (not a mainland mobile, ``1[3-9]`` + 9 digits, optionally
  ``+86``/``86``/``0086``; several may be comma-separated), ``isv.SMS_SIGNATURE_ILLEGAL``,
  ``isv.SMS_TEMPLATE_ILLEGAL``, ``isv.INVALID_JSON_PARAM`` (TemplateParam must be a JSON object of
  string values), and ``isv.BUSINESS_LIMIT_CONTROL`` (Aliyun's per-number flow control: one send
  per minute per phone number and template; ``flow_control=False`` turns it off so the bot's own
  limiter can be tested on its own).
* Success: ``{"Code": "OK", "Message": "OK", "BizId": "<digits>^0", "RequestId": "<uuid>"}``.

Reading what was "sent":

* From Python: ``outbox = app[SMS_OUTBOX]`` (an :class:`SmsOutbox`). ``outbox.messages`` is the
  list of accepted messages, one dict per phone number with ``seq`` (from 1), ``phone``,
  ``sign_name``, ``template_code``, ``params`` (the parsed TemplateParam), ``out_id``, ``biz_id``
  and ``received_at`` (ISO 8601, UTC). ``outbox.requests_received`` counts every request that
  reached the SendSms endpoint, failed ones included; ``outbox.outcomes`` lists ``(http_status,
  Code)`` per request, e.g. ``(400, "SignatureDoesNotMatch")``.
* Over HTTP: ``GET /sandbox/sms?after=N`` → ``{"messages": [entries with seq > N]}``; the terminal
  chat polls this to show "SMS sent".
* Every accepted message is also logged at INFO on ``memberbot.sandbox.sms`` as
  ``SMS to 138****8000 [SMS_xxx]: {"code": "123456"}``; in the sandbox the code is meant to be seen.

Test hooks: ``outbox.latency`` (seconds each SendSms waits before answering),
``outbox.fail_next(n, status=500)`` answers the next ``n`` SendSms requests with that
HTTP status (JSON error body), ``outbox.fail_next(code="isv.BUSINESS_LIMIT_CONTROL")`` with that
Aliyun Code at HTTP 200, ``outbox.fail_next(drop=True)`` closes the connection without answering;
``phone=`` keeps a failure for the next request to that number (concurrent sends reach the
stand-in in any order). Injected failures are served before any checking and are counted like
any other request.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import json
import logging
import random
import re
import time
import uuid
from collections import deque
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote

from aiohttp import web

from bot.infra.vault import mask_phone

log = logging.getLogger("memberbot.sandbox.sms")

ALGORITHM = "ACS3-HMAC-SHA256"
API_VERSION = "2017-05-25"
HOST_ID = "dysmsapi.aliyuncs.com"
# Aliyun rejects requests whose x-acs-date is further than 15 minutes from its clock.
MAX_CLOCK_SKEW = 15 * 60
FLOW_CONTROL_WINDOW = 60.0
MAX_NUMBERS = 1000

# Mainland mobiles, with the prefixes Aliyun's docs allow for domestic sends.
_MOBILE = re.compile(r"(?:\+86|0086|86|\+)?(1[3-9]\d{9})")
_AUTH = re.compile(
    r"^(?P<alg>\S+)\s+Credential=(?P<ak>[^,\s]+),\s*SignedHeaders=(?P<sh>[^,\s]+),"
    r"\s*Signature=(?P<sig>[0-9a-fA-F]+)$"
)

_DEFAULT_ERROR_CODES = {
    500: ("InternalError", "The request processing has failed due to some unknown error."),
    503: ("ServiceUnavailable", "The request has failed due to a temporary failure of the server."),
}


@dataclass
class _Failure:
    status: int | None
    code: str | None
    message: str | None
    drop: bool
    phone: str | None = None


class _Reject(Exception):
    """An answer that stops processing: HTTP status plus Aliyun's error body."""

    def __init__(self, status: int, code: str, message: str, *, auth: bool = False):
        super().__init__(code)
        self.status = status
        self.code = code
        self.message = message
        self.auth = auth


class SmsOutbox:
    """What the stand-in accepted, what it was asked, and the failures it should fake next."""

    def __init__(
        self,
        *,
        flow_control: bool = True,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.flow_control = flow_control
        self.messages: list[dict[str, Any]] = []
        self.requests_received = 0
        # Seconds every SendSms waits before answering: the network and Aliyun (benchmarks).
        self.latency = 0.0
        self.outcomes: list[tuple[int, str]] = []
        self._monotonic = monotonic
        self._failures: deque[_Failure] = deque()
        # (phone, template) → monotonic time of the last accepted send, for flow control.
        self._last_sent: dict[tuple[str, str], float] = {}
        # nonce → wall-clock time seen; pruned once older than the clock-skew window.
        self._nonces: dict[str, float] = {}

    def fail_next(
        self,
        n: int = 1,
        *,
        status: int | None = None,
        code: str | None = None,
        message: str | None = None,
        drop: bool = False,
        phone: str | None = None,
    ) -> None:
        """Make the next n SendSms requests (to that phone, if given) fail: HTTP status, Aliyun
        Code, or a dropped socket."""
        if not drop and status is None and code is None:
            raise ValueError("fail_next needs status, code or drop")
        for _ in range(n):
            self._failures.append(_Failure(status, code, message, drop, phone))

    def since(self, after: int = 0) -> list[dict[str, Any]]:
        """Accepted messages with seq > after (seq equals list position + 1)."""
        return [dict(m) for m in self.messages[max(after, 0) :]]

    def count(self, code: str) -> int:
        """How many requests were answered with this Code."""
        return sum(1 for _, c in self.outcomes if c == code)

    def reset_flow_control(self) -> None:
        self._last_sent.clear()

    # -- used by the handler -------------------------------------------------------------------

    def _next_failure(self, phones: str) -> _Failure | None:
        """The first injected failure meant for any number or for one of these (comma-joined)."""
        numbers = set(phones.split(","))
        for failure in self._failures:
            if failure.phone is None or failure.phone in numbers:
                self._failures.remove(failure)
                return failure
        return None

    def _use_nonce(self, nonce: str, now: float) -> bool:
        for old, seen in list(self._nonces.items()):
            if now - seen > MAX_CLOCK_SKEW:
                del self._nonces[old]
        if nonce in self._nonces:
            return False
        self._nonces[nonce] = now
        return True

    def _limited(self, phones: list[str], template: str) -> bool:
        if not self.flow_control:
            return False
        now = self._monotonic()
        return any(
            now - self._last_sent.get((p, template), -FLOW_CONTROL_WINDOW) < FLOW_CONTROL_WINDOW
            for p in phones
        )

    def _accept(self, phones: list[str], fields: dict[str, Any]) -> None:
        now = self._monotonic()
        received_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        for phone in phones:
            self._last_sent[(phone, fields["template_code"])] = now
            entry = {"seq": len(self.messages) + 1, "phone": phone, **fields}
            entry["received_at"] = received_at
            self.messages.append(entry)


# app[SMS_OUTBOX] is the SmsOutbox of an app made by create_sms_app.
SMS_OUTBOX = web.AppKey("sms_outbox", SmsOutbox)


def _request_id() -> str:
    return str(uuid.uuid4()).upper()


def _error_body(code: str, message: str, request_id: str, *, auth: bool) -> dict[str, str]:
    body = {"RequestId": request_id, "Code": code, "Message": message}
    if auth:
        # Aliyun's gateway errors carry these two as well.
        body["HostId"] = HOST_ID
        body["Recommend"] = (
            f"https://api.aliyun.com/troubleshoot?q={code}&product=Dysmsapi&requestId={request_id}"
        )
    return body


def canonical_request(
    method: str,
    path: str,
    query: dict[str, str],
    headers: dict[str, list[str]],
    signed_headers: list[str],
    payload_hash: str,
) -> str:
    """Aliyun V3 canonical request. headers maps lower-case names to all their values."""
    canonical_query = "&".join(
        f"{quote(k, safe='~')}={quote(query[k], safe='~')}" for k in sorted(query)
    )
    canonical_headers = "".join(
        f"{name}:{','.join(sorted(v.strip() for v in headers[name]))}\n" for name in signed_headers
    )
    return "\n".join(
        [
            method.upper(),
            quote(path or "/", safe="/~"),
            canonical_query,
            canonical_headers,
            ";".join(signed_headers),
            payload_hash,
        ]
    )


def string_to_sign(canonical: str) -> str:
    return f"{ALGORITHM}\n{hashlib.sha256(canonical.encode()).hexdigest()}"


def sign(secret: str, to_sign: str) -> str:
    return hmac.new(secret.encode(), to_sign.encode(), hashlib.sha256).hexdigest()


def _verify(
    request: web.Request, body: bytes, outbox: SmsOutbox, access_key_id: str, secret: str
) -> None:
    """Check the ACS3-HMAC-SHA256 Authorization header the way Aliyun does; raise _Reject."""
    auth = request.headers.get("Authorization", "")
    m = _AUTH.match(auth.strip())
    if not m:
        raise _Reject(400, "IncompleteSignature", "The request signature is incomplete.", auth=True)
    if m["alg"] != ALGORITHM:
        raise _Reject(
            400, "IncompleteSignature", f"Unsupported signature algorithm {m['alg']}.", auth=True
        )
    if m["ak"] != access_key_id:
        raise _Reject(
            404, "InvalidAccessKeyId.NotFound", "Specified access key is not found.", auth=True
        )

    signed = m["sh"].lower().split(";")
    present = {k.lower() for k in request.headers}
    # Aliyun insists that host and every x-acs-* header are covered by the signature.
    must_sign = {"host"} | {h for h in present if h.startswith("x-acs-")}
    if not must_sign <= set(signed) or signed != sorted(signed) or not set(signed) <= present:
        raise _Reject(
            400,
            "IncompleteSignature",
            "The request signature does not conform to Aliyun standards.",
            auth=True,
        )

    headers = {name: request.headers.getall(name) for name in signed}
    # The payload hash comes from the body actually received, so a tampered body or a lying
    # x-acs-content-sha256 header both end up as a signature mismatch.
    canonical = canonical_request(
        request.method,
        request.path,
        dict(request.query),
        headers,
        signed,
        hashlib.sha256(body).hexdigest(),
    )
    to_sign = string_to_sign(canonical)
    if not hmac.compare_digest(sign(secret, to_sign), m["sig"].lower()):
        raise _Reject(
            400,
            "SignatureDoesNotMatch",
            "Specified signature does not match our calculation. "
            f"server string to sign is:{to_sign}",
            auth=True,
        )

    now = time.time()
    try:
        sent = dt.datetime.strptime(request.headers.get("x-acs-date", ""), "%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        raise _Reject(
            400,
            "InvalidTimeStamp.Format",
            "Specified time stamp or date value is not well formatted.",
            auth=True,
        ) from None
    if abs(now - sent.replace(tzinfo=dt.UTC).timestamp()) > MAX_CLOCK_SKEW:
        raise _Reject(
            400,
            "InvalidTimeStamp.Expired",
            "Specified time stamp or date value is expired.",
            auth=True,
        )
    nonce = request.headers.get("x-acs-signature-nonce", "")
    if not nonce:
        raise _Reject(
            400, "MissingSignatureNonce", "SignatureNonce is mandatory for this action.", auth=True
        )
    if not outbox._use_nonce(nonce, now):
        raise _Reject(
            400, "SignatureNonceUsed", "Specified signature nonce was used already.", auth=True
        )


def _params(request: web.Request, body: bytes) -> dict[str, str]:
    params = dict(request.query)
    if body and request.content_type == "application/x-www-form-urlencoded":
        params.update(parse_qsl(body.decode(), keep_blank_values=True))
    return params


def _send_sms(
    params: dict[str, str],
    outbox: SmsOutbox,
    allowed_signs: frozenset[str] | None,
    allowed_templates: frozenset[str] | None,
) -> dict[str, str]:
    """Aliyun's business checks; returns the answer body (HTTP 200 either way)."""
    request_id = _request_id()

    def fail(code: str, message: str) -> dict[str, str]:
        return {"RequestId": request_id, "Code": code, "Message": message}

    raw_numbers = [p.strip() for p in params.get("PhoneNumbers", "").split(",") if p.strip()]
    if len(raw_numbers) > MAX_NUMBERS:
        return fail("isv.MOBILE_COUNT_OVER_LIMIT", "手机号码数量超过限制，最多支持1000条")
    matches = [_MOBILE.fullmatch(p) for p in raw_numbers]
    if not matches or not all(matches):
        return fail("isv.MOBILE_NUMBER_ILLEGAL", "非法手机号")
    phones = [m[1] for m in matches if m]

    sign_name = params.get("SignName", "")
    if not sign_name or (allowed_signs is not None and sign_name not in allowed_signs):
        return fail("isv.SMS_SIGNATURE_ILLEGAL", "该账号下找不到对应签名")
    template = params.get("TemplateCode", "")
    if not template or (allowed_templates is not None and template not in allowed_templates):
        return fail("isv.SMS_TEMPLATE_ILLEGAL", "该账号下找不到对应模板")

    template_params: Any = {}
    if params.get("TemplateParam"):
        try:
            template_params = json.loads(params["TemplateParam"])
        except ValueError:
            template_params = None
        # Aliyun only takes a flat JSON object of string values (numbers are refused too).
        if not isinstance(template_params, dict) or not all(
            isinstance(v, str) for v in template_params.values()
        ):
            return fail("isv.INVALID_JSON_PARAM", "JSON参数不合法，只接受字符串值")

    if outbox._limited(phones, template):
        return fail("isv.BUSINESS_LIMIT_CONTROL", "触发分钟级流控Permits:1")

    biz_id = f"{random.randrange(10**17, 10**18)}^0"
    outbox._accept(
        phones,
        {
            "sign_name": sign_name,
            "template_code": template,
            "params": template_params,
            "out_id": params.get("OutId", ""),
            "biz_id": biz_id,
        },
    )
    shown = json.dumps(template_params, ensure_ascii=False)
    for phone in phones:
        log.info("SMS to %s [%s]: %s", mask_phone(phone), template, shown)
    return {"RequestId": request_id, "Code": "OK", "Message": "OK", "BizId": biz_id}


def create_sms_app(
    access_key_id: str,
    access_key_secret: str,
    *,
    flow_control: bool = True,
    outbox: SmsOutbox | None = None,
    templates: Collection[str] | None = None,
    sign_names: Collection[str] | None = None,
) -> web.Application:
    """The stand-in app. The outbox is at app[SMS_OUTBOX].

    flow_control=False turns off Aliyun's one-per-minute limit; when an outbox is passed in, its
    own flow_control setting is used instead. (aiohttp's access log, if the runner keeps it on,
    prints the request URL with the full number and params; fine in the sandbox.)

    templates / sign_names, when given, are the only TemplateCode / SignName values "approved"
    on this fake account; others get isv.SMS_TEMPLATE_ILLEGAL / isv.SMS_SIGNATURE_ILLEGAL.
    """
    box = outbox if outbox is not None else SmsOutbox(flow_control=flow_control)
    app = web.Application()
    app[SMS_OUTBOX] = box
    allowed_templates = frozenset(templates) if templates is not None else None
    allowed_signs = frozenset(sign_names) if sign_names is not None else None

    async def rpc(request: web.Request) -> web.StreamResponse:
        box.requests_received += 1
        if box.latency:
            await asyncio.sleep(box.latency)
        body = await request.read()
        failure = box._next_failure(_params(request, body).get("PhoneNumbers", ""))
        if failure is not None:
            return await _fake_failure(request, box, failure)

        try:
            _verify(request, body, box, access_key_id, access_key_secret)
            params = _params(request, body)
            action = request.headers.get("x-acs-action") or params.get("Action", "")
            version = request.headers.get("x-acs-version") or params.get("Version", "")
            if action != "SendSms":
                raise _Reject(
                    404,
                    "InvalidAction.NotFound",
                    "Specified api is not found, please check your url and method.",
                )
            if version != API_VERSION:
                raise _Reject(400, "InvalidVersion", "Specified parameter Version is not valid.")
        except _Reject as rej:
            rid = _request_id()
            box.outcomes.append((rej.status, rej.code))
            log.warning("SendSms rejected: %s %s", rej.status, rej.code)
            return web.json_response(
                _error_body(rej.code, rej.message, rid, auth=rej.auth), status=rej.status
            )

        answer = _send_sms(params, box, allowed_signs, allowed_templates)
        box.outcomes.append((200, answer["Code"]))
        return web.json_response(answer)

    async def list_messages(request: web.Request) -> web.Response:
        try:
            after = int(request.query.get("after", "0"))
        except ValueError:
            raise web.HTTPBadRequest(text="after must be an integer") from None
        return web.json_response({"messages": box.since(after)}, dumps=_dumps)

    app.router.add_route("*", "/", rpc)
    app.router.add_get("/sandbox/sms", list_messages)
    return app


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False)


async def _fake_failure(
    request: web.Request, box: SmsOutbox, failure: _Failure
) -> web.StreamResponse:
    if failure.drop:
        box.outcomes.append((0, "dropped"))
        # Close the socket without a status line: the client sees a disconnect, as with a
        # connection reset mid-request.
        if request.transport is not None:
            request.transport.abort()
        raise web.HTTPInternalServerError()  # never reaches the client; ends the handler
    rid = _request_id()
    if failure.status is None:
        code = failure.code or "isv.SYSTEM_ERROR"
        box.outcomes.append((200, code))
        return web.json_response(
            {"RequestId": rid, "Code": code, "Message": failure.message or code}
        )
    default_code, default_message = _DEFAULT_ERROR_CODES.get(
        failure.status, ("InternalError", "Injected failure.")
    )
    code = failure.code or default_code
    box.outcomes.append((failure.status, code))
    return web.json_response(
        _error_body(code, failure.message or default_message, rid, auth=True),
        status=failure.status,
    )
