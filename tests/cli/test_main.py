"""What bot.cli.main does for every command: it waits for a SQLite write lock another process
holds and says in one line when it could not; start-up writes nothing that is already in the
database; only the long-running commands log INFO; a reader that stops reading (`| head`) is
no error."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
from pathlib import Path

import pytest

from bot import cli
from bot.infra.db import OperationalError
from bot.infra.vault import new_data_key
from bot.models import CouponTemplate, JobRun, Store
from bot.runtime import open_bot
from tests.cli import test_staff
from tests.cli.test_staff import output, shop_db
from tests.support import WriteLock, make_config

cli_config, run_cli = test_staff.cli_config, test_staff.run_cli  # fixtures
ROOT = Path(__file__).resolve().parents[2]
MEMBERBOT = ROOT / ".venv" / "bin" / "memberbot"


async def test_a_command_waits_for_another_connections_write_lock_and_succeeds(
        run_cli, capsys, db_url):
    if not db_url.startswith("sqlite://"):
        pytest.skip("a SQLite file's write lock")
    async with shop_db(db_url):  # the schema and config rows exist, as after any first start
        pass
    path = db_url.removeprefix("sqlite://")
    for argv in (("jobs", "run", "purge"), ("broadcast", "list"), ("jobs", "list")):
        with WriteLock(path) as lock:
            command = asyncio.create_task(run_cli(*argv))
            await asyncio.sleep(1)  # the lock is held for a second while the command runs
            lock.release.set()
            assert await command == 0, (argv, output(capsys))
        err = output(capsys)[1]
        assert "Traceback" not in err and "locked" not in err
    async with shop_db(db_url):
        assert (await JobRun.get(job="purge")).status == "done"


def test_a_lock_held_too_long_is_one_line_not_a_traceback(capsys, monkeypatch):
    def locked(args, config):
        raise OperationalError("database is locked")

    monkeypatch.setattr(cli.jobs, "_run_list", locked)
    monkeypatch.setattr(cli, "command_config", lambda args: None)
    assert cli.main(["jobs", "list"]) == 1
    assert capsys.readouterr() == ("", "memberbot: the database is locked by another process "
                                       "(waited 5 s); run the command again\n")


async def test_start_up_writes_only_what_differs_from_the_database(db_url, stand_ins,
                                                                   monkeypatch):
    config = make_config(db_url, stand_ins)
    async with open_bot(config, scheduler=False):
        stores = dict(await Store.all().values_list("code", "name"))
        assert stores == {s.code: s.name for s in config.stores}
        assert await CouponTemplate.filter(code__in=[c.code for c in config.coupons]).count() \
            == len(config.coupons)
    writes: list[str] = []
    for model in (Store, CouponTemplate):
        real = model.update_or_create

        async def spy(*args, _real=real, _model=model, **kwargs):
            writes.append(f"{_model.__name__} {kwargs.get('code')}")
            return await _real(*args, **kwargs)

        monkeypatch.setattr(model, "update_or_create", spy)
    async with open_bot(config, scheduler=False):
        pass
    assert writes == []  # a second start (any command) reads and writes nothing

    code = config.stores[0].code
    async with open_bot(config, scheduler=False):
        await Store.filter(code=code).update(name="old name")
        await CouponTemplate.filter(code=config.coupons[0].code).update(stock=1)
    async with open_bot(config, scheduler=False):
        assert (await Store.get(code=code)).name == config.stores[0].name
        assert (await CouponTemplate.get(code=config.coupons[0].code)).stock == (
            config.coupons[0].stock or None)
    assert writes == [f"Store {code}", f"CouponTemplate {config.coupons[0].code}"]


@pytest.mark.parametrize(("command", "verbose", "level"), [
    ("broadcast", False, logging.WARNING), ("jobs", False, logging.WARNING),
    ("segment", False, logging.WARNING), ("broadcast", True, logging.DEBUG),
    ("serve", False, logging.INFO), ("worker", False, logging.INFO),
    ("sandbox", False, logging.INFO), ("chat", False, logging.INFO), ("serve", True, logging.DEBUG),
])
def test_only_the_long_running_commands_log_info(command, verbose, level):
    assert cli.log_level(command, verbose) == level


async def test_an_ordinary_command_logs_no_info_lines(run_cli, capsys, caplog):
    root = logging.getLogger()
    before = root.level
    try:
        assert await run_cli("broadcast", "create", "--segment", "all", "--text", "x") == 0
        campaign_id = output(capsys)[0].strip()
        caplog.clear()
        assert await run_cli("broadcast", "start", campaign_id) == 0
        assert output(capsys)[0] == f"Campaign {campaign_id}: running.\n"
        # The service logs the move at INFO (the server's log wants it); the shell says it once.
        assert [r.getMessage() for r in caplog.records if r.levelno < logging.WARNING] == []
        assert await run_cli("-v", "broadcast", "pause", campaign_id) == 0
        assert any("running → paused" in r.getMessage() for r in caplog.records), \
            [r.getMessage() for r in caplog.records]
    finally:
        root.setLevel(before)


def test_a_reader_that_stops_reading_is_no_error(tmp_path):
    """`memberbot … | head -1`: the pipe's reader is gone before the command writes."""
    env = {**os.environ, "MEMBERBOT_SECURITY_DATA_KEY": new_data_key(),
           "MEMBERBOT_DATABASE_URL": f"sqlite://{tmp_path}/cli.db"}
    read, write = os.pipe()
    os.close(read)
    try:
        done = subprocess.run([str(MEMBERBOT), "--config", str(ROOT / "config.toml"), "segment",
                               "count", "all"], stdout=write, stderr=subprocess.PIPE, env=env,
                              cwd=tmp_path, timeout=60, check=False)
    finally:
        os.close(write)
    assert done.stderr.decode() == ""
    assert done.returncode == 141
