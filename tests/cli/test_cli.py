"""The CLI's WeChat-facing commands against the WeChat stand-in: `qrcode` and `menu`, plus
`security new-key`. The command functions are called directly with a test config; a refusal is
a CliError, which main() prints once."""

from __future__ import annotations

import argparse
import base64
import json
import math
import os
import subprocess
from pathlib import Path

import pytest
import qrcode
from PIL import Image
from qrcode.constants import ERROR_CORRECT_Q

from bot import cli
from bot.cli import menu as menu_cli
from bot.cli import qrcode as qrcode_cli
from bot.cli.common import CliError
from bot.config import ConfigError, load_config
from bot.infra.db import close_database, open_database
from bot.infra.vault import new_data_key
from bot.models import Store
from tests.support import APP_ID, APP_SECRET, make_config

ROOT = Path(__file__).resolve().parents[2]
MEMBERBOT = ROOT / ".venv" / "bin" / "memberbot"
QR_CREATE = "/cgi-bin/qrcode/create"


def qr_pixels_match(png: Path, url: str) -> bool:
    """Does the poster's code encode `url`? Rebuild the module matrix the way the poster does
    (error correction Q, modules of ceil(1000 / n) px, centred), find the code's top edge below
    the title and sample the centre of every module."""
    qr = qrcode.QRCode(error_correction=ERROR_CORRECT_Q, border=0)
    qr.add_data(url)
    qr.make(fit=True)
    matrix = qr.get_matrix()
    box = math.ceil(1000 / len(matrix))
    with Image.open(png) as image:
        grey = image.convert("L")
    left = (grey.width - len(matrix) * box) // 2
    column = left + box // 2
    tops = [y for y in range(box, grey.height - len(matrix) * box)
            if grey.getpixel((column, y)) < 128 <= grey.getpixel((column, y - 1))]
    return any(all((grey.getpixel((left + c * box + box // 2, top + r * box + box // 2)) < 128)
                   == dark for r, cells in enumerate(matrix) for c, dark in enumerate(cells))
               for top in tops)


def assert_png(path: Path) -> tuple[int, int]:
    assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG"
        width, height = image.size
        assert image.info["dpi"] == pytest.approx((300, 300), abs=0.01)
    # a 1000 px code (8.5 cm at 300 dpi) with the shop's name above and a caption below
    assert 1000 <= width <= 1400 and height > width
    return width, height


def records(stand_ins):
    return list(stand_ins.wechat.qrcodes.values())


# --- qrcode ---

async def test_permanent_store_poster(db_url, stand_ins, tmp_path, capsys):
    config = make_config(db_url, stand_ins)
    out = tmp_path / "posters" / "poster.png"  # the folder is created
    await qrcode_cli.qrcode(config, "store:S001", out, False, 2_592_000, None)
    assert_png(out)
    [record] = records(stand_ins)
    assert record.action_name == "QR_LIMIT_STR_SCENE"
    assert record.scene == "store:S001"
    assert record.scene_lost is False
    assert record.permanent and record.expire_seconds is None
    assert "expire_seconds" not in record.raw
    assert qr_pixels_match(out, record.url)
    assert not qr_pixels_match(out, record.url + "x")  # the check can fail
    assert "permanent" in capsys.readouterr().out


async def test_temporary_poster(db_url, stand_ins, tmp_path, capsys):
    config = make_config(db_url, stand_ins)
    out = tmp_path / "poster.png"
    await qrcode_cli.qrcode(config, "staff:7", out, True, 3600, "扫码领券")
    assert_png(out)
    [record] = records(stand_ins)
    assert record.action_name == "QR_STR_SCENE"
    assert record.expire_seconds == 3600
    assert record.scene == "staff:7" and record.scene_lost is False
    assert qr_pixels_match(out, record.url)
    assert "temporary (3600 s)" in capsys.readouterr().out


async def test_longest_temporary_expiry_is_accepted(db_url, stand_ins, tmp_path):
    config = make_config(db_url, stand_ins)
    await qrcode_cli.qrcode(config, "ref:8800000013", tmp_path / "p.png", True,
                            qrcode_cli.MAX_TEMPORARY_EXPIRE, None)
    assert records(stand_ins)[0].expire_seconds == 2_592_000


@pytest.mark.parametrize("expire", [2_592_001, 59, 0, -1])
async def test_temporary_expiry_out_of_range_is_refused(db_url, stand_ins, tmp_path, expire):
    config = make_config(db_url, stand_ins)
    out = tmp_path / "poster.png"
    with pytest.raises(CliError, match="--expire") as refused:
        await qrcode_cli.qrcode(config, "store:S001", out, True, expire, None)
    assert refused.value.status == 2
    assert not out.exists()
    assert not stand_ins.wechat.calls  # not even a token was fetched


@pytest.mark.parametrize("scene", [
    "foo",
    "store:",
    "shop:S001",
    "store:S 001",
    "store:门店",
    "store:" + "A" * 59,  # 65 characters
    "ref:" + "1" * 70,
    "",
])
async def test_bad_scene_is_refused(db_url, stand_ins, tmp_path, scene):
    config = make_config(db_url, stand_ins)
    out = tmp_path / "poster.png"
    with pytest.raises(CliError, match="--scene") as refused:
        await qrcode_cli.qrcode(config, scene, out, False, 2_592_000, None)
    assert refused.value.status == 2
    assert not out.exists()
    assert not stand_ins.wechat.calls


async def test_wechat_refusing_the_qrcode_is_exit_1(db_url, stand_ins, tmp_path):
    config = make_config(db_url, stand_ins)
    stand_ins.wechat.fail_next(QR_CREATE, 45009)
    out = tmp_path / "poster.png"
    with pytest.raises(CliError, match="45009") as refused:
        await qrcode_cli.qrcode(config, "store:S001", out, False, 2_592_000, None)
    assert refused.value.status == 1
    assert not out.exists()


def test_main_prints_a_refusal_once_on_stderr_with_its_status(tmp_path, capsys, monkeypatch):
    """Every command refuses the same way: main() prints one `memberbot: <message>` line on
    stderr and exits with the refusal's status; nothing goes to stdout."""
    out = tmp_path / "poster.png"
    # qrcode calls WeChat: with its credentials set, the refusal is the scene's.
    monkeypatch.setenv("MEMBERBOT_WECHAT_APP_ID", APP_ID)
    monkeypatch.setenv("MEMBERBOT_WECHAT_APP_SECRET", APP_SECRET)
    monkeypatch.setenv("MEMBERBOT_SECURITY_DATA_KEY", new_data_key())
    status = cli.main(["--config", str(ROOT / "config.toml"), "qrcode", "--scene", "foo",
                       "-o", str(out)])
    assert status == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        "memberbot: --scene must look like store:S001, staff:<id> or ref:<card_no> (at most 64 "
        "characters, letters, digits, _ and -)"]
    assert not out.exists()


@pytest.fixture
def posters(monkeypatch):
    """What render_poster was asked to draw: (url, caption, subcaption) per call."""
    calls = []
    real = qrcode_cli.render_poster

    def spy(url, caption, subcaption="", **extra):
        calls.append((url, caption, subcaption))
        return real(url, caption, subcaption, **extra)

    monkeypatch.setattr(qrcode_cli, "render_poster", spy)
    return calls


async def test_caption_defaults_to_the_store_name(db_url, stand_ins, tmp_path, posters):
    config = make_config(db_url, stand_ins)
    await open_database(db_url)
    try:
        await Store.create(code="S001", name="示例门店·总店")
    finally:
        await close_database()
    await qrcode_cli.qrcode(config, "store:S001", tmp_path / "a.png", False, 2_592_000, None)
    await qrcode_cli.qrcode(config, "store:S999", tmp_path / "b.png", False, 2_592_000, None)
    await qrcode_cli.qrcode(config, "staff:7", tmp_path / "c.png", False, 2_592_000, "自定义")
    assert [(caption, sub) for _, caption, sub in posters] == [
        ("示例门店·总店 扫码加入会员", ""),
        (f"{config.shop.name} 扫码加入会员", ""),
        ("自定义", ""),
    ]
    assert [url for url, _, _ in posters] == [r.url for r in records(stand_ins)]


@pytest.mark.parametrize(("expire", "subcaption"), [
    (60, "1 小时内有效"),
    (3600, "1 小时内有效"),
    (86_400, "24 小时内有效"),
    (90_000, "25 小时内有效"),
    (172_800, "2 天内有效"),
    (2_592_000, "30 天内有效"),
])
async def test_temporary_subcaption(db_url, stand_ins, tmp_path, posters, expire, subcaption):
    config = make_config(db_url, stand_ins)
    await qrcode_cli.qrcode(config, "store:S001", tmp_path / "p.png", True, expire, "x")
    assert posters[0][2] == subcaption


# --- menu ---

async def test_menu_push_publishes_config_menu(db_url, stand_ins, capsys):
    config = make_config(db_url, stand_ins)
    await menu_cli.menu(config, "push")
    toml_menu = load_config(ROOT / "config.toml", environ={}).menu
    assert stand_ins.wechat.menu == toml_menu == config.menu
    buttons = stand_ins.wechat.menu["button"]
    assert len(buttons) == 3
    assert [b["name"] for b in buttons] == ["会员", "服务", "更多"]
    assert [len(b.get("sub_button", [])) for b in buttons] == [2, 4, 5]
    assert [sub["key"] for sub in buttons[0]["sub_button"]] == ["MY_CARD", "PROFILE"]
    assert "3 buttons" in capsys.readouterr().out


async def test_menu_show_prints_json(db_url, stand_ins, capsys):
    config = make_config(db_url, stand_ins)
    await menu_cli.menu(config, "show")
    shown = json.loads(capsys.readouterr().out)
    assert shown == {"button": config.menu["button"]}
    assert not stand_ins.wechat.calls  # showing needs no WeChat


async def test_menu_show_keeps_chinese_readable(db_url, stand_ins, capsys):
    await menu_cli.menu(make_config(db_url, stand_ins), "show")
    out = capsys.readouterr().out
    assert "会员卡" in out and "\\u" not in out


async def test_menu_refused_by_wechat_is_exit_1(db_url, stand_ins):
    buttons = [{"type": "click", "name": f"按钮{i}", "key": f"K{i}"} for i in range(4)]
    config = make_config(db_url, stand_ins).replace(menu={"button": buttons})
    with pytest.raises(CliError) as refused:
        await menu_cli.menu(config, "push")
    assert refused.value.status == 1
    assert "40016" in refused.value.message and "invalid button size" in refused.value.message
    assert stand_ins.wechat.menu is None


async def test_menu_with_a_bad_sub_button_is_exit_1(db_url, stand_ins):
    buttons = [{"name": "更多", "sub_button": [{"type": "view", "name": "x", "url": "ftp://x"}]}]
    config = make_config(db_url, stand_ins).replace(menu={"button": buttons})
    with pytest.raises(CliError, match="40054") as refused:
        await menu_cli.menu(config, "push")
    assert refused.value.status == 1


async def test_menu_without_buttons_is_a_config_error(db_url, stand_ins):
    config = make_config(db_url, stand_ins).replace(menu={})
    with pytest.raises(ConfigError, match=r"menu\.button"):
        await menu_cli.menu(config, "push")
    assert not stand_ins.wechat.calls


# --- security new-key ---

def test_security_new_key(tmp_path):
    if not MEMBERBOT.exists():
        pytest.skip(f"{MEMBERBOT} is not installed")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMBERBOT_")}
    result = subprocess.run([str(MEMBERBOT), "security", "new-key"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=30, check=True)
    assert len(result.stdout.splitlines()) == 1
    key = result.stdout.strip()
    assert len(base64.b64decode(key, validate=True)) == 32
    assert key != new_data_key()  # random, not a constant


# --- the parser ---

def leaves(parser: argparse.ArgumentParser):
    """The parsers that run something: those without subcommands of their own."""
    groups = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not groups:
        yield parser
    for group in groups:
        for child in group.choices.values():
            yield from leaves(child)


def test_every_subcommand_registers_its_run_function():
    found = {p.prog.removeprefix("memberbot "): p.get_default("run") for p in leaves(cli.parser())}
    assert sorted(found) == sorted([
        "serve", "worker", "sandbox", "chat", "staff invite", "staff list", "staff revoke",
        "purchase", "audit", "menu push", "menu show", "qrcode", "coupon template add",
        "coupon template list", "coupon template disable", "coupon issue", "backup", "restore",
        "export", "import", "security new-key", "security rotate-key", "segment count",
        "segment show", "jobs list", "jobs run", "broadcast create",
        "broadcast preview", "broadcast start", "broadcast pause", "broadcast resume",
        "broadcast cancel", "broadcast confirm", "booking service list", "booking service add",
        "booking service disable", "booking resource list", "booking resource add",
        "booking resource disable", "booking hours", "booking closed", "booking list",
        "broadcast status", "broadcast list", "feedback", "console link"])
    assert all(callable(run) for run in found.values()), found


# --- packaging ---

def test_the_install_is_quiet_about_the_license():
    """A license table makes setuptools print ~140 lines of deprecation warnings on every
    `pip install`; an SPDX string needs setuptools 77 or later to be accepted."""
    import re
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert project["project"]["license"] == "MIT"
    [setuptools] = [r for r in project["build-system"]["requires"] if r.startswith("setuptools")]
    minimum = re.fullmatch(r"setuptools>=(\d+)(\.\d+)*", setuptools)
    assert minimum and int(minimum[1]) >= 77, setuptools
