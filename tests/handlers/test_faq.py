"""The shop's questions ([[faq]]): answered outside dialogs, after every command, a place as a
map card; 帮助 lists them; config.toml's mistakes are refused with the key named."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from wechatpy.replies import ArticlesReply

from bot.app import create_app
from bot.channels.wechat import Envelope, WeChatChannel
from bot.chat.inbound import Channel, Inbound, Kind
from bot.config import ConfigError, FaqConfig, load_config
from bot.handlers import build_router
from bot.handlers.faq import check_keywords
from bot.models import Member
from bot.notifications.replies import News, from_json, to_json
from bot.sandbox import wechat_client as wire
from tests.support import REPO_CONFIG, make_config


def entry(topic: str) -> FaqConfig:
    return next(e for e in REPO_CONFIG.faq if e.topic == topic)


@pytest.mark.parametrize(("text", "topic"), [
    ("营业时间", "营业时间"), ("你们几点开门？", "营业时间"), ("周日几点关门", "营业时间"),
    ("停车", "停车"), ("有车位吗", "停车"), ("停车场在哪", "停车"),
    ("电话", "电话"), ("你们的联系方式", "电话"),
])
async def test_each_question_is_answered_to_anyone(harness, text, topic):
    assert await harness.say("o_faq_guest", text) == entry(topic).answer


async def test_a_spoken_question_is_answered_too(harness):
    reply = await harness.post(wire.voice("o_faq_voice", "你们几点开门"))
    assert reply["Content"] == entry("营业时间").answer


async def test_the_address_is_a_card_that_opens_the_map(harness):
    place = entry("地址")
    reply = await harness.post(wire.text("o_faq_map", "你们店在哪"))
    assert reply["MsgType"] == "news" and reply["ArticleCount"] == "1"
    article = reply["Articles"]["item"]
    assert article["Title"] == harness.config.shop.name
    assert article["Description"] == f"{place.address}\n{place.answer}"
    assert article["Url"] == ("https://uri.amap.com/marker?position=121.4802,31.2375&name="
                              "%E7%A4%BA%E4%BE%8B%E9%97%A8%E5%BA%97")


async def test_a_retry_gets_the_same_card(harness):
    xml = wire.text("o_faq_retry", "地址", msg_id=987654321)
    first, again = await harness.post(xml), await harness.post(xml)
    assert first["MsgType"] == again["MsgType"] == "news"
    assert again["Articles"] == first["Articles"]


async def test_a_card_answered_late_goes_out_as_a_customer_service_news(harness):
    await harness.say("o_faq_late", "电话")  # opens the member's 48 h window
    card = News("示例门店", "南京东路 299 号", "https://uri.amap.com/marker?position=1,2", "")
    outcome = await harness.bot.outbox.wechat("o_faq_late", card, key="faq-late",
                                              purpose="reply")
    assert outcome.ok
    sent = harness.stand_ins.wechat.messages[-1]
    assert sent.raw == {"touser": "o_faq_late", "msgtype": "news", "news": {"articles": [{
        "title": "示例门店", "description": "南京东路 299 号",
        "url": "https://uri.amap.com/marker?position=1,2", "picurl": ""}]}}


def test_a_card_renders_as_wechatpys_news_reply():
    card = News("示例门店", "南京东路\n299 号", "https://example.com/?a=1&b=2", "https://x/p.jpg")
    assert from_json(to_json(card)) == card
    channel = WeChatChannel(make_config("sqlite://:memory:").wechat, 300)
    inbound = Inbound(channel=Channel.WECHAT, user="o_user", account="gh_shop", kind=Kind.TEXT,
                      text="地址", dedup_key="msg:1", created_at=0)
    ours = channel.render(card, inbound, Envelope(False, "n", "1")).decode()
    theirs = ArticlesReply(source="gh_shop", target="o_user", time=0)
    theirs.add_article({"title": card.title, "description": card.description,
                        "image": card.pic_url, "url": card.url})
    created = re.compile(r"<CreateTime>\d+</CreateTime>")
    assert created.sub("", ours) == created.sub("", theirs.render())


async def test_a_command_word_runs_its_command(harness):
    await harness.register("o_faq_member", "13800138071")
    member = await Member.get(follower__openid="o_faq_member")
    assert member.card_no in await harness.say("o_faq_member", "积分")
    assert "我可以帮您" in await harness.say("o_faq_member", "帮助")


async def test_inside_a_dialog_only_a_question_word_alone_is_answered(harness):
    openid, phone = "o_faq_joining", "13800138072"
    await harness.post(wire.event(openid, "subscribe", "qrscene_store:S001"))
    await harness.say(openid, "同意")
    # At the phone step 在哪, alone, is the question: answered as text with the map link (a
    # card could not carry the step's question), then the step is asked again.
    reply = await harness.post(wire.text(openid, "在哪"))
    assert reply["MsgType"] == "text" and "南京东路" in reply["Content"]
    assert "position=121.4802,31.2375" in reply["Content"] and "手机号" in reply["Content"]
    # A sentence that merely contains a keyword is the step's answer: not a phone number.
    reply = await harness.post(wire.text(openid, "你们在哪里呀"))
    assert "南京东路" not in reply["Content"] and "手机号" in reply["Content"]
    await harness.say(openid, phone)
    await harness.say(openid, harness.sms_codes(phone)[-1])
    # At the name step a question word alone is the question, as a command word would be; a
    # name that contains one is a name.
    reply = await harness.say(openid, "停车")
    assert reply.startswith(entry("停车").answer) and "请问怎么称呼您" in reply
    assert "停车哥，最后一步" in await harness.say(openid, "停车哥")
    assert "注册成功" in await harness.say(openid, "跳过")
    assert (await Member.get(follower__openid=openid)).name == "停车哥"
    # Out of the dialog, the same word is the question again.
    assert await harness.say(openid, "停车") == entry("停车").answer


async def test_help_lists_the_topics(harness):
    listed = "回复「营业时间」、「地址」、「停车」、「电话」"
    assert listed in await harness.say("o_faq_help", "帮助")
    assert listed in await harness.say("o_faq_help", "你们卖什么")  # not understood: help follows


async def test_without_faq_entries_nothing_changes(harness_factory):
    shop = await harness_factory(faq=[])
    reply = await shop.say("o_faq_none", "几点开门")
    assert "没看懂" in reply and "营业时间" not in reply


# --- config.toml ---

def test_the_demo_shop_has_the_four_questions():
    assert [e.topic for e in REPO_CONFIG.faq] == ["营业时间", "地址", "停车", "电话"]
    assert entry("地址").located and not entry("电话").located
    check_keywords(REPO_CONFIG.faq, build_router())


@pytest.mark.parametrize("word", ["积分", "帮助", "你好", "预约", "取消"])
def test_a_keyword_that_is_a_command_is_refused_when_the_app_is_built(word):
    config = make_config("sqlite://:memory:", faq=[FaqConfig("规则", [word], "…")])
    refused = re.escape(f"faq.规则.keywords: '{word}' is a command word")
    with pytest.raises(ConfigError, match=refused):
        create_app(config)


def test_a_longer_phrase_with_a_command_word_in_it_is_allowed():
    check_keywords([FaqConfig("预约须知", ["预约须知", "怎么预约"], "…")], build_router())


VALID = 'topic = "地址"\nkeywords = ["地址"]\n'
PLACE = 'address = "南京东路"\nlatitude = 31.2\nlongitude = 121.4\n'


@pytest.mark.parametrize(("entries", "error"), [
    ('topic = "x"\n', "[[faq]] entry is missing 'keywords'"),
    ('topic = ""\nkeywords = ["a"]\nanswer = "a"\n', "faq.topic: every [[faq]] entry"),
    ('topic = "x"\nkeywords = []\nanswer = "a"\n', "faq.x.keywords: at least one keyword"),
    ('topic = "x"\nkeywords = ["a", " "]\nanswer = "a"\n', "faq.x.keywords: at least one"),
    ('topic = "x"\nkeywords = "a"\nanswer = "a"\n', "faq.keywords: expected list"),
    (VALID + 'answer = "a"\n[[faq]]\ntopic = "y"\nkeywords = ["在哪", "地 址"]\nanswer = "b"\n',
     "faq.y.keywords: '地址' is already a keyword (or the topic) of faq.地址"),
    (VALID + 'answer = "a"\n[[faq]]\ntopic = "地址"\nkeywords = ["b"]\nanswer = "b"\n',
     "faq.地址.keywords: '地址' is already"),
    (VALID, "faq.地址.answer: what the bot answers"),
    (VALID + 'answer = "a"\naddress = "南京东路"\n', "faq.地址.address: needs latitude"),
    (VALID + 'address = "x"\nlatitude = 31.2\n', "faq.地址: give latitude and longitude"),
    (VALID + 'address = "x"\nlatitude = "31.2"\nlongitude = 121.4\n',
     "faq.地址.latitude: a number of degrees"),
    (VALID + 'address = "x"\nlatitude = 91\nlongitude = 121.4\n',
     "faq.地址.latitude: -90 to 90"),
    (VALID + 'address = "x"\nlatitude = 31\nlongitude = -181\n',
     "faq.地址.longitude: -180 to 180"),
    (VALID + 'latitude = 31.2\nlongitude = 121.4\n', "faq.地址.address: a place's answer"),
    (VALID + PLACE + 'map_url = "https://m.example/?at={latitude}"\n',
     "faq.地址.map_url: a URL with {lat}, {lng} and {name}"),
    (VALID + PLACE + 'map_url = "geo:{lat},{lng}"\n', "faq.地址.map_url: an http(s) URL"),
    (VALID + PLACE + 'pic_url = "shop.jpg"\n', "faq.地址.pic_url: an http(s) URL"),
    (VALID + PLACE + 'colour = "red"\n', "faq.colour: unknown key"),
])
def test_config_mistakes_are_named(tmp_path: Path, entries: str, error: str):
    file = tmp_path / "config.toml"
    file.write_text(f"[[faq]]\n{entries}", encoding="utf-8")
    with pytest.raises(ConfigError) as refused:
        load_config(file, environ={})
    assert error in str(refused.value)


def test_the_shops_map_url_is_checked_for_a_place(tmp_path: Path):
    file = tmp_path / "config.toml"
    file.write_text(f'[shop]\nmap_url = "https://m.example/{{where}}"\n[[faq]]\n{VALID}{PLACE}',
                    encoding="utf-8")
    with pytest.raises(ConfigError, match=re.escape("shop.map_url: a URL with")):
        load_config(file, environ={})
    file.write_text(f"[[faq]]\n{VALID}{PLACE}", encoding="utf-8")
    assert load_config(file, environ={}).faq[0].located


async def test_a_new_follower_asks_before_agreeing_and_is_asked_to_agree_again(harness):
    openid = "o_faq_newcomer"
    await harness.post(wire.event(openid, "subscribe", "qrscene_store:S001"))
    reply = await harness.say(openid, "营业时间")
    assert entry("营业时间").answer in reply and "同意" in reply
    assert "请输入您的手机号" in await harness.say(openid, "同意")
