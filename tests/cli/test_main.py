"""What bot.cli.main does for every command: it waits for a SQLite write lock another process
holds and says in one line when it could not; start-up writes nothing that is already in the
database."""

from __future__ import annotations

import asyncio

import pytest

from bot import cli
from bot.infra.db import OperationalError
from bot.models import CouponTemplate, JobRun, Store
from bot.runtime import open_bot
from tests.cli import test_staff
from tests.cli.test_staff import output, shop_db
from tests.support import WriteLock, make_config

cli_config, run_cli = test_staff.cli_config, test_staff.run_cli  # fixtures


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
