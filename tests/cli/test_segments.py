"""`memberbot segment count|show` and `coupon issue --segment`: the counts and lists a shop checks
before a campaign, phones masked, and mistakes pointed at with a caret."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from bot import cli
from bot.cli import coupons as coupons_cli
from bot.cli import segments as segments_cli
from bot.cli.common import CliError
from bot.infra.vault import new_data_key
from bot.models import Coupon, Member, MemberTag, Purchase
from bot.runtime import open_bot
from bot.services import members
from tests.support import make_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def shop(db_url):
    """Three members: 王小明 (金卡会员, tagged 瑜伽, bought 40 days ago), 李雷 (普通会员, bought
    today), 韩梅梅 (金卡会员, never bought)."""
    config = make_config(db_url)
    async with open_bot(config, scheduler=False) as bot:
        found = []
        for n, (name, tier) in enumerate([("王小明", "金卡会员"), ("李雷", "普通会员"),
                                          ("韩梅梅", "金卡会员")]):
            member = (await members.register(bot, f"o_cli{n}", f"1380013800{n}", name, None,
                                              bot.now())).member
            await Member.filter(id=member.id).update(tier=tier)
            found.append(member)
        await MemberTag.create(member=found[0], tag="瑜伽")
        for member, days in ((found[0], 40), (found[1], 0)):
            await Purchase.create(member=member, amount=12_800, idempotency_key=f"p{member.id}",
                                  created_at=bot.now() - dt.timedelta(days=days))
    return config, found


async def test_count_and_show(shop, capsys):
    config, (wang, li, han) = shop
    await segments_cli.count(config, "tier=金卡会员 last_visit>30d")
    assert capsys.readouterr().out == "2 members in tier=金卡会员 last_visit>30d\n"
    await segments_cli.show(config, "tier:金卡会员", 1)
    out = capsys.readouterr().out.splitlines()
    assert out == [f"{wang.card_no:<12} 138****8000  金卡会员   王小明",
                   "1 of 2 members in tier=金卡会员"]
    await segments_cli.show(config, "all", 20)
    out = capsys.readouterr().out
    listed = [line.split()[0] for line in out.splitlines()[:-1]]
    assert listed == [m.card_no for m in (wang, li, han)]
    assert "13800138000" not in out and "138****8001" in out
    assert out.endswith("3 of 3 members in all\n")


async def test_relative_conditions_count_from_the_date_given(shop, capsys):
    config, _ = shop
    later = dt.date.today() + dt.timedelta(days=30)
    await segments_cli.count(config, "last_visit<=30d", later)
    assert capsys.readouterr().out.startswith("1 member in")  # 李雷's visit, 30 days before


@pytest.mark.parametrize(("text", "caret"), [
    ("tier=金卡会员 tire=普通会员", " " * 14 + "^"),  # CJK characters are two columns
    ("tag=瑜珈", " " * 4 + "^"),  # nobody carries that tag
    ("last_visit>30", " " * 11 + "^"),
])
async def test_a_mistake_is_pointed_at_with_a_caret(shop, text, caret):
    config, _ = shop
    with pytest.raises(CliError) as refused:
        await segments_cli.count(config, text)
    message = refused.value.message.splitlines()
    assert refused.value.status == 2
    assert "at column" in message[0] and "(e.g. " in message[0]
    assert message[1:] == [f"  {text}", f"  {caret}"]


def test_main_prints_the_caret_on_stderr(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MEMBERBOT_SECURITY_DATA_KEY", new_data_key())
    monkeypatch.setenv("MEMBERBOT_DATABASE_URL", f"sqlite://{tmp_path}/cli.db")
    status = cli.main(["--config", str(ROOT / "config.toml"), "segment", "show",
                       "tier=黑卡会员"])
    assert status == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == ("memberbot: no tier '黑卡会员' (known: 普通会员, 银卡会员, 金卡会员, "
                      "钻石会员) at column 6 (e.g. tier=普通会员)")
    assert err[1:] == ["  tier=黑卡会员", "       ^"]


async def test_coupon_issue_takes_the_segment_language(shop, capsys):
    config, (_, _, han) = shop
    await coupons_cli.issue(config, "WELCOME20", None, "tier=金卡会员 tag!=瑜伽", "k1")
    async with open_bot(config, scheduler=False):
        issued = await Coupon.filter(template__code="WELCOME20").values_list("member_id",
                                                                              flat=True)
    assert issued == [han.id]
    assert capsys.readouterr().out.endswith("Done: 1 issued, 0 refused. Re-run with --key k1 "
                                            "to resume without issuing twice.\n")
    with pytest.raises(CliError, match="at column 1") as refused:
        await coupons_cli.issue(config, "WELCOME20", None, "金卡会员", "k2")
    assert refused.value.status == 2
