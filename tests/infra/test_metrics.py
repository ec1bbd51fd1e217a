"""/metrics in Prometheus format: inbound by kind and outcome, latency, deliveries by channel
and state, SMS refused, token refreshes."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from bot.notifications.replies import Text
from bot.sandbox import wechat_client as wire


async def _metrics(harness) -> dict[tuple[str, tuple], float]:
    async with harness.session.get(str(harness.server.make_url("/metrics"))) as response:
        assert response.status == 200
        text = await response.text()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


async def test_the_counters_follow_what_happened(harness):
    await harness.post(wire.event("o_m1", "subscribe", "qrscene_store:S001"))
    await harness.say("o_m1", "同意")
    await harness.say("o_m1", "13800138071")  # a code goes out
    assert "太频繁" in await harness.say("o_m1", "重发")  # the next is refused
    await harness.bot.outbox.wechat("o_m1", Text("hi"), key="m1-cs", purpose="test")
    await harness.settle()
    m = await _metrics(harness)
    inbound = {labels: value for (name, labels), value in m.items()
               if name == "memberbot_inbound_total"}
    assert inbound[(("channel", "wechat"), ("kind", "subscribe"), ("outcome", "replied"))] == 1
    assert inbound[(("channel", "wechat"), ("kind", "text"), ("outcome", "replied"))] == 3
    assert m[("memberbot_inbound_seconds_count", (("channel", "wechat"),))] == 4
    assert m[("memberbot_deliveries_total", (("channel", "sms"), ("status", "sent")))] == 1
    assert m[("memberbot_deliveries_total", (("channel", "wechat_cs"), ("status", "sent")))] == 1
    assert m[("memberbot_sms_refused_total", (("reason", "rate_limit"),))] == 1
    assert m[("memberbot_token_refreshes_total", ())] == 1
