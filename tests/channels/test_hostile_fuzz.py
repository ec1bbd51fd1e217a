"""Hostile input, generated: whatever goes into the fields of a correctly signed callback, the
answer is 200 or a 4xx, never a 500, no handler raised (a crash is answered 200 with the
apology, so the status alone would hide it), and the worker keeps serving. And a burst of 1000
code requests for one phone sends one SMS."""

from __future__ import annotations

import asyncio
import logging

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.runtime import open_bot
from bot.sandbox import wechat_client as wire
from bot.services import verification
from tests.support import Harness, make_config

FIELD_TEXT = st.text(max_size=300) | st.text(alphabet="🙂😀中文\u200b\u202e<>&]]>", max_size=50)
FUZZ = settings(max_examples=120, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


def _xml(msg_type: str, from_user: str, create_time: int, fields: dict[str, str]) -> str:
    parts = ["<ToUserName><![CDATA[gh_x]]></ToUserName>",
             f"<FromUserName>{wire._cdata(from_user)}</FromUserName>",
             f"<CreateTime>{create_time}</CreateTime>",
             f"<MsgType>{wire._cdata(msg_type)}</MsgType>"]
    parts += [f"<{name}>{wire._cdata(value)}</{name}>" for name, value in fields.items()]
    return "<xml>" + "".join(parts) + "</xml>"


@FUZZ
@given(
    msg_type=st.sampled_from(["text", "event", "voice", "image", "location", "link", "video",
                              "shortvideo", "", "TEXT", "nonsense"]) | FIELD_TEXT,
    from_user=st.text(min_size=1, max_size=80) | st.just("o_fuzz"),
    create_time=st.integers(-(2**70), 2**70),
    content=FIELD_TEXT | st.text(min_size=5000, max_size=10000),
    event=st.sampled_from(["subscribe", "unsubscribe", "SCAN", "CLICK", "VIEW", "LOCATION",
                           "scancode_waitmsg", "TEMPLATESENDJOBFINISH", "x"]) | FIELD_TEXT,
    key=FIELD_TEXT,
    msg_id=st.integers(-(2**70), 2**70).map(str) | FIELD_TEXT,
)
async def test_any_field_values_get_an_answer_never_a_crash(harness, caplog, msg_type,
                                                            from_user, create_time, content,
                                                            event, key, msg_id):
    xml = _xml(msg_type, from_user, create_time, {"Content": content, "Event": event,
                                                  "EventKey": key, "MsgId": msg_id,
                                                  "Recognition": content})
    signed = harness.simulator.sign(xml)
    caplog.clear()
    failed = _handler_failures(harness)
    with caplog.at_level(logging.ERROR):
        status, body = await harness.raw(signed.params, signed.body)
        await harness.settle()  # a deferred reply or a notice fails after the answer
    assert status in (200, 400, 413), (status, body[:200])
    if status == 200 and body != b"success":
        assert harness.simulator.read_reply(body, signed.params) is not None
    errors = [r for r in caplog.records
              if r.levelno >= logging.ERROR and r.name.startswith("memberbot")]
    assert _handler_failures(harness) == failed and not errors, [
        (r.getMessage(), r.exc_text or r.exc_info) for r in errors]


def _handler_failures(harness: Harness) -> float:
    """Messages the dispatcher answered with the apology because the handler raised."""
    return sum(sample.value for family in harness.bot.metrics.registry.collect()
               for sample in family.samples
               if sample.name == "memberbot_inbound_total"
               and sample.labels["outcome"] == "failed")


async def test_a_cdata_terminator_in_the_sender_still_gets_a_well_formed_reply(harness):
    # wechatpy writes reply fields into CDATA unescaped: "]]>" in FromUserName once broke it.
    signed = harness.simulator.sign(_xml("text", "o_]]>x", 1_700_000_000, {"Content": "积分"}))
    status, body = await harness.raw(signed.params, signed.body)
    assert status == 200
    assert harness.simulator.read_reply(body, signed.params)["ToUserName"] == "o_]]>x"


async def test_after_the_fuzz_the_worker_still_answers(harness):
    # A few nasty ones in a row, then an ordinary message.
    for create_time in (2**63, -1, 0):
        signed = harness.simulator.sign(_xml("text", "o_fuzz", create_time, {"Content": "x"}))
        status, _ = await harness.raw(signed.params, signed.body)
        assert status in (200, 400)
    assert "还不是" in await harness.say("o_after", "积分")


async def test_a_burst_of_1000_code_requests_for_one_phone_sends_one_sms(db_url, any_db,
                                                                         stand_ins):
    async with open_bot(make_config(db_url, stand_ins), scheduler=False) as bot:
        results = await asyncio.gather(*(
            verification.send_code(bot, "13800138099", f"o_bomb_{i % 50}", "register")
            for i in range(1000)))
    assert sum(result.sent for result in results) == 1
    assert all(r.template == "sms_rate_limited.j2" for r in results if not r.sent)
    assert len([m for m in stand_ins.sms.messages if m["phone"] == "13800138099"]) == 1
