"""MASSSENDJOBFINISH, the event a finished mass send brings: its counts reach the handler, and
two of them in one second (they all come from WeChat's mass-send assistant) are two events, not
a retry."""

from __future__ import annotations

from bot.channels.wechat import WeChatChannel
from bot.config import WeChatConfig
from bot.sandbox import wechat_client as wire
from bot.sandbox.wechat_server import MassRecord, mass_finish_xml
from tests.support import AES_KEY, APP_ID, APP_SECRET, TOKEN

CONFIG = WeChatConfig(app_id=APP_ID, app_secret=APP_SECRET, token=TOKEN,
                      encoding_aes_key=AES_KEY)
CREATED = 1_900_000_000


def opened(msg_id: int):
    record = MassRecord(msg_id, 1, "c", ["o_a", "o_b"], ["o_c"], "hi", 0.0)
    simulator = wire.WeChatSimulator(CONFIG, "aes", clock=lambda: CREATED)
    signed = simulator.sign(mass_finish_xml(record, create_time=CREATED))
    channel = WeChatChannel(CONFIG, max_clock_skew=300, clock=lambda: CREATED)
    return channel.open(signed.params, signed.body)[0]


def test_the_counts_reach_the_inbound():
    inbound = opened(1001)
    assert inbound.kind == "mass_finish" and inbound.is_event
    assert inbound.extra == {"msg_id": "1001", "status": "send success", "total": "3",
                             "filtered": "1", "sent": "2", "errors": "0"}


def test_two_sends_finishing_in_one_second_are_two_events():
    assert opened(1001).dedup_key != opened(1002).dedup_key
    assert opened(1001).dedup_key == opened(1001).dedup_key  # a retry is still a retry
