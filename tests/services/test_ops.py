"""`memberbot backup|restore|export|import` (bot/services/ops/): real SQLite files in tmp_path, the
functions called directly with an open bot, and the CLI end to end through bot.cli.main.

Backup and restore are SQLite-only, so their tests use a SQLite file in every pass of the suite;
export and import run on the suite's database (`db_url`)."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import datetime as dt
import io
import os
import re
import sqlite3
from pathlib import Path

import pytest
from tortoise.functions import Sum

from bot import cli
from bot.config import SecurityConfig
from bot.infra.vault import new_data_key
from bot.models import (
    AuditEntry,
    CardSerial,
    Follower,
    Member,
    PointsEntry,
    StoredValueEntry,
)
from bot.rules.cards import card_number
from bot.rules.parsing import Birthday
from bot.runtime import open_bot
from bot.sandbox import wechat_client as wire
from bot.services import loyalty, members, ops, privacy, wallet
from bot.services.ops import members_csv
from bot.services.staff import Actor
from tests.support import AES_KEY, APP_ID, APP_SECRET, TOKEN, make_config

ROOT = Path(__file__).resolve().parents[2]
DATA_KEY = new_data_key()  # shared by the CLI runs and the test's own bot
UTC8 = dt.timezone(dt.timedelta(hours=8))


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite://{tmp_path}/data/memberbot.db"


def config_for(url: str):
    return make_config(url, security=SecurityConfig(DATA_KEY))


def write_config(tmp_path: Path, url: str, monkeypatch) -> Path:
    text = (ROOT / "config.toml").read_text(encoding="utf-8")
    text, found = re.subn(r'(?m)^url = "sqlite://data/memberbot.db"$', f'url = "{url}"', text)
    assert found == 1
    text += '\n[[stores]]\ncode = "S002"\nname = "示例门店·二店"\n'  # as in make_config
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    for key in [k for k in os.environ if k.startswith("MEMBERBOT_")]:
        monkeypatch.delenv(key)
    for key, value in {"WECHAT_APP_ID": APP_ID, "WECHAT_APP_SECRET": APP_SECRET,
                       "WECHAT_TOKEN": TOKEN, "WECHAT_ENCODING_AES_KEY": AES_KEY,
                       "SECURITY_DATA_KEY": DATA_KEY, "SCHEDULER_ENABLED": "false"}.items():
        monkeypatch.setenv(f"MEMBERBOT_{key}", value)
    return path


@pytest.fixture
def run_cli(tmp_path, monkeypatch):
    """`memberbot --config … <argv>` against `url`, in a thread (it runs its own event loop)."""

    async def run(url: str, *argv: str) -> int:
        path = write_config(tmp_path, url, monkeypatch)
        return await asyncio.to_thread(cli.main, ["--config", str(path), *argv])

    return run


async def register(bot, phone: str, name: str = "王小明",
                   birthday: Birthday | None = None) -> Member:
    registration = await members.register(bot, f"o_{phone}", phone, name, birthday, bot.now())
    return registration.member


def exists(path: Path | str) -> bool:
    return Path(path).exists()


def sqlite_rows(path: Path, sql: str) -> list[tuple]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return conn.execute(sql).fetchall()


def write_csv(path: Path, rows: list[list[str]], encoding: str = "utf-8") -> Path:
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    path.write_text(out.getvalue(), encoding=encoding, newline="")
    return path


async def stored_value_sum(member_id: int) -> int:
    row = await (StoredValueEntry.filter(member_id=member_id).annotate(total=Sum("delta"))
                 .first().values("total"))
    return int(row["total"] or 0)


# --- backup ---

async def test_backup_while_the_bot_writes_is_a_consistent_copy(sqlite_url, tmp_path):
    config = config_for(sqlite_url)
    target = tmp_path / "backups" / "copy.db"
    async with open_bot(config, scheduler=False) as bot:
        for i in range(20):
            await register(bot, f"138001380{i:02d}")
        stop = asyncio.Event()
        written = 0

        async def writer() -> None:
            nonlocal written
            while not stop.is_set():
                await register(bot, f"139{written:08d}")
                written += 1

        task = asyncio.create_task(writer())
        await asyncio.sleep(0.05)
        path, size = await ops.backup(sqlite_url, target)
        await asyncio.sleep(0.05)
        stop.set()
        await task
        live = await Member.all().order_by("id").values_list("id", "card_no", "phone_hash")
    assert path == target and size == target.stat().st_size > 0
    assert written > 0
    assert sqlite_rows(target, "PRAGMA integrity_check") == [("ok",)]
    # One self-contained file: no log beside it, nothing half-written left behind.
    assert sqlite_rows(target, "PRAGMA journal_mode") == [("delete",)]
    assert not exists(f"{target}-wal") and not exists(f"{target}.part")
    copied = sqlite_rows(target, "SELECT id, card_no, phone_hash FROM member ORDER BY id")
    assert len(copied) >= 20
    # A snapshot of one instant: exactly the members that existed then, no gaps ...
    assert copied == [row for row in live if row[0] <= copied[-1][0]]
    # ... and no transaction half in it: every balance equals its ledger.
    assert sqlite_rows(target, "SELECT count(*) FROM member m WHERE m.points != (SELECT "
                               "coalesce(sum(delta), 0) FROM points_entry e "
                               "WHERE e.member_id = m.id)") == [(0,)]


async def test_backup_cli_default_path_and_refusals(sqlite_url, tmp_path, run_cli, capsys,
                                                    monkeypatch):
    async with open_bot(config_for(sqlite_url), scheduler=False) as bot:
        await register(bot, "13800138000")
    monkeypatch.chdir(tmp_path)
    assert await run_cli(sqlite_url, "backup") == 0
    out = capsys.readouterr().out
    # Beside the database, in data/ (which git ignores), not in the working directory.
    match = re.fullmatch(r"Backup written: (.+/data/backups/memberbot-\d{8}-\d{6}\.db) "
                         r"\((.+)\)\n", out)
    assert match, out
    made = Path(match[1])
    assert made.parent == tmp_path / "data" / "backups"
    assert not (tmp_path / "backups").exists()
    assert sqlite_rows(made, "SELECT count(*) FROM member") == [(1,)]
    assert match[2].endswith("KB")
    # An existing target is not overwritten; a missing database is not created.
    assert await run_cli(sqlite_url, "backup", "--to", str(made)) == 2
    assert "exists already" in capsys.readouterr().err
    missing = f"sqlite://{tmp_path}/nowhere/x.db"
    assert await run_cli(missing, "backup", "--to", str(tmp_path / "x.db")) == 1
    assert "no database at" in capsys.readouterr().err
    assert not (tmp_path / "nowhere" / "x.db").exists()


async def test_backup_and_restore_on_postgres_point_at_pg_dump(run_cli, capsys, tmp_path):
    url = "postgres://shop:s3cret@127.0.0.1:1/memberbot"
    for argv in (["backup"], ["restore", str(tmp_path / "x.db"), "--yes"]):
        assert await run_cli(url, *argv) == 2
        out, err = capsys.readouterr()
        assert not out and err.count("\n") == 1
        assert "pg_dump" in err and "s3cret" not in err


# --- restore ---

async def test_restore_checks_before_touching_and_swaps_in_a_backup(sqlite_url, tmp_path,
                                                                    run_cli, capsys):
    db = ops.sqlite_path(sqlite_url)
    async with open_bot(config_for(sqlite_url), scheduler=False) as bot:
        first = await register(bot, "13800138001")
        second = await register(bot, "13800138002")
        backup, _ = await ops.backup(sqlite_url, tmp_path / "good.db")
        later = await register(bot, "13800138003")  # after the backup
    before = db.read_bytes()

    # Without --yes: refused with the reason, nothing touched.
    assert await run_cli(sqlite_url, "restore", str(backup)) == 2
    err = capsys.readouterr().err
    assert "--yes" in err and "replaces the whole database" in err and "Stop" in err

    # Not a SQLite file, a SQLite file of something else, a damaged one, a missing one.
    text = tmp_path / "notes.txt"
    text.write_text("hello", encoding="utf-8")
    other = tmp_path / "other.db"
    with contextlib.closing(sqlite3.connect(other)) as conn:
        conn.execute("CREATE TABLE t (x)")
        conn.commit()
    damaged = tmp_path / "damaged.db"
    damaged.write_bytes(backup.read_bytes()[:100] + b"\xff" * 5000)
    for bad, message in [(text, "is not a SQLite database"),
                         (other, "has no member table"),
                         (damaged, str(damaged)),
                         (tmp_path / "missing.db", "no file")]:
        with pytest.raises(ops.OpsError) as refused:
            await ops.restore(sqlite_url, bad)
        assert refused.value.status == 2 and message in str(refused.value)
    assert await run_cli(sqlite_url, "restore", str(other), "--yes") == 2
    assert "has no member table" in capsys.readouterr().err
    assert db.read_bytes() == before
    assert sorted(p.name for p in db.parent.iterdir()) == ["memberbot.db"]

    # While the database is open elsewhere (the server running): refused.
    async with open_bot(config_for(sqlite_url), scheduler=False):
        with pytest.raises(ops.OpsError) as busy:
            await ops.restore(sqlite_url, backup)
        assert busy.value.status == 1 and "stop memberbot serve" in str(busy.value)
    assert not list(db.parent.glob("*.before-restore-*"))

    # The real thing.
    assert await run_cli(sqlite_url, "restore", str(backup), "--yes") == 0
    out = capsys.readouterr().out
    [aside] = db.parent.glob("memberbot.db.before-restore-*")
    assert f"kept as {aside}" in out
    assert not exists(f"{db}-wal") and not exists(f"{db}-shm")
    assert not list(db.parent.glob("*.restore-*"))
    assert sqlite_rows(aside, "SELECT id FROM member ORDER BY id") == [
        (first.id,), (second.id,), (later.id,)]
    async with open_bot(config_for(sqlite_url), scheduler=False) as bot:
        assert await Member.all().order_by("id").values_list("id", flat=True) == [first.id,
                                                                                  second.id]
        assert (await members.find_by_phone(bot, "13800138002")).card_no == second.card_no
        # The restored database is a working one.
        assert (await register(bot, "13800138004")).id


async def test_no_card_number_is_issued_twice_after_a_restore(sqlite_url, tmp_path, run_cli,
                                                               capsys):
    """Cards issued after the backup are in people's hands: after restoring that backup, the
    next member must not get one of their numbers."""
    async with open_bot(config_for(sqlite_url), scheduler=False) as bot:
        issued = [(await register(bot, f"1380013800{i}")).card_no for i in (1, 2)]
        backup, _ = await ops.backup(sqlite_url, tmp_path / "old.db")
        issued += [(await register(bot, f"1380013800{i}")).card_no for i in (3, 4)]
    assert await run_cli(sqlite_url, "restore", str(backup), "--yes") == 0
    capsys.readouterr()
    async with open_bot(config_for(sqlite_url), scheduler=False) as bot:
        assert await Member.all().count() == 2  # the backup's members
        carried = await CardSerial.get(id=4)  # the high-water mark, a row like the others
        assert abs(carried.issued_at - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=1)
        again = [(await register(bot, f"1390013900{i}")).card_no for i in (1, 2, 3)]
    assert not set(again) & set(issued), (issued, again)
    assert again[0] == card_number("88", 5)  # right after the highest ever issued


async def test_restore_over_an_unreadable_database_asks_for_the_last_card(sqlite_url, tmp_path,
                                                                          run_cli, capsys):
    async with open_bot(config_for(sqlite_url), scheduler=False) as bot:
        await register(bot, "13800138001")
        backup, _ = await ops.backup(sqlite_url, tmp_path / "old.db")
    db = ops.sqlite_path(sqlite_url)
    db.write_bytes(b"\0" * 4096)  # the disk ate it: no telling which numbers it issued
    assert await run_cli(sqlite_url, "restore", str(backup), "--yes") == 1
    assert "--last-card" in capsys.readouterr().err
    assert db.read_bytes() == b"\0" * 4096  # untouched
    for wrong in ("8800000099", "99000000501", "88abc"):
        assert await run_cli(sqlite_url, "restore", str(backup), "--yes",
                             "--last-card", wrong) == 2
        assert "--last-card" in capsys.readouterr().err
    last = card_number("88", 41)
    assert await run_cli(sqlite_url, "restore", str(backup), "--yes", "--last-card", last) == 0
    async with open_bot(config_for(sqlite_url), scheduler=False) as bot:
        assert (await register(bot, "13800138002")).card_no == card_number("88", 42)


async def test_restore_of_a_database_without_card_serials_still_works(sqlite_url, tmp_path,
                                                                      run_cli, capsys):
    """A database from before card serials (no card_serial table) neither blocks the restore
    nor breaks it."""
    async with open_bot(config_for(sqlite_url), scheduler=False) as bot:
        await register(bot, "13800138001")
        backup, _ = await ops.backup(sqlite_url, tmp_path / "old.db")
    with contextlib.closing(sqlite3.connect(backup)) as conn:
        conn.execute("DROP TABLE card_serial")
        conn.commit()
    assert await run_cli(sqlite_url, "restore", str(backup), "--yes") == 0, \
        capsys.readouterr().err
    assert sqlite_rows(ops.sqlite_path(sqlite_url), "SELECT count(*) FROM member") == [(1,)]


# --- export ---

async def test_export_writes_excel_friendly_csv_without_erased_members(db_url, tmp_path):
    async with open_bot(config_for(db_url), scheduler=False) as bot:
        wang = await register(bot, "13800138001", "王小明", Birthday(5, 1, 1990))
        li = await register(bot, "13800138002", "=HYPERLINK(\"x\")", Birthday(2, 29))
        gone = await register(bot, "13800138003", "赵六")
        zhou = await register(bot, "13800138004", "周女士")
        await privacy.erase(bot, gone)
        await wallet.top_up(bot, zhou, 12345, actor=Actor.cli(), key="t1")
        zhou = await Member.get(id=zhou.id)
        result = await ops.export_members_to(bot, str(tmp_path / "out" / "members.csv"))
    assert result == ops.ExportResult(count=3, batches=1)
    raw = (tmp_path / "out" / "members.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    assert not (tmp_path / "out" / "members.csv.part").exists()
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"), newline="")))
    assert rows[0] == list(ops.EXPORT_COLUMNS)
    by_phone = {row[1]: dict(zip(rows[0], row, strict=True)) for row in rows[1:]}
    assert set(by_phone) == {"13800138001", "13800138002", "13800138004"}
    first = by_phone["13800138001"]
    registered = dt.datetime.fromisoformat(first["registered_at"])
    assert registered.utcoffset() == dt.timedelta(hours=8)  # Asia/Shanghai
    assert abs(registered - wang.registered_at) < dt.timedelta(seconds=1)
    assert first | {"registered_at": ""} == {
        "card_no": wang.card_no, "phone": "13800138001", "name": "王小明",
        "birthday": "1990-05-01", "tier": "普通会员", "points": "100", "stored_value": "0.00",
        "store": "S001", "registered_at": ""}
    # A name Excel would run as a formula gets an apostrophe; a birthday without year is MM-DD.
    assert by_phone["13800138002"]["name"] == "'=HYPERLINK(\"x\")"
    assert by_phone["13800138002"]["birthday"] == "02-29"
    assert by_phone["13800138002"]["card_no"] == li.card_no
    assert by_phone["13800138004"]["stored_value"] == f"{zhou.stored_value / 100:.2f}"
    assert by_phone["13800138004"]["birthday"] == ""


async def test_export_streams_2500_members_in_batches_of_1000(db_url, run_cli, capsys):
    async with open_bot(config_for(db_url), scheduler=False) as bot:
        vault = bot.vault
        await Member.bulk_create([
            Member(card_no=f"77{i:08d}", phone_hash=vault.lookup_hash(f"137{i:08d}"),
                   phone_enc=vault.encrypt(f"137{i:08d}"), name=f"会员{i}", tier="普通会员",
                   points=i % 7)
            for i in range(2500)], batch_size=500)
        sink = io.BytesIO()
        result = await ops.export_members(bot, sink)
    assert result == ops.ExportResult(count=2500, batches=3)
    rows = list(csv.reader(io.StringIO(sink.getvalue().decode("utf-8-sig"), newline="")))[1:]
    assert [row[1] for row in rows] == [f"137{i:08d}" for i in range(2500)]
    assert [row[5] for row in rows[:8]] == ["0", "1", "2", "3", "4", "5", "6", "0"]

    # The CLI: CSV on stdout, the count on stderr.
    assert await run_cli(db_url, "export", "members", "--format", "csv") == 0
    out, err = capsys.readouterr()
    assert err.strip() == "Exported 2500 members to stdout (csv)."
    assert out.startswith("\ufeffcard_no,phone,") and out.count("\n") == 2501


# --- import ---

HEADER = ["phone", "name", "birthday", "card_no", "points", "stored_value", "tier", "store",
          "registered_at"]
CLEAN = [
    HEADER,
    ["+86 138-0013-8001", "王小明", "1990/5/1", "100234", "250", "¥88.50", "银卡会员", "S002",
     "2020-03-01 10:00:00"],
    ["13800138002", "李四", "5月1日", "", "0", "", "", "", ""],
    ["13800138003", "", "", "", "", "0", "普通会员", "S001", "2021-06-01T08:00:00+08:00"],
    ["１３８００１３８００４", "'=SUM(A1)", "0229", "66600012345678", "1200", "1000", "", "", ""],
]


async def test_a_clean_file_imports_everything_through_the_ledgers(db_url, tmp_path):
    path = write_csv(tmp_path / "old.csv", CLEAN)
    async with open_bot(config_for(db_url), scheduler=False) as bot:
        result = await ops.import_members(bot, path)
        assert (result.rows, result.imported, result.already_there, result.problems) == (
            4, 4, 0, [])
        assert result.unchecked_cards == 2  # 100234 and 66600012345678 have no Luhn digit
        by_phone = {members.phone_of(bot, m): m for m in await Member.all()}
        assert set(by_phone) == {"13800138001", "13800138002", "13800138003", "13800138004"}
        wang = by_phone["13800138001"]
        assert (wang.card_no, wang.name, wang.birth_year, wang.birth_month, wang.birth_day) == (
            "100234", "王小明", 1990, 5, 1)
        assert (wang.points, wang.stored_value, wang.tier, wang.tier_floor) == (
            250, 8850, "银卡会员", "银卡会员")  # an imported tier is kept as a floor
        assert (await wang.store).code == "S002"
        assert wang.registered_at == dt.datetime(2020, 3, 1, 2, 0, tzinfo=dt.UTC)
        li = by_phone["13800138002"]
        assert (li.birth_year, li.birth_month, li.birth_day, li.points, li.stored_value) == (
            None, 5, 1, 0, 0)
        assert (li.tier, li.tier_floor, (await li.store).code) == ("普通会员", None, "S001")
        assert li.card_no == card_number("88", 1)  # allocated like any new card
        assert by_phone["13800138003"].card_no == card_number("88", 2)
        assert by_phone["13800138003"].registered_at == dt.datetime(2021, 6, 1, 0, 0,
                                                                    tzinfo=dt.UTC)
        last = by_phone["13800138004"]
        assert (last.name, last.card_no, last.points, last.stored_value) == (
            "=SUM(A1)", "66600012345678", 1200, 100000)
        assert await CardSerial.all().count() == 2
        for member in by_phone.values():
            points, entries, lots = await loyalty.check_invariant(member.id)
            assert points == entries == lots == member.points
            assert member.stored_value == await stored_value_sum(member.id)
            assert await Follower.filter(member_id=member.id).count() == 0  # no WeChat yet
        [entry] = await PointsEntry.filter(member_id=wang.id)
        assert (entry.kind, entry.reason, entry.idempotency_key) == (
            "adjust", "迁移导入", f"import:{wang.id}:points")
        assert entry.expires_on is not None  # expire like points earned today
        [topup] = await StoredValueEntry.filter(member_id=wang.id)
        assert (topup.kind, topup.reason, topup.delta, topup.balance_after) == (
            "topup", "迁移导入", 8850, 8850)
        assert await AuditEntry.filter(action="import_member", actor="cli").count() == 4
        assert await PointsEntry.filter(member_id=li.id).count() == 0  # no zero entries


async def test_one_bad_row_imports_nothing_and_is_reported_with_the_phone_masked(
        db_url, tmp_path, run_cli, capsys):
    rows = [*CLEAN[:3], ["1380013800", "张三", "", "", "", "", "", "", ""], *CLEAN[3:]]
    path = write_csv(tmp_path / "old.csv", rows)
    async with open_bot(config_for(db_url), scheduler=False) as bot:
        result = await ops.import_members(bot, path)
    assert result.problems == [ops.Problem(4, "phone", "not a mainland mobile number",
                                           "138****3800")]
    assert await run_cli(db_url, "import", "members", str(path)) == 1
    out, err = capsys.readouterr()
    assert "nothing was imported" in err and "1380013800" not in err + out
    assert "row 4, phone: not a mainland mobile number (138****3800)" in err
    async with open_bot(config_for(db_url), scheduler=False):
        assert await Member.all().count() == 0
        assert await CardSerial.all().count() == 0
        assert await PointsEntry.all().count() == 0
        assert await StoredValueEntry.all().count() == 0


async def test_every_kind_of_bad_row_is_reported(db_url, tmp_path):
    async with open_bot(config_for(db_url), scheduler=False) as bot:
        taken = await register(bot, "13900139000")
        own_format = card_number("88", 500)
        rows = [
            HEADER,
            ["13800138001", "", "", "123456", "", "", "", "", ""],
            ["13800138001", "", "", "", "", "", "", "", ""],  # 3: same phone as row 2
            ["", "没有手机", "", "", "", "", "", "", ""],  # 4
            ["13800138004", "", "1990-13-01", "", "-5", "12.345", "黑卡会员", "S999", ""],
            ["13800138005", "", "", "12AB56", "abc", "-1", "", "", "2999-01-01"],
            ["13800138006", "", "", "123456", "", "", "", "", "yesterday"],  # card of row 2
            ["13800138007", "", "", taken.card_no, "", "", "", "", ""],  # another member's
            ["13800138008", "", "", own_format, "", "", "", "", ""],  # a number we will issue
            ["13800138009", "名" * 33, "", "", "", "", "", "", "", "extra"],
        ]
        result = await ops.import_members(bot, write_csv(tmp_path / "bad.csv", rows))
        assert await Member.all().count() == 1
    found = {(p.row, p.column) for p in result.problems}
    assert found == {
        (3, "phone"), (4, "phone"), (5, "birthday"), (5, "points"), (5, "stored_value"),
        (5, "tier"), (5, "store"), (6, "card_no"), (6, "points"), (6, "stored_value"),
        (6, "registered_at"), (7, "card_no"), (7, "registered_at"), (8, "card_no"),
        (9, "card_no"), (10, "name"), (10, "cells")}
    messages = {(p.row, p.column): str(p) for p in result.problems}
    assert messages[(3, "phone")] == "row 3, phone: same phone as row 2 (138****8001)"
    assert messages[(4, "phone")] == "row 4, phone: missing"
    assert "same card number as row 2" in messages[(7, "card_no")]
    assert "another member" in messages[(8, "card_no")]
    assert "card numbers memberbot issues" in messages[(9, "card_no")]
    assert "普通会员" in messages[(5, "tier")] and "S001" in messages[(5, "store")]
    assert "in the future" in messages[(6, "registered_at")]
    assert [p.row for p in result.problems] == sorted(p.row for p in result.problems)


async def test_running_the_same_file_again_imports_nothing_twice(db_url, tmp_path, run_cli,
                                                                 capsys):
    path = write_csv(tmp_path / "old.csv", CLEAN)
    assert await run_cli(db_url, "import", "members", str(path)) == 0
    out, err = capsys.readouterr()
    assert out.startswith("Imported 4 members from") and "0 were already there" in out
    assert "导入 4/4" in err  # not a terminal: a plain progress line
    assert await run_cli(db_url, "import", "members", str(path)) == 0
    out, _ = capsys.readouterr()
    assert out.startswith("Imported 0 members from") and "4 were already there" in out
    async with open_bot(config_for(db_url), scheduler=False):
        assert await Member.all().count() == 4
        assert await PointsEntry.all().count() == 2
        assert await StoredValueEntry.all().count() == 2
        assert await AuditEntry.filter(action="import_member").count() == 4


async def test_a_rerun_after_a_crash_finishes_the_import(db_url, tmp_path, monkeypatch):
    rows = [HEADER] + [[f"1380013{i:04d}", f"会员{i}", "", "", str(i), "1.00", "", "", ""]
                       for i in range(1, 8)]
    path = write_csv(tmp_path / "old.csv", rows)
    real = members_csv._import_batch
    calls = 0

    async def crashing(*args, **kwargs):
        nonlocal calls
        calls += 1
        if calls == 3:
            raise RuntimeError("power cut")
        return await real(*args, **kwargs)

    async with open_bot(config_for(db_url), scheduler=False) as bot:
        monkeypatch.setattr(members_csv, "_import_batch", crashing)
        with pytest.raises(RuntimeError):
            await ops.import_members(bot, path, batch=3)
        assert await Member.all().count() == 6  # two whole batches, nothing of the third
        monkeypatch.setattr(members_csv, "_import_batch", real)
        result = await ops.import_members(bot, path, batch=3)
        assert (result.imported, result.already_there) == (1, 6)
        assert await Member.all().count() == 7
        for member in await Member.all():
            assert await loyalty.check_invariant(member.id) == (member.points,) * 3
            assert member.stored_value == 100 == await stored_value_sum(member.id)


async def test_a_phone_registered_in_chat_during_the_import_is_skipped(db_url, tmp_path,
                                                                       monkeypatch):
    """Someone registers between the check and the insert: the batch rolls back as a whole and
    runs again, and that phone counts as already there."""
    rows = [HEADER] + [[f"1380013{i:04d}", "", "", "", "10", "", "", "", ""] for i in range(4)]
    path = write_csv(tmp_path / "old.csv", rows)
    real = members_csv._existing_phones
    calls = 0

    async def racing(batch_rows):
        nonlocal calls
        calls += 1
        if calls == 1:  # the validation's check: then the phone is registered in chat ...
            found = await real(batch_rows)
            await register(bot, "13800130002", "抢先注册")
            return found
        if calls == 2:  # ... and the batch's own check misses it (it committed just after)
            return set()
        return await real(batch_rows)

    async with open_bot(config_for(db_url), scheduler=False) as bot:
        monkeypatch.setattr(members_csv, "_existing_phones", racing)
        result = await ops.import_members(bot, path)
        assert (result.imported, result.already_there) == (3, 1)
        assert calls == 3  # the batch hit the unique phone, rolled back and ran again
        assert await Member.all().count() == 4
        assert (await members.find_by_phone(bot, "13800130002")).name == "抢先注册"
        assert await AuditEntry.filter(action="import_member").count() == 3
        assert await PointsEntry.filter(reason="迁移导入").count() == 3


async def test_an_imported_member_links_when_registering_in_chat(harness, tmp_path):
    phone = "13800138077"
    path = write_csv(tmp_path / "old.csv", [HEADER, [phone, "老会员", "1985-10-01", "5501234",
                                                     "300", "50", "金卡会员", "", ""]])
    result = await ops.import_members(harness.bot, path)
    assert result.imported == 1
    member = await Member.get(card_no="5501234")
    await harness.post(wire.event("o_old", "subscribe", "qrscene_store:S001"))
    await harness.say("o_old", "同意")
    await harness.say("o_old", phone)
    reply = await harness.say("o_old", harness.sms_codes(phone)[-1])
    assert "已找到您" in reply and "5501234" in reply and "300" in reply
    assert (await Follower.get(openid="o_old")).member_id == member.id
    linked = await Member.get(id=member.id)
    assert (linked.card_no, linked.points, linked.stored_value, linked.tier) == (
        "5501234", 300, 5000, "金卡会员")
    assert await Member.all().count() == 1
    assert "5501234" in await harness.say("o_old", "积分")


async def test_dry_run_validates_and_writes_nothing(db_url, tmp_path, run_cli, capsys):
    path = write_csv(tmp_path / "old.csv", CLEAN)
    async with open_bot(config_for(db_url), scheduler=False) as bot:
        await register(bot, "13800138002")
        result = await ops.import_members(bot, path, dry_run=True)
        assert (result.dry_run, result.imported, result.already_there) == (True, 3, 1)
        assert await Member.all().count() == 1
    assert await run_cli(db_url, "import", "members", str(path), "--dry-run") == 0
    out, _ = capsys.readouterr()
    assert out.strip() == ("Dry run: all 4 rows are valid; 3 would be imported, 1 are already "
                           "there. Nothing was written.")
    async with open_bot(config_for(db_url), scheduler=False):
        assert await Member.all().count() == 1
        assert await AuditEntry.filter(action="import_member").count() == 0


async def test_file_level_problems_exit_2(db_url, tmp_path, run_cli, capsys):
    cases = [
        (write_csv(tmp_path / "a.csv", [["phone", "points", "balance"]]), "unknown column"),
        (write_csv(tmp_path / "b.csv", [["name"], ["王"]]), "no phone column"),
        (write_csv(tmp_path / "c.csv", [["phone", "Phone"]]), "appears twice"),
        (tmp_path / "missing.csv", "no file"),
    ]
    for path, message in cases:
        assert await run_cli(db_url, "import", "members", str(path)) == 2
        assert message in capsys.readouterr().err


async def test_a_gbk_file_from_excel_and_an_export_round_trip(db_url, tmp_path):
    # Excel on Chinese Windows: GBK, and an unnamed trailing column that must stay empty.
    gbk = write_csv(tmp_path / "gbk.csv", [["phone", "name", ""], ["13800138001", "王小明", ""],
                                           ["13800138002", "李四"]], encoding="gbk")
    async with open_bot(config_for(db_url), scheduler=False) as bot:
        assert (await ops.import_members(bot, gbk)).imported == 2
        assert await Member.filter(name__in=["王小明", "李四"]).count() == 2
        unnamed = write_csv(tmp_path / "unnamed.csv", [["phone", ""], ["13800138003", "x"]])
        assert [str(p) for p in (await ops.import_members(bot, unnamed)).problems] == [
            "row 2, cells: a value in a column without a name in the header"]
        # An export imports into the same shop as "already there", whatever its card numbers.
        exported = tmp_path / "export.csv"
        await ops.export_members_to(bot, str(exported))
        again = await ops.import_members(bot, exported)
        assert (again.problems, again.imported, again.already_there) == ([], 0, 2)


def test_progress_bar_on_a_terminal_and_lines_in_a_log():
    class Stream(io.StringIO):
        def __init__(self, tty: bool):
            super().__init__()
            self.tty = tty

        def isatty(self) -> bool:
            return self.tty

    log = Stream(tty=False)
    progress = ops.Progress(log)
    for done in (500, 1000, 1500, 2000, 2200):
        progress.update(done, 2200)
    progress.close()
    assert log.getvalue() == "导入 1000/2200\n导入 2000/2200\n导入 2200/2200\n"

    term = Stream(tty=True)
    progress = ops.Progress(term)
    progress.update(1200, 5000)
    progress.update(5000, 5000)
    progress.close()
    assert term.getvalue() == ("\r导入 1200/5000 [####................] 24%"
                               "\r导入 5000/5000 [####################] 100%\n")
