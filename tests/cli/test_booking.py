"""`memberbot booking …`: services, resources, weekly hours, closures and the day's list, run
in-process through bot.cli.main with the repository's config.toml (whose 小李 LI, 王老师 WANG,
瑜伽教室 YOGA and the services CUT, PERM, YOGA are config-owned: start-up writes them back)."""

from __future__ import annotations

import datetime as dt

from bot.models import Closure, Resource, Service
from bot.services import bookings
from bot.services.staff import Actor
from tests.cli import test_staff
from tests.cli.test_staff import PHONE, output, seed_member, shop_db
from tests.support import SHANGHAI

# The repo's config.toml on the test database, and `memberbot …` run in-process against it.
cli_config = test_staff.cli_config
run_cli = test_staff.run_cli

DAY = dt.date(2031, 3, 12)  # a Wednesday


def utc(day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute), SHANGHAI).astimezone(dt.UTC)


async def starts(db_url: str, service: str, day: dt.date = DAY) -> list[str]:
    async with shop_db(db_url) as bot:
        found = await bookings.free_times(bot, await Service.get(code=service), day)
        return [f"{t.start.astimezone(SHANGHAI):%H:%M}" for t in found]


async def test_a_new_resource_with_its_hours_serves_a_new_service(run_cli, capsys, db_url):
    assert await run_cli("booking", "resource", "add", "ZHANG", "小张", "--store", "S001") == 0
    out, _ = output(capsys)
    assert "Resource ZHANG" in out and "memberbot booking hours ZHANG" in out
    assert await run_cli("booking", "hours", "ZHANG", "wed=10:00-12:00,13:00-15:00",
                         "sun=10:00-16:00") == 0
    out, _ = output(capsys)
    assert "  wed  10:00-12:00,13:00-15:00" in out and "  mon  closed" in out
    assert "  sun  10:00-16:00" in out
    assert await run_cli("booking", "hours", "ZHANG", "sun=") == 0  # empty: closed that day
    out, _ = output(capsys)
    assert "  sun  closed" in out and "  wed  10:00-12:00,13:00-15:00" in out
    assert await run_cli("booking", "service", "add", "NAIL", "美甲", "--minutes", "90",
                         "--resources", "ZHANG", "--price", "128") == 0
    assert "Service NAIL (美甲, 90 min) added" in output(capsys)[0]
    async with shop_db(db_url):
        service = await Service.get(code="NAIL")
    assert (service.price, service.resources, service.active) == (12800, ["ZHANG"], True)
    assert await starts(db_url, "NAIL") == ["10:00", "10:30", "13:00", "13:30"]
    assert await run_cli("booking", "service", "list") == 0
    listed = output(capsys)[0].splitlines()
    assert any(line.startswith("NAIL") and line.endswith("cli") for line in listed)
    assert any(line.startswith("CUT") and line.endswith("config.toml") for line in listed)
    assert await run_cli("booking", "resource", "list") == 0
    listed = output(capsys)[0].splitlines()
    assert any(line.startswith("ZHANG") and "wed" in line and "S001" in line for line in listed)
    # Disabled: nothing new is booked; added again, it is back.
    assert await run_cli("booking", "service", "disable", "NAIL") == 0
    async with shop_db(db_url):
        assert [s.code for s in await bookings.services()] == ["CUT", "PERM", "YOGA"]
    assert await run_cli("booking", "service", "add", "NAIL", "美甲", "--minutes", "60",
                         "--resources", "ZHANG") == 0
    async with shop_db(db_url):
        assert (await Service.get(code="NAIL")).minutes == 60
    assert await run_cli("booking", "resource", "disable", "ZHANG") == 0
    assert await starts(db_url, "NAIL") == []


async def test_mistakes_are_refused_and_change_nothing(run_cli, capsys, db_url):
    assert await run_cli("booking", "resource", "add", "ZHANG", "小张", "--store", "S009") == 1
    assert "no store 'S009'" in output(capsys)[1]
    assert await run_cli("booking", "resource", "add", "ZHANG", "小张", "--store", "S001") == 0
    assert await run_cli("booking", "resource", "add", "ZHANG", "小张", "--store", "S001") == 1
    assert "exists already" in output(capsys)[1]
    for argv, said in [
        (["wed=12:00-10:00"], "ranges must run forward"),
        (["wed=10:00"], "not a time range like 10:00-20:00"),
        (["friday=10:00-12:00"], "a weekday, one of mon"),
    ]:
        assert await run_cli("booking", "hours", "ZHANG", *argv) == 1, argv
        assert said in output(capsys)[1], argv
    assert await run_cli("booking", "hours", "ZHANG", "wed") == 2
    assert "DAY=HOURS" in output(capsys)[1]
    async with shop_db(db_url):
        assert (await Resource.get(code="ZHANG")).hours == {}
    for argv, said in [
        (["--minutes", "45", "--resources", "ZHANG"], "multiple of booking.slot_minutes (30)"),
        (["--minutes", "60", "--resources", "NOBODY"], "no active resource 'NOBODY'"),
        (["--minutes", "60", "--resources", "ZHANG", "--punch-card", "X"], "no [[punch_cards]]"),
        (["--minutes", "60", "--resources", "ZHANG", "--price", "-1"], "not negative"),
    ]:
        assert await run_cli("booking", "service", "add", "NAIL", "美甲", *argv) == 1, argv
        assert said in output(capsys)[1], argv
    async with shop_db(db_url):
        assert not await Service.exists(code="NAIL")
    assert await run_cli("booking", "service", "disable", "NAIL") == 1
    assert "no service 'NAIL'" in output(capsys)[1]


async def test_config_owned_codes_are_refused_with_where_to_edit_them(run_cli, capsys,
                                                                      db_url):
    async with shop_db(db_url):
        li = await Resource.get(code="LI")
    for argv in [
        ["resource", "add", "LI", "小李", "--store", "S002"],
        ["resource", "disable", "LI"],
        ["hours", "LI", "mon="],
        ["service", "add", "CUT", "剪发", "--minutes", "30", "--resources", "LI"],
        ["service", "disable", "CUT"],
    ]:
        assert await run_cli("booking", *argv) == 1, argv
        err = output(capsys)[1]
        assert "is defined in config.toml" in err and "edit its" in err, argv
    async with shop_db(db_url):
        after = await Resource.get(code="LI")
        assert (await Service.get(code="CUT")).active
    assert (after.hours, after.active, after.store_id) == (li.hours, True, li.store_id)
    # Showing the week is fine.
    assert await run_cli("booking", "hours", "LI") == 0
    assert "  mon  10:00-20:00" in output(capsys)[0]


async def test_closures_for_any_resource_name_the_bookings_inside_them(run_cli, capsys,
                                                                      db_url):
    member = await seed_member(db_url)
    async with shop_db(db_url) as bot:
        cut = await Service.get(code="CUT")
        held = await bookings.book(bot, member, cut, utc(DAY, 15), key="test:held",
                                   resource=await Resource.get(code="LI"), actor=Actor.cli())
    assert "15:00" in await starts(db_url, "CUT")
    assert await run_cli("booking", "closed", "LI", "2031-03-12", "--from", "14:00",
                         "--until", "18:00", "--reason", "培训") == 0
    out, _ = output(capsys)
    assert "LI closed on 2031-03-12 14:00-18:00 (培训)" in out
    assert f"#{held.booking.id}  15:00  洗剪吹" in out
    async with shop_db(db_url) as bot:
        li_free = await bookings.free_times(bot, cut, DAY, resource=await Resource.get(code="LI"))
    times = [f"{t.start.astimezone(SHANGHAI):%H:%M}" for t in li_free]
    assert "13:00" in times and "13:30" not in times and "17:30" not in times
    assert "18:00" in times
    assert await run_cli("booking", "closed", "LI", "2031-03-12", "--from", "14:00",
                         "--until", "18:00") == 0
    assert "already closed" in output(capsys)[0]
    thursday = DAY + dt.timedelta(days=1)  # 王老师's alone: 小李 is off on Thursdays
    assert "10:00" in await starts(db_url, "CUT", thursday)
    assert await run_cli("booking", "closed", "WANG", "2031-03-13", "--reason", "休假") == 0
    assert await run_cli("booking", "closed", "WANG", "--list") == 0
    assert "2031-03-13  all day      休假" in output(capsys)[0]
    assert await starts(db_url, "CUT", thursday) == []
    assert await run_cli("booking", "closed", "LI", "2031-03-12", "--remove") == 0
    assert "open again" in output(capsys)[0]
    async with shop_db(db_url):
        assert not await Closure.exists(resource__code="LI")
    for argv, status, said in [
        (["LI", "2020-01-01"], 1, "in the past"),
        (["LI", "2031-03-12", "--from", "14:00"], 1, "--from and --until go together"),
        (["LI", "2031-03-12", "--from", "18:00", "--until", "14:00"], 1, "run forward"),
        (["LI", "12/03"], 2, "a date like 2026-12-25"),
        (["LI"], 2, "give a date"),
        (["NOBODY", "2031-03-12"], 1, "no resource 'NOBODY'"),
        (["LI", "2031-03-12", "--remove"], 1, "no closure on 2031-03-12"),
    ]:
        assert await run_cli("booking", "closed", *argv) == status, argv
        assert said in output(capsys)[1], argv


async def test_the_day_list_groups_by_resource_with_masked_phones(run_cli, capsys, db_url):
    member = await seed_member(db_url)
    async with shop_db(db_url) as bot:
        cut = await Service.get(code="CUT")
        made = []
        for hour, code in ((16, "LI"), (10, "WANG"), (11, "LI")):
            booked = await bookings.book(bot, member, cut, utc(DAY, hour), key=f"test:{hour}",
                                         resource=await Resource.get(code=code),
                                         actor=Actor.cli())
            made.append(booked.booking.id)
    assert await run_cli("booking", "list", "--date", "2031-03-12") == 0
    out, _ = output(capsys)
    assert "2031-03-12 (周三), all stores: 3 booking(s)" in out
    assert PHONE not in out and "138****8000" in out
    lines = out.splitlines()
    order = [next(n for n, line in enumerate(lines) if f"#{number}" in line) for number in made]
    li, wang = lines.index("小李 (LI)"), lines.index("王老师 (WANG)")
    assert li < order[2] < order[0] < wang < order[1]
    assert "booked" in lines[order[0]] and "王小明" in lines[order[0]]
    assert await run_cli("booking", "list", "--date", "2031-03-12", "--store", "S002") == 0
    assert "示例门店·二店: no booking(s)" in output(capsys)[0]
    assert await run_cli("booking", "list", "--store", "S009") == 2
    assert await run_cli("booking", "list", "--date", "tomorrow") == 2


async def test_booking_commands_need_only_the_database(run_cli, capsys, monkeypatch):
    for key in ("APP_ID", "APP_SECRET", "TOKEN", "ENCODING_AES_KEY"):
        monkeypatch.delenv(f"MEMBERBOT_WECHAT_{key}")
    assert await run_cli("booking", "resource", "list") == 0
    assert await run_cli("booking", "list") == 0
    assert "configuration error" not in output(capsys)[1]
