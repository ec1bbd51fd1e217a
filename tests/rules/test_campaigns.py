"""The pure campaign rules: what an error means, the backoff, the clientmsgid, the channels, the
month a mass send counts against, and how a member is reached."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.rules import campaigns as rules

K = rules.ErrorKind
SHANGHAI = dt.timezone(dt.timedelta(hours=8))


@pytest.mark.parametrize(("errcode", "kind"), [
    (-1, K.TRANSIENT), (45009, K.TRANSIENT), (45011, K.TRANSIENT), (45066, K.TRANSIENT),
    (43004, K.REFUSED), (43101, K.REFUSED), (48002, K.REFUSED), (45065, K.DUPLICATE),
    (40003, K.PERMANENT), (45028, K.PERMANENT)])
def test_wechat_errors(errcode, kind):
    assert rules.wechat_error(errcode) == kind


@pytest.mark.parametrize(("code", "kind"), [
    ("isv.BUSINESS_LIMIT_CONTROL", K.TRANSIENT), ("Throttling.User", K.TRANSIENT),
    ("network_error", K.UNKNOWN), ("http_500", K.UNKNOWN), ("http_503", K.TRANSIENT),
    ("isv.MOBILE_NUMBER_ILLEGAL", K.PERMANENT), ("isv.SMS_TEMPLATE_ILLEGAL", K.PERMANENT)])
def test_sms_errors(code, kind):
    assert rules.sms_error(code) == kind


@given(st.integers(1, 50))
def test_backoff_grows_and_is_capped(attempt):
    assert rules.backoff(attempt) <= rules.backoff(attempt + 1) <= dt.timedelta(minutes=10)
    assert rules.backoff(attempt) >= dt.timedelta(seconds=5)


@given(st.integers(1, 2**31), st.integers(1, 2**31), st.text(min_size=1, max_size=600))
def test_a_clientmsgid_fits_and_names_campaign_batch_and_text(campaign, batch, text):
    cid = rules.client_msg_id(campaign, batch, text)
    assert len(cid.encode()) <= 64 and cid == rules.client_msg_id(campaign, batch, text)
    assert cid != rules.client_msg_id(campaign, batch + 1, text)
    assert cid != rules.client_msg_id(campaign, batch, text + "!")


@pytest.mark.parametrize(("given_", "expected"), [
    ("wechat", ("wechat",)), ("sms,wechat", ("wechat", "sms")), (("sms",), ("sms",)),
    ("wechat, sms", ("wechat", "sms")), ("", None), ("fax", None), ("wechat,fax", None)])
def test_channels(given_, expected):
    assert rules.parse_channels(given_) == expected


def test_the_month_is_the_shops():
    late = dt.datetime(2031, 3, 31, 17, 0, tzinfo=dt.UTC)  # 1 April 01:00 in Shanghai
    assert rules.month_of(late, SHANGHAI) == "2031-04"
    assert rules.month_of(late, dt.UTC) == "2031-03"


@given(st.sets(st.sampled_from(rules.CHANNELS), min_size=1), st.booleans(),
       st.integers(0, 6), st.booleans())
def test_a_member_is_reached_by_the_campaigns_channels_only(channels, following, used, phone):
    chosen = tuple(c for c in rules.CHANNELS if c in channels)
    channel = rules.pick_channel(chosen, following=following, mass_used=used, mass_cap=4,
                                 has_phone=phone)
    assert channel is None or channel in chosen
    if channel == "wechat":
        assert following and used < 4
    if "wechat" in chosen and following and used < 4:
        assert channel == "wechat"  # WeChat first: it costs nothing
    if channel is None:
        assert not ("sms" in chosen and phone)
