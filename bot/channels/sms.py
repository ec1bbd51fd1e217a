"""Aliyun SMS pushes: member replies (SmsUp) and delivery receipts (SmsReport), each a JSON array.
An uplink becomes an Inbound like any WeChat message, with the phone number as the user."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from bot.channels.wechat import Rejected
from bot.chat.inbound import Channel, Inbound, Kind
from bot.config import SmsConfig
from bot.infra.vault import constant_time_equal
from bot.rules.parsing import normalize_phone

ACK = {"code": 0, "msg": "成功"}
MAX_ITEMS = 100


def check_push_token(config: SmsConfig, query: Mapping[str, str]) -> None:
    if config.push_token and not constant_time_equal(config.push_token, query.get("token", "")):
        raise Rejected(403, "bad or missing push token")


def _items(body: bytes) -> list[dict]:
    try:
        items = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise Rejected(400, "body is not JSON") from None
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise Rejected(400, "body is not a JSON array of objects")
    if len(items) > MAX_ITEMS:
        raise Rejected(413, "too many items in one push")
    return items


def parse_uplink(body: bytes) -> list[Inbound]:
    messages = []
    for item in _items(body):
        phone = normalize_phone(str(item.get("phone_number", "")))
        content = item.get("content")
        sequence = item.get("sequence_id")
        if (phone is None or not isinstance(content, str)
                or not isinstance(sequence, int | str) or not 0 < len(str(sequence)) <= 64):
            raise Rejected(400, "uplink item without a valid phone_number, content or sequence_id")
        messages.append(Inbound(channel=Channel.SMS, user=phone, kind=Kind.TEXT, text=content[:500],
                                dedup_key=f"sms:{phone}:{sequence}",
                                extra={"dest_code": str(item.get("dest_code", ""))}))
    return messages


@dataclass(frozen=True)
class Report:
    out_id: str
    delivered: bool
    err_code: str


def parse_reports(body: bytes) -> list[Report]:
    return [
        Report(str(item.get("out_id", "")), item.get("success") is True,
               str(item.get("err_code", "")))
        for item in _items(body)
    ]
