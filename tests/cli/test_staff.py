"""`memberbot staff|purchase|audit`: the owner's shell, run in-process through bot.cli.main with a
config file and MEMBERBOT_* keys as an operator would set them, against the same database the
chat uses (and, for revoking a live account, as a separate process beside the running bot)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot import cli
from bot.cli.common import width
from bot.config import SecurityConfig
from bot.infra.vault import new_data_key
from bot.models import (
    AuditEntry,
    Delivery,
    Follower,
    Member,
    PointsEntry,
    Purchase,
    Staff,
    StaffInvite,
    TierChange,
)
from bot.rules.cards import card_number
from bot.runtime import Bot, open_bot
from bot.services import members
from bot.services import staff as staff_service
from tests.support import AES_KEY, APP_ID, APP_SECRET, TOKEN, make_config

ROOT = Path(__file__).resolve().parents[2]
DATA_KEY = new_data_key()  # shared by the CLI, the seeding below and the chat harness
PHONE, OTHER_PHONE = "13800138000", "13900139000"
TZ = dt.timezone(dt.timedelta(hours=8))  # Asia/Shanghai, the shop's time zone in config.toml


@pytest.fixture
def cli_config(db_url, tmp_path, monkeypatch, stand_ins) -> Path:
    """The repo's config.toml pointed at the test database, keys from the environment."""
    text = (ROOT / "config.toml").read_text(encoding="utf-8")
    text, found = re.subn(r'(?m)^url = "sqlite://data/memberbot.db"$', f'url = "{db_url}"', text)
    assert found == 1
    # A template for purchase notices, for members without a customer-service window.
    text, found = re.subn(r'(\[notices\.purchase\]\s*\ntemplate_id = )""', r'\1"TPL1"', text)
    assert found == 1
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    for key in [k for k in os.environ if k.startswith("MEMBERBOT_")]:
        monkeypatch.delenv(key)
    for key, value in {
        "WECHAT_APP_ID": APP_ID, "WECHAT_APP_SECRET": APP_SECRET, "WECHAT_TOKEN": TOKEN,
        "WECHAT_ENCODING_AES_KEY": AES_KEY, "WECHAT_API_BASE_URL": stand_ins.wechat_url,
        "SECURITY_DATA_KEY": DATA_KEY, "SCHEDULER_ENABLED": "false",
        "POINTS_MEMBER_DAY": "0",  # the same points whatever weekday the suite runs on
        "RATINGS_ASK": "false",  # no question after a purchase (tests/handlers/test_ratings.py)
    }.items():
        monkeypatch.setenv(f"MEMBERBOT_{key}", value)
    return path


@pytest.fixture
def run_cli(cli_config):
    """`memberbot --config … <argv>` in this process (in a thread: it runs its own event loop,
    while the WeChat stand-in keeps answering on ours)."""

    async def run(*argv: str) -> int:
        return await asyncio.to_thread(cli.main, ["--config", str(cli_config), *argv])

    return run


@contextlib.asynccontextmanager
async def shop_db(db_url: str) -> AsyncIterator[Bot]:
    """The database (and a bot for the services) between CLI runs, never during one."""
    config = make_config(db_url, security=SecurityConfig(DATA_KEY))
    async with open_bot(config, scheduler=False) as bot:
        yield bot


async def seed_member(db_url: str, phone: str = PHONE, name: str = "王小明") -> Member:
    async with shop_db(db_url) as bot:
        registration = await members.register(bot, f"o_{phone}", phone, name, None, bot.now())
        return registration.member


def output(capsys) -> tuple[str, str]:
    captured = capsys.readouterr()
    return captured.out, captured.err


# --- staff invite / list / revoke ---

async def test_invite_prints_the_code_last_and_it_binds_in_chat(run_cli, capsys, db_url,
                                                               harness_factory):
    assert await run_cli("staff", "invite", "--store", "S001", "--role", "clerk",
                         "--name", "小王") == 0
    out, _ = output(capsys)
    code = out.strip().splitlines()[-1]
    assert re.fullmatch(r"[23456789A-HJ-NP-Z]{8}", code), out
    assert "绑定 <code>" in out and "valid 24 hours" in out
    shop = await harness_factory(security=SecurityConfig(DATA_KEY))
    reply = await shop.say("o_wang", f"绑定 {code}")
    assert "绑定成功" in reply and "示例门店·总店" in reply and "店员（小王）" in reply
    staff = await Staff.get(openid="o_wang").select_related("store")
    assert (staff.role, staff.store.code, staff.name, staff.active) == ("clerk", "S001", "小王",
                                                                        True)
    invite = await AuditEntry.get(action="staff_invite")
    assert invite.actor == "cli" and invite.store_code == "S001"
    assert "邀请码无效" in await shop.say("o_li", f"绑定 {code}")  # once only


async def test_revoke_from_the_shell_stops_a_live_account(cli_config, db_url, harness_factory):
    """`memberbot staff revoke` as its own process while the bot serves on the same database."""
    shop = await harness_factory(security=SecurityConfig(DATA_KEY))
    code = await staff_service.create_invite("S001", "manager", "李店长", shop.bot.now())
    await shop.say("o_li", f"绑定 {code}")
    staff = await Staff.get(openid="o_li")
    assert "员工命令" in await shop.say("o_li", "员工帮助")

    async def memberbot(*argv: str) -> tuple[int, str, str]:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot.cli", "--config", str(cli_config), *argv, cwd=ROOT,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(process.communicate(), 60)
        return process.returncode, out.decode(), err.decode()

    status, out, _ = await memberbot("staff", "revoke", str(staff.id))
    assert status == 0 and f"Staff member {staff.id} revoked" in out
    assert not (await Staff.get(id=staff.id)).active
    for text in ("员工帮助", f"消费 {PHONE} 10", f"查询 {PHONE}"):
        assert "员工权限已停用" in await shop.say("o_li", text)  # told, not "not understood"
    status, _, err = await memberbot("staff", "revoke", str(staff.id))
    assert status == 1 and f"no active staff member with id {staff.id}" in err


async def test_invite_for_an_unknown_store_exits_2(run_cli, capsys, db_url):
    assert await run_cli("staff", "invite", "--store", "S999", "--role", "clerk") == 2
    out, err = output(capsys)
    assert "no store 'S999'" in err and not out
    async with shop_db(db_url):
        assert await StaffInvite.all().count() == 0
        assert await AuditEntry.all().count() == 0


async def test_invite_with_an_unknown_role_is_a_usage_error(run_cli, capsys):
    with pytest.raises(SystemExit) as exit_info:
        await run_cli("staff", "invite", "--store", "S001", "--role", "boss")
    assert exit_info.value.code == 2
    assert "invalid choice: 'boss'" in output(capsys)[1]


async def test_staff_list_and_revoke(run_cli, capsys, db_url):
    assert await run_cli("staff", "list") == 0
    assert "No staff yet" in output(capsys)[0]
    async with shop_db(db_url) as bot:
        for openid, store, role, name in [("o_1", "S001", "clerk", "小王"),
                                          ("o_2", "S002", "manager", "李店长")]:
            code = await staff_service.create_invite(store, role, name, bot.now())
            await staff_service.bind(openid, code, bot.now())
        wang, li = await Staff.all().order_by("id")
    assert await run_cli("staff", "revoke", str(li.id)) == 0
    assert f"Staff member {li.id} revoked" in output(capsys)[0]
    assert await run_cli("staff", "list") == 0
    lines = output(capsys)[0].strip().splitlines()
    assert len(lines) == 2
    bound = [f"{s.created_at.astimezone(TZ):%Y-%m-%d %H:%M}".split() for s in (wang, li)]
    assert lines[0].split() == [str(wang.id), "小王", "clerk", "S001", "active", "bound",
                                *bound[0]]
    assert lines[1].split() == [str(li.id), "李店长", "manager", "S002", "revoked", "bound",
                                *bound[1]]
    # Chinese names take two columns each: the role column lines up all the same.
    # (The ids are one digit each: without the padding before them, the lines start alike.)
    starts = {width(line.lstrip()[:line.lstrip().index(role)])
              for line, role in zip(lines, ("clerk", "manager"), strict=True)}
    assert starts == {12}
    # A second revoke, or an unknown id, is an error.
    assert await run_cli("staff", "revoke", str(li.id)) == 1
    assert f"no active staff member with id {li.id}" in output(capsys)[1]
    assert await run_cli("staff", "revoke", "999") == 1
    async with shop_db(db_url):
        [entry] = await AuditEntry.filter(action="staff_revoke")
        assert entry.actor == "cli" and entry.store_code == "S002"
        assert entry.detail == f"staff:{li.id} 李店长"
        assert (await Staff.get(id=wang.id)).active


async def test_staff_list_shows_shop_time(run_cli, capsys, db_url):
    """Bound at 17:30 UTC on 2 November is 01:30 on the 3rd in the shop (UTC+8)."""
    async with shop_db(db_url) as bot:
        code = await staff_service.create_invite("S001", "clerk", "小王", bot.now())
        staff = await staff_service.bind("o_1", code, bot.now())
        await Staff.filter(openid="o_1").update(
            created_at=dt.datetime(2026, 11, 2, 17, 30, tzinfo=dt.UTC))
    assert staff
    assert await run_cli("staff", "list") == 0
    [line] = output(capsys)[0].strip().splitlines()
    assert line.endswith("bound 2026-11-03 01:30"), line


# --- purchase ---

async def test_purchase_records_points_and_audits_as_cli(run_cli, capsys, db_url):
    member = await seed_member(db_url)
    assert await run_cli("purchase", PHONE, "128.50", "--note", "洗剪吹") == 0
    out, _ = output(capsys)
    async with shop_db(db_url):
        purchase = await Purchase.get().select_related("store")
        assert out.strip() == (f"Purchase #{purchase.id} recorded: ¥128.50 for {member.card_no},"
                               " +128 points, balance 228")
        assert (purchase.amount, purchase.points, purchase.note) == (12850, 128, "洗剪吹")
        assert purchase.store.code == "S001" and purchase.staff_id is None
        [earn] = await PointsEntry.filter(purchase_id=purchase.id)
        assert (earn.kind, earn.delta, earn.balance_after) == ("earn", 128, 228)
        assert (await Member.get(id=member.id)).points == 228
        [entry] = await AuditEntry.filter(action="purchase")
        assert (entry.actor, entry.staff_id, entry.store_code, entry.member_id) == (
            "cli", None, "S001", member.id)
        assert entry.before == {"points": 100, "tier": "普通会员"}
        assert entry.after == {"points": 228, "tier": "普通会员", "amount": 12850,
                               "purchase": purchase.id}
        assert entry.detail == "洗剪吹"


async def test_purchase_by_card_number_upgrades_the_tier(run_cli, capsys, db_url):
    member = await seed_member(db_url)
    assert await run_cli("purchase", member.card_no, "1000", "--store", "S001") == 0
    assert output(capsys)[0].strip().endswith(
        "+1000 points, balance 1100, upgraded to 银卡会员")
    async with shop_db(db_url):
        assert (await Member.get(id=member.id)).tier == "银卡会员"
        [change] = await TierChange.all()
        assert (change.to_tier, change.reason, change.staff_id) == ("银卡会员", "purchase", None)


async def test_purchase_with_the_same_key_twice_records_once(run_cli, capsys, db_url):
    member = await seed_member(db_url)
    assert await run_cli("purchase", PHONE, "50", "--key", "till-42") == 0
    assert " recorded: ¥50.00" in output(capsys)[0]
    assert await run_cli("purchase", PHONE, "50", "--key", "till-42") == 0
    out = output(capsys)[0]
    assert "already recorded" in out and "balance 150" in out
    async with shop_db(db_url):
        assert await Purchase.all().count() == 1
        assert (await Member.get(id=member.id)).points == 150
        assert await AuditEntry.filter(action="purchase").count() == 1
        assert await Delivery.filter(purpose="purchase").count() == 1


@pytest.mark.parametrize("amount", ["abc", "0", "-5", "1.234", "100000.01", "1e3"])
async def test_purchase_with_a_bad_amount_exits_2(run_cli, capsys, db_url, amount):
    await seed_member(db_url)
    assert await run_cli("purchase", PHONE, amount) == 2
    out, err = output(capsys)
    assert f"amount {amount!r} must be a positive number of yuan with at most two decimals, " \
           "at most 100000" in err and not out
    async with shop_db(db_url):
        assert await Purchase.all().count() == 0


async def test_purchase_for_an_unknown_member_exits_1(run_cli, capsys, db_url):
    member = await seed_member(db_url)
    assert await run_cli("purchase", OTHER_PHONE, "10") == 1
    assert f"没有找到 {OTHER_PHONE} 对应的会员" in output(capsys)[1]
    bad = member.card_no[:-1] + str((int(member.card_no[-1]) + 1) % 10)
    assert await run_cli("purchase", bad, "10") == 1
    assert f"卡号 {bad} 校验位不对" in output(capsys)[1]
    unissued = card_number("88", 4242)
    assert await run_cli("purchase", unissued, "10") == 1
    assert f"没有找到 {unissued} 对应的会员" in output(capsys)[1]
    assert await run_cli("purchase", PHONE, "10", "--store", "S999") == 2
    assert "no store 'S999'" in output(capsys)[1]
    async with shop_db(db_url):
        assert await Purchase.all().count() == 0


async def test_purchase_notice_goes_out_as_custom_message_with_a_window(run_cli, db_url,
                                                                      stand_ins):
    await seed_member(db_url)
    async with shop_db(db_url) as bot:
        await Follower.filter(openid=f"o_{PHONE}").update(message_window_at=bot.now())
    assert await run_cli("purchase", PHONE, "128.50") == 0
    [message] = stand_ins.wechat.messages
    assert message.openid == f"o_{PHONE}"
    assert "消费 ¥128.50" in message.content and "获得 128 积分" in message.content
    assert "当前积分：228" in message.content
    assert not stand_ins.wechat.templates


async def test_purchase_notice_uses_the_template_without_a_window(run_cli, db_url, stand_ins):
    """The same rules as 消费 in chat: no window, a purchase template configured → a template
    message with the amount, points, balance and time."""
    await seed_member(db_url)
    assert await run_cli("purchase", PHONE, "128.50") == 0
    assert not stand_ins.wechat.messages
    async with shop_db(db_url):
        [delivery] = await Delivery.filter(purpose="purchase")
    assert (delivery.status, delivery.error) == ("sent", None), delivery.error
    [template] = stand_ins.wechat.templates
    assert template.template_id == "TPL1" and template.openid == f"o_{PHONE}"
    values = {key: value["value"] for key, value in template.data.items()}
    assert values["amount1"] == "¥128.50"
    assert values["number2"] == "128" and values["number3"] == "228"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d", values["time4"])


# --- audit ---

async def seed_audit(db_url: str) -> dict[str, int]:
    """Entries on different days (shop time), by two staff, about two members."""
    one = await seed_member(db_url)
    two = await seed_member(db_url, OTHER_PHONE, "李雷")
    async with shop_db(db_url):
        clerk = await Staff.create(openid="o_c", role="clerk", name="小王",
                                   store_id=one.store_id)
        manager = await Staff.create(openid="o_m", role="manager", name="李店长",
                                     store_id=one.store_id)
        rows = [
            (clerk, one, dt.datetime(2026, 11, 1, 10, 0, tzinfo=TZ), "e-nov1"),
            (clerk, two, dt.datetime(2026, 11, 2, 23, 30, tzinfo=TZ), "e-nov2-late"),
            # 00:30 in Shanghai is still 2 November in UTC: it belongs to the 3rd.
            (manager, one, dt.datetime(2026, 11, 3, 0, 30, tzinfo=TZ), "e-nov3-early"),
            (manager, two, dt.datetime(2026, 11, 5, 12, 0, tzinfo=TZ), "e-nov5"),
        ]
        for staff, member, at, detail in rows:
            await AuditEntry.create(staff=staff, actor=f"staff:{staff.id} {staff.name}",
                                    store_code="S001", action="purchase", member_id=member.id,
                                    before={"points": 1}, after={"points": 2}, detail=detail,
                                    created_at=at.astimezone(dt.UTC))
        stored = await AuditEntry.get(detail="e-nov3-early")
        assert stored.created_at == dt.datetime(2026, 11, 2, 16, 30, tzinfo=dt.UTC)
    return {"clerk": clerk.id, "manager": manager.id, "one": one.card_no, "two": two.card_no}


def details(out: str) -> list[str]:
    return re.findall(r"\be-[\w-]+", out)


async def test_audit_lists_entries_in_order_with_local_times(run_cli, capsys, db_url):
    ids = await seed_audit(db_url)
    assert await run_cli("audit") == 0
    out = output(capsys)[0]
    assert details(out) == ["e-nov1", "e-nov2-late", "e-nov3-early", "e-nov5"]
    line = next(x for x in out.splitlines() if "e-nov3-early" in x)
    assert line.startswith("2026-11-03 00:30:00 ")
    assert f"staff:{ids['manager']} 李店长" in line and ids["one"] in line
    assert "points=1 → points=2" in line
    assert await run_cli("audit", "--limit", "2") == 0
    assert details(output(capsys)[0]) == ["e-nov3-early", "e-nov5"]  # the latest two


@pytest.mark.parametrize(("filters", "expected"), [
    (["--staff", "{clerk}"], ["e-nov1", "e-nov2-late"]),
    (["--staff", "{manager}"], ["e-nov3-early", "e-nov5"]),
    (["--staff", "999"], []),
    (["--member", PHONE], ["e-nov1", "e-nov3-early"]),
    (["--member", "{two}"], ["e-nov2-late", "e-nov5"]),
    (["--since", "2026-11-03"], ["e-nov3-early", "e-nov5"]),
    (["--until", "2026-11-02"], ["e-nov1", "e-nov2-late"]),
    (["--since", "2026-11-02", "--until", "2026-11-03"], ["e-nov2-late", "e-nov3-early"]),
    (["--since", "2026-11-05", "--until", "2026-11-05"], ["e-nov5"]),
    (["--since", "2026-11-06"], []),
    (["--staff", "{manager}", "--member", OTHER_PHONE, "--since", "2026-11-04"], ["e-nov5"]),
])
async def test_audit_filters(run_cli, capsys, db_url, filters, expected):
    ids = await seed_audit(db_url)
    argv = [f.format(**ids) for f in filters]
    assert await run_cli("audit", *argv) == 0
    assert details(output(capsys)[0]) == expected


@pytest.mark.parametrize("argv", [["--since", "2026-13-01"], ["--until", "yesterday"],
                                  ["--since", "11/03/2026"]])
async def test_audit_with_a_bad_date_exits_2(run_cli, capsys, db_url, argv):
    assert await run_cli("audit", *argv) == 2
    assert f"--{argv[0].lstrip('-')} takes a date like 2026-11-01" in output(capsys)[1]


async def test_audit_for_an_unknown_member_exits_1(run_cli, capsys, db_url):
    assert await run_cli("audit", "--member", OTHER_PHONE) == 1
    assert f"没有找到 {OTHER_PHONE} 对应的会员" in output(capsys)[1]
    assert await run_cli("audit", "--member", "nobody") == 1
    assert "既不是手机号也不是卡号" in output(capsys)[1]


async def test_audit_shows_money_in_yuan(run_cli, capsys, db_url):
    member = await seed_member(db_url)
    async with shop_db(db_url):
        await AuditEntry.create(actor="cli", action="topup", member_id=member.id,
                                before={"stored_value": 0},
                                after={"stored_value": 38000, "amount": 35000, "bonus": 3000},
                                detail="e-topup")
        await AuditEntry.create(actor="cli", action="coupon_redeem", member_id=member.id,
                                after={"coupons": ["C1"], "amount": None, "discount": 0},
                                detail="e-coupon")
    assert await run_cli("audit") == 0
    out = output(capsys)[0]
    topup = next(x for x in out.splitlines() if "e-topup" in x)
    # PostgreSQL's jsonb keeps its own key order: compare the values, not the order.
    assert "stored_value=¥0.00 → " in topup
    for shown in ("stored_value=¥380.00", "amount=¥350.00", "bonus=¥30.00"):
        assert shown in topup, topup
    coupon = next(x for x in out.splitlines() if "e-coupon" in x)
    assert "amount=None" in coupon and "discount=¥0.00" in coupon and "coupons=['C1']" in coupon


async def test_cli_actions_show_up_in_the_audit(run_cli, capsys, db_url):
    await seed_member(db_url)
    assert await run_cli("staff", "invite", "--store", "S001", "--role", "manager",
                         "--name", "李店长") == 0
    assert await run_cli("purchase", PHONE, "20", "--note", "剪发") == 0
    output(capsys)
    assert await run_cli("audit", "--member", PHONE) == 0
    [line] = output(capsys)[0].strip().splitlines()
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d cli +S001 +purchase ", line)
    assert line.endswith("剪发")
    assert await run_cli("audit") == 0
    actions = [line.split()[4] for line in output(capsys)[0].strip().splitlines()]
    assert actions == ["staff_invite", "purchase"]
