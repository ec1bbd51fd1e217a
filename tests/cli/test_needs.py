"""What each command needs from the configuration, checked once in main(): commands that only
read or write the database run without WeChat secrets, and `--sandbox` points every command at
the database and key `memberbot sandbox` keeps in data/."""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path

import pytest

from bot import cli
from bot.config import load_config
from bot.infra.vault import new_data_key
from bot.models import Campaign, Member, Purchase, Staff
from bot.runtime import open_bot
from bot.sandbox.crowd import CROWD_SIZE
from bot.sandbox.runner import sandbox_config, seed_demo
from tests.cli.test_cli import leaves

ROOT = Path(__file__).resolve().parents[2]
SANDBOX_PHONE = "13900139001"  # a demo member the sandbox seeds


@pytest.fixture
def shop(tmp_path, monkeypatch) -> Path:
    """A fresh folder with the repo's config.toml on a SQLite file and only the data key in the
    environment: no WeChat secrets at all, as on the owner's laptop."""
    for key in [k for k in os.environ if k.startswith("MEMBERBOT_")]:
        monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    text = (ROOT / "config.toml").read_text(encoding="utf-8")
    text, found = re.subn(r'(?m)^url = "sqlite://data/memberbot.db"$',
                          f'url = "sqlite://{tmp_path}/shop.db"', text)
    assert found == 1
    (tmp_path / "config.toml").write_text(text, encoding="utf-8")
    monkeypatch.setenv("MEMBERBOT_SECURITY_DATA_KEY", new_data_key())
    monkeypatch.setenv("MEMBERBOT_SCHEDULER_ENABLED", "false")
    return tmp_path


async def run(*argv: str) -> int:
    # In a thread: main() runs its own event loop.
    return await asyncio.to_thread(cli.main, list(argv))


def test_every_command_declares_what_it_needs():
    for leaf in leaves(cli.parser()):
        assert leaf.get_default("needs") in cli.NEEDS, leaf.prog


@pytest.mark.parametrize("argv", [
    ["staff", "list"],
    ["staff", "invite", "--store", "S001", "--role", "clerk"],
    ["staff", "revoke", "1"],
    ["audit"],
    ["export", "members", "--to", "members.csv"],
    ["purchase", "13800138000", "10"],
    ["coupon", "template", "list"],
    ["coupon", "issue", "--template", "NONE", "--segment", "all"],
    ["security", "rotate-key"],
    ["menu", "show"],
    ["jobs", "list"],
])
async def test_database_commands_do_not_ask_for_wechat_secrets(shop, capsys, argv):
    status = await run(*argv)
    err = capsys.readouterr().err
    assert "configuration error" not in err and "wechat" not in err.lower(), err
    # Refusals of the command's own (no such member, staff or template) are fine.
    assert status in (0, 1, 2), err


async def test_backup_needs_neither_secrets_nor_the_data_key(shop, capsys, monkeypatch):
    assert await run("staff", "list") == 0  # makes the database
    monkeypatch.delenv("MEMBERBOT_SECURITY_DATA_KEY")
    assert await run("backup", "--to", "copy.db") == 0, capsys.readouterr().err
    assert (shop / "copy.db").is_file()


async def test_a_missing_data_key_names_the_variable_and_the_sandbox(shop, capsys, monkeypatch):
    monkeypatch.delenv("MEMBERBOT_SECURITY_DATA_KEY")
    assert await run("staff", "list") == 2
    [line] = capsys.readouterr().err.splitlines()
    assert "MEMBERBOT_SECURITY_DATA_KEY" in line and "memberbot --sandbox staff" in line
    assert "config.toml" not in line


async def test_menu_push_and_serve_still_need_wechat(shop, capsys):
    assert await run("menu", "push") == 2
    assert "MEMBERBOT_WECHAT_APP_ID" in capsys.readouterr().err
    assert await run("serve") == 2
    assert "MEMBERBOT_WECHAT_APP_ID" in capsys.readouterr().err


# --- --sandbox ---

async def start_sandbox_database(folder: Path) -> None:
    """What `memberbot sandbox` leaves in data/ (its database, key and demo data), without
    its servers."""
    config = sandbox_config(load_config(folder / "config.toml"), folder / "data")
    async with open_bot(config, scheduler=False):
        await seed_demo(config)


async def test_sandbox_commands_use_the_sandboxs_database_and_key(shop, capsys):
    await start_sandbox_database(shop)
    assert await run("--sandbox", "staff", "invite", "--store", "S001", "--role", "clerk",
                     "--name", "小李") == 0
    code = capsys.readouterr().out.strip().splitlines()[-1]
    assert await run("--sandbox", "staff", "list") == 0
    out = capsys.readouterr().out
    assert "小王" in out  # the sandbox's demo manager
    assert await run("--sandbox", "purchase", SANDBOX_PHONE, "12.50") == 0
    assert "recorded: ¥12.50" in capsys.readouterr().out
    assert await run("--sandbox", "audit") == 0
    assert "purchase" in capsys.readouterr().out
    assert await run("--sandbox", "export", "members", "--to", "members.csv") == 0
    assert SANDBOX_PHONE in (shop / "members.csv").read_text(encoding="utf-8-sig")
    assert await run("--sandbox", "backup") == 0
    assert list((shop / "data" / "backups").glob("sandbox-*.db"))
    capsys.readouterr()
    assert await run("--sandbox", "broadcast", "create", "--segment", "tier:金卡会员",
                     "--text", "会员日全场9折") == 0
    campaign_id = capsys.readouterr().out.strip()
    assert await run("--sandbox", "broadcast", "preview", campaign_id) == 0
    found = re.search(r"(\d+) members in the segment", capsys.readouterr().out)
    assert found and int(found[1]) > 0  # the demo crowd's gold members
    # All of it went to data/sandbox.db, none to the shop's own database.
    config = sandbox_config(load_config(shop / "config.toml"), shop / "data")
    async with open_bot(config, scheduler=False):
        assert await Purchase.exclude(idempotency_key__startswith="sandbox-crowd:").count() == 1
        assert await Member.all().count() == 3 + CROWD_SIZE
        assert await Staff.filter(name="小王").exists()
        assert await Campaign.filter(id=int(campaign_id)).exists()
    assert await run("staff", "list") == 0
    assert "No staff yet" in capsys.readouterr().out
    assert code


async def test_sandbox_commands_before_the_sandbox_ran_say_so(shop, capsys):
    assert await run("--sandbox", "staff", "list") == 1
    [line] = capsys.readouterr().err.splitlines()
    assert "no sandbox database" in line and "memberbot sandbox" in line
    assert not (shop / "data" / "sandbox.db").exists()
