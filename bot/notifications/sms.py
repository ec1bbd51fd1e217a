"""Sending SMS through Aliyun (dysmsapi SendSms) with the official SDK, async only.

Every send makes exactly one HTTP request. Aliyun's SendSms is not idempotent: a retry after a
timeout or a 5xx can deliver the same code twice and burns the member's flow-control quota, so
the SDK's own retry loop is switched off and any retrying is left to the caller, who knows
whether a second SMS is acceptable. (In tea-openapi 0.4 / darabonba-core 1.0 the retry loop is
driven only by ``Config.retry_options``; the old ``RuntimeOptions.autoretry``/``max_attempts`` are
no longer read, but are set too in case an SDK update reads them again. The SDK's retry backoff is
also a blocking ``time.sleep``, one more reason to keep it off.)

``send`` never raises for Aliyun answers or network trouble; it returns an :class:`SmsResult`.
``code`` is Aliyun's Code ("OK", "isv.BUSINESS_LIMIT_CONTROL", "SignatureDoesNotMatch", ...),
``"http_<status>"`` for an HTTP error without an Aliyun Code, or ``"network_error"`` when no usable
answer came back (refused, timed out, dropped, unreadable body): then the SMS may or may not
have gone out.

``SmsConfig.endpoint`` is a bare host (``dysmsapi.aliyuncs.com``, HTTPS) or a URL such as
``http://127.0.0.1:9001`` for the sandbox stand-in (bot.sandbox.sms_server). The SDK builds the
URL from protocol + ``host`` header, so the URL is split into both. Note the SDK reads
HTTP(S)_PROXY from the environment and ignores NO_PROXY, so unset them for a local endpoint.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from alibabacloud_dysmsapi20170525 import models as sms_models
from alibabacloud_dysmsapi20170525.client import Client
from alibabacloud_tea_openapi import utils_models as openapi_models
from darabonba.exceptions import ResponseException
from darabonba.policy.retry import RetryOptions
from darabonba.runtime import RuntimeOptions
from Tea.exceptions import TeaException, UnretryableException

from bot.infra.vault import mask_phone

if TYPE_CHECKING:
    from bot.config import SmsConfig

log = logging.getLogger("memberbot.sms")

DEFAULT_ENDPOINT = "dysmsapi.aliyuncs.com"
# Milliseconds, as the SDK wants them. A read timeout is an unknown outcome (Aliyun may have sent
# the SMS), so it is generous; connecting either works quickly or not at all.
CONNECT_TIMEOUT_MS = 5_000
READ_TIMEOUT_MS = 10_000

NETWORK_ERROR = "network_error"

# Aliyun codes the member should hear about specifically; everything else is "SMS failed".
_MEMBER_TEMPLATES = {
    "isv.BUSINESS_LIMIT_CONTROL": "sms_rate_limited.j2",
    "isv.DAY_LIMIT_CONTROL": "sms_rate_limited.j2",
    "isv.MONTH_LIMIT_CONTROL": "sms_rate_limited.j2",
    "isv.MOBILE_NUMBER_ILLEGAL": "sms_bad_number.j2",
}


def member_message_for(code: str) -> str:
    """The reply template to render to the member for a failed send with this code."""
    return _MEMBER_TEMPLATES.get(code, "sms_failed.j2")


@dataclass(frozen=True)
class SmsResult:
    ok: bool
    code: str  # Aliyun's Code, "http_<status>", or "network_error"
    message: str  # Aliyun's Message or the exception text; for logs only
    biz_id: str = ""  # Aliyun's BizId when ok
    request_id: str = ""


def split_endpoint(endpoint: str) -> tuple[str, str]:
    """(protocol, host) for the SDK: a bare host means HTTPS; 'http://127.0.0.1:9001' gives
    ('http', '127.0.0.1:9001').

    The SDK always requests path '/', so a URL with any other path is refused rather than
    silently ignored.
    """
    endpoint = endpoint.strip() or DEFAULT_ENDPOINT
    if "://" not in endpoint:
        return "https", endpoint.rstrip("/")
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"sms.endpoint must be a host or an http(s) URL, got {endpoint!r}")
    if parts.path not in ("", "/") or parts.query:
        raise ValueError(f"sms.endpoint must not have a path, got {endpoint!r}")
    return parts.scheme, parts.netloc


class SmsSender:
    def __init__(self, config: SmsConfig) -> None:
        self._config = config
        protocol, host = split_endpoint(config.endpoint)
        self._client = Client(
            openapi_models.Config(
                access_key_id=config.access_key_id,
                access_key_secret=config.access_key_secret,
                # tea-openapi uses `self._protocol or params.protocol`, so this wins over the
                # 'HTTPS' that the generated SendSms code asks for.
                protocol=protocol,
                endpoint=host,
                connect_timeout=CONNECT_TIMEOUT_MS,
                read_timeout=READ_TIMEOUT_MS,
                # The only switch the SDK's retry loop reads (DaraCore.should_retry): with
                # retryable=False it stops after the first attempt whatever the error.
                retry_options=RetryOptions({"retryable": False}),
            )
        )
        self._runtime = RuntimeOptions(
            autoretry=False,
            max_attempts=1,
            connect_timeout=CONNECT_TIMEOUT_MS,
            read_timeout=READ_TIMEOUT_MS,
        )

    async def send(
        self, phone: str, template_code: str, params: dict[str, str], out_id: str
    ) -> SmsResult:
        """Send one templated SMS. out_id (our delivery id) comes back in delivery receipts."""
        request = sms_models.SendSmsRequest(
            phone_numbers=phone,
            sign_name=self._config.sign_name,
            template_code=template_code,
            template_param=json.dumps(params, ensure_ascii=False),
            out_id=out_id,
        )
        try:
            response = await self._client.send_sms_with_options_async(request, self._runtime)
        except ResponseException as exc:
            # An HTTP 4xx/5xx answer (ClientException / ServerException / ThrottlingException).
            result = _from_http_error(exc)
        except UnretryableException as exc:
            # The SDK wraps anything that is not an HTTP answer: connection refused, timeouts,
            # a dropped connection, a body that is not JSON.
            inner = exc.inner_exception
            result = SmsResult(False, NETWORK_ERROR, _describe(inner if inner else exc))
        except (TeaException, OSError, ValueError) as exc:
            result = SmsResult(False, NETWORK_ERROR, _describe(exc))
        except Exception as exc:
            # Not expected from the SDK; still an unknown outcome for the caller, not a crash
            # of the member's conversation. Logged with the traceback so it gets looked at.
            log.exception("SMS SDK raised unexpectedly")
            result = SmsResult(False, NETWORK_ERROR, _describe(exc))
        else:
            body = response.body
            if body is None:
                result = SmsResult(False, NETWORK_ERROR, "empty response body")
            else:
                result = SmsResult(
                    ok=body.code == "OK",
                    code=body.code or "invalid_response",
                    message=body.message or "",
                    biz_id=(body.biz_id or "") if body.code == "OK" else "",
                    request_id=body.request_id or "",
                )

        if phone and phone in result.message:
            # Exception texts can carry the request URL; keep the full number out of the logs.
            result = replace(result, message=result.message.replace(phone, mask_phone(phone)))
        if result.ok:
            log.info(
                "SMS sent to %s [%s] out_id=%s biz_id=%s",
                mask_phone(phone),
                template_code,
                out_id,
                result.biz_id,
            )
        else:
            log.warning(
                "SMS to %s [%s] out_id=%s failed: %s %s (request %s)",
                mask_phone(phone),
                template_code,
                out_id,
                result.code,
                result.message,
                result.request_id or "-",
            )
        return result

    async def close(self) -> None:
        """Nothing to release: the SDK opens and closes an aiohttp session per request."""


def _from_http_error(exc: ResponseException) -> SmsResult:
    data: dict[str, Any] = exc.data if isinstance(exc.data, dict) else {}
    # tea-openapi formats a missing Code as the string "None".
    code = next(
        (c for c in (data.get("Code"), data.get("code"), exc.code) if c and c != "None"), ""
    )
    if not code:
        code = f"http_{exc.status_code}" if exc.status_code else NETWORK_ERROR
    message = data.get("Message") or data.get("message") or exc.message or ""
    request_id = data.get("RequestId") or data.get("requestId") or ""
    return SmsResult(False, str(code), str(message), request_id=str(request_id))


def _describe(exc: BaseException) -> str:
    # darabonba's RetryError (what aiohttp's OSErrors become) keeps the text in .message.
    message = getattr(exc, "message", None)
    text = message if isinstance(message, str) and message else str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
