"""config.toml + MEMBERBOT_<SECTION>_<KEY> overrides, the checks, and how the CLI reports a
configuration error: one line on stderr, exit code 2, never a traceback."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bot.config import (
    Config,
    ConfigError,
    load_config,
    validate_basics,
    validate_for_serving,
)
from bot.infra.vault import new_data_key

ROOT = Path(__file__).resolve().parent.parent
CONFIG_TOML = ROOT / "config.toml"
MEMBERBOT = ROOT / ".venv" / "bin" / "memberbot"
AES_KEY = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aQ"
SERVING_ENV = {
    "MEMBERBOT_WECHAT_APP_ID": "wx1234567890abcdef",
    "MEMBERBOT_WECHAT_APP_SECRET": "secret",
    "MEMBERBOT_WECHAT_TOKEN": "token123",
    "MEMBERBOT_WECHAT_ENCODING_AES_KEY": AES_KEY,
    "MEMBERBOT_SECURITY_DATA_KEY": new_data_key(),
}


def variant(tmp_path: Path, old: str, new: str, name: str = "config.toml") -> Path:
    """config.toml with one piece of text swapped. `old` may be "[section]\nkey": then that
    key's whole line in that section becomes `new` (config.toml keeps growing; this still finds
    the right line)."""
    text = CONFIG_TOML.read_text(encoding="utf-8")
    if re.fullmatch(r"\[\w+\]\n\w+", old):
        header, key = old.split("\n")
        section = text.index(header + "\n")
        line = re.compile(rf"^{key} = .*$", re.M).search(text, section)
        assert line, old
        start, end = line.span()
    else:
        start = text.index(old)
        end = start + len(old)
    path = tmp_path / name
    path.write_text(text[:start] + new + text[end:], encoding="utf-8")
    return path


def config_error(path: Path, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ=environ or {})
    message = str(caught.value)
    assert "\n" not in message
    return message


# --- loading ---

def test_config_toml_loads_without_environment():
    config = load_config(CONFIG_TOML, environ={})
    assert config.server.port == 8080
    assert config.wechat.app_secret == ""
    assert [s.code for s in config.stores] == ["S001"]
    assert [t.min_spend for t in config.tiers] == [0, 1000, 5000, 20000]
    assert len(config.menu["button"]) == 3
    assert config.scheduler.enabled is True


def test_load_config_reads_os_environ_by_default(monkeypatch):
    for name in list(os.environ):
        if name.startswith("MEMBERBOT_"):
            monkeypatch.delenv(name)
    assert load_config(CONFIG_TOML).server.port == 8080
    monkeypatch.setenv("MEMBERBOT_SERVER_PORT", "9001")
    assert load_config(CONFIG_TOML).server.port == 9001


def test_environment_overrides():
    config = load_config(CONFIG_TOML, environ={
        "MEMBERBOT_SERVER_PORT": "9000",
        "MEMBERBOT_WECHAT_APP_SECRET": "x",
        "MEMBERBOT_SERVER_REPLY_TIMEOUT": "2.5",
        "MEMBERBOT_SCHEDULER_ENABLED": "off",
        "MEMBERBOT_SMS_LIMITS_PER_DAY": "3",
        "MEMBERBOT_SHOP_NAME": "二号店",
    })
    assert config.server.port == 9000
    assert config.wechat.app_secret == "x"
    assert config.server.reply_timeout == 2.5
    assert config.scheduler.enabled is False
    assert config.sms_limits.per_day == 3
    assert config.shop.name == "二号店"
    # Untouched keys keep the file's values.
    assert config.server.host == "127.0.0.1"
    assert config.sms.template_verify == ""


def test_environment_beats_the_file(tmp_path):
    path = variant(tmp_path, "[wechat]\napp_secret", 'app_secret = "from-file"')
    assert load_config(path, environ={}).wechat.app_secret == "from-file"
    assert load_config(path, environ={"MEMBERBOT_WECHAT_APP_SECRET": "x"}).wechat.app_secret == "x"


def test_no_file_at_all_gives_defaults(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no ./config.toml here
    config = load_config(None, environ={"MEMBERBOT_SERVER_PORT": "9002"})
    assert config == dataclasses.replace(Config(), server=dataclasses.replace(
        Config().server, port=9002))


def _typed_fields() -> list[tuple[str, str, type]]:
    config = Config()
    found = []
    for section in dataclasses.fields(Config):
        value = getattr(config, section.name)
        if not dataclasses.is_dataclass(value):
            continue
        for f in dataclasses.fields(value):
            kind = type(getattr(value, f.name))
            if kind in (int, float, bool):
                found.append((section.name, f.name, kind))
    return found


@pytest.mark.parametrize(("section", "key", "kind"), _typed_fields(),
                         ids=lambda v: v if isinstance(v, str) else v.__name__)
def test_bad_environment_value_names_the_key(section, key, kind):
    env = f"MEMBERBOT_{section.upper()}_{key.upper()}"
    bad = "maybe" if kind is bool else "abc"
    with pytest.raises(ConfigError) as caught:
        load_config(CONFIG_TOML, environ={env: bad})
    message = str(caught.value)
    assert message.startswith(f"{section}.{key}"), message
    assert env in message


def test_bad_port_env():
    with pytest.raises(ConfigError, match=r"server\.port"):
        load_config(CONFIG_TOML, environ={"MEMBERBOT_SERVER_PORT": "abc"})
    with pytest.raises(ConfigError, match=r"server\.port"):
        load_config(CONFIG_TOML, environ={"MEMBERBOT_SERVER_PORT": "70000"})
    with pytest.raises(ConfigError, match=r"server\.port"):
        load_config(CONFIG_TOML, environ={"MEMBERBOT_SERVER_PORT": "0"})


@pytest.mark.parametrize(("old", "new", "key"), [
    ("[server]\nport", 'port = "abc"', "server.port"),
    ("[server]\nport", "port = true", "server.port"),
    ("[server]\nport", "port = 8080.7", "server.port"),  # not silently truncated to 8080
    ("[shop]\nwelcome_points", "welcome_points = 99.9", "shop.welcome_points"),
    ("[server]\nreply_timeout", "reply_timeout = true", "server.reply_timeout"),
    ("[server]\nreply_timeout", "reply_timeout = 9.0", "server.reply_timeout"),
    ("[scheduler]\nenabled", 'enabled = "sometimes"', "scheduler.enabled"),
    ("[shop]\nname", 'name = ["a"]', "shop.name"),
    ("[server]\nmax_clock_skew", "max_clock_skew = 300\ncolour = 1", "server.colour"),
    ("[scheduler]", "[schedular]", "schedular"),
    ("[shop]\ntimezone", 'timezone = "Mars/Olympus"', "shop.timezone"),
    ("[shop]\ntimezone", 'timezone = "../../etc/passwd"', "shop.timezone"),
    ("[shop]\ntimezone", 'timezone = ""', "shop.timezone"),
    ("min_spend = 5000", "min_spend = 500", "tiers.min_spend"),
    ("min_spend = 5000", "min_spend = 1000", "tiers.min_spend"),
    ("min_spend = 0", "min_spend = 10", "tiers.min_spend"),
    ("[shop]\ncard_prefix", 'card_prefix = "8a"', "shop.card_prefix"),
    ("[shop]\ncard_prefix", 'card_prefix = "88888"', "shop.card_prefix"),
    ("[database]\nurl", 'url = "mysql://x"', "database.url"),
    ('code = "S001"', 'codee = "S001"', "code"),
    ('[[stores]]\ncode = "S001"',
     '[[stores]]\ncode = "S001"\nname = "a"\n[[stores]]\ncode = "S001"', "stores.code"),
    ("[server]", "server = 5\n[serverx]", "server"),
])
def test_bad_file_values_name_the_key(tmp_path, old, new, key):
    message = config_error(variant(tmp_path, old, new))
    assert key in message, message


def test_not_toml(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[server\nport = 1\n", encoding="utf-8")
    assert "not valid TOML" in config_error(path)


def test_missing_file_named_explicitly(tmp_path):
    assert "does not exist" in config_error(tmp_path / "nope.toml")


def test_unreadable_files_are_config_errors(tmp_path):
    gbk = tmp_path / "gbk.toml"
    gbk.write_bytes('[shop]\nname = "示例门店"\n'.encode("gbk"))  # Notepad on a Chinese Windows
    assert "UTF-8" in config_error(gbk)
    assert "cannot be read" in config_error(tmp_path)  # a directory


# --- checks for serving ---

def test_default_config_is_not_servable():
    config = load_config(CONFIG_TOML, environ={})
    validate_basics(config)
    with pytest.raises(ConfigError, match=r"^wechat\.app_id"):
        validate_for_serving(config)


def test_full_environment_is_servable():
    validate_for_serving(load_config(CONFIG_TOML, environ=SERVING_ENV))


@pytest.mark.parametrize(("env", "value", "key"), [
    ("MEMBERBOT_WECHAT_APP_SECRET", "", "wechat.app_secret"),
    ("MEMBERBOT_WECHAT_TOKEN", "", "wechat.token"),
    ("MEMBERBOT_WECHAT_TOKEN", "ab", "wechat.token"),
    ("MEMBERBOT_WECHAT_TOKEN", "has space", "wechat.token"),
    ("MEMBERBOT_WECHAT_ENCODING_AES_KEY", "", "wechat.encoding_aes_key"),
    ("MEMBERBOT_WECHAT_ENCODING_AES_KEY", AES_KEY[:42], "wechat.encoding_aes_key"),
    ("MEMBERBOT_WECHAT_ENCODING_AES_KEY", AES_KEY + "A", "wechat.encoding_aes_key"),
    ("MEMBERBOT_WECHAT_ENCODING_AES_KEY", "!" * 43, "wechat.encoding_aes_key"),
    ("MEMBERBOT_SECURITY_DATA_KEY", "", "security.data_key"),
    ("MEMBERBOT_SECURITY_DATA_KEY", "c2hvcnQ=", "security.data_key"),  # 5 bytes
    ("MEMBERBOT_SECURITY_DATA_KEY", "not base64 at all!", "security.data_key"),
    ("MEMBERBOT_SECURITY_DATA_KEY", new_data_key()[:-4], "security.data_key"),
])
def test_serving_checks_name_the_key(env, value, key):
    config = load_config(CONFIG_TOML, environ={**SERVING_ENV, env: value})
    with pytest.raises(ConfigError) as caught:
        validate_for_serving(config)
    assert str(caught.value).startswith(key), str(caught.value)


def test_serving_needs_a_store():
    config = load_config(CONFIG_TOML, environ=SERVING_ENV).replace(stores=[])
    with pytest.raises(ConfigError, match=r"^stores"):
        validate_for_serving(config)


# --- the CLI: one line, exit code 2 ---

def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None,
            timeout: float = 30) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MEMBERBOT_")}
    return subprocess.run([str(MEMBERBOT), *args], cwd=cwd, env={**clean, **(env or {})},
                          capture_output=True, text=True, timeout=timeout, check=False)


def assert_one_line_config_error(result: subprocess.CompletedProcess[str], *mentions: str):
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("memberbot: configuration error:"), lines[0]
    for mention in mentions:
        assert mention in lines[0], lines[0]


@pytest.fixture(scope="module")
def cli_ok():
    if not MEMBERBOT.exists():
        pytest.skip(f"{MEMBERBOT} is not installed (make test sets it up)")


def test_cli_bad_value(tmp_path, cli_ok):
    path = variant(tmp_path, "[server]\nport", 'port = "abc"')
    assert_one_line_config_error(run_cli("--config", str(path), "serve", cwd=tmp_path),
                                 "server.port")


def test_cli_missing_file(tmp_path, cli_ok):
    assert_one_line_config_error(
        run_cli("--config", str(tmp_path / "missing.toml"), "serve", cwd=tmp_path),
        "missing.toml", "does not exist")


def test_cli_bad_environment(tmp_path, cli_ok):
    result = run_cli("--config", str(CONFIG_TOML), "serve", cwd=tmp_path,
                     env={"MEMBERBOT_SERVER_PORT": "abc"})
    assert_one_line_config_error(result, "server.port", "MEMBERBOT_SERVER_PORT")


def test_cli_serve_without_credentials(tmp_path, cli_ok):
    assert_one_line_config_error(run_cli("--config", str(CONFIG_TOML), "serve", cwd=tmp_path),
                                 "wechat.app_id")


@pytest.mark.parametrize(("env", "key", "variable"), [
    ("MEMBERBOT_WECHAT_APP_ID", "wechat.app_id", "MEMBERBOT_WECHAT_APP_ID"),
    ("MEMBERBOT_WECHAT_APP_SECRET", "wechat.app_secret", "MEMBERBOT_WECHAT_APP_SECRET"),
    ("MEMBERBOT_WECHAT_TOKEN", "wechat.token", "MEMBERBOT_WECHAT_TOKEN"),
    ("MEMBERBOT_WECHAT_ENCODING_AES_KEY", "wechat.encoding_aes_key",
     "MEMBERBOT_WECHAT_ENCODING_AES_KEY"),
    ("MEMBERBOT_SECURITY_DATA_KEY", "security.data_key", "MEMBERBOT_SECURITY_DATA_KEY"),
])
def test_a_missing_secret_names_its_environment_variable_not_the_file(env, key, variable):
    """The README keeps secrets out of config.toml: the error must not send people there."""
    config = load_config(CONFIG_TOML, environ={**SERVING_ENV, env: ""})
    with pytest.raises(ConfigError) as caught:
        validate_for_serving(config)
    message = str(caught.value)
    assert message.startswith(f"{key}: missing") and variable in message, message
    assert "config.toml" not in message, message


def test_cli_short_aes_key(tmp_path, cli_ok):
    env = {**SERVING_ENV, "MEMBERBOT_WECHAT_ENCODING_AES_KEY": AES_KEY[:42]}
    assert_one_line_config_error(
        run_cli("--config", str(CONFIG_TOML), "serve", cwd=tmp_path, env=env),
        "wechat.encoding_aes_key")


@pytest.mark.parametrize("content", [b"[server\nport = 1\n",
                                     '[shop]\nname = "示例门店"\n'.encode("gbk")],
                         ids=["not-toml", "gbk"])
def test_cli_unparseable_file(tmp_path, cli_ok, content):
    path = tmp_path / "config.toml"
    path.write_bytes(content)
    assert_one_line_config_error(run_cli("--config", str(path), "serve", cwd=tmp_path))


def test_cli_directory_as_config(tmp_path, cli_ok):
    assert_one_line_config_error(run_cli("--config", str(tmp_path), "serve", cwd=tmp_path))


def test_cli_default_path_is_the_working_directory(tmp_path, cli_ok):
    variant(tmp_path, "[server]\nport", "port = -1")  # ./config.toml
    assert_one_line_config_error(run_cli("serve", cwd=tmp_path), "server.port")


def test_cli_module_entry_point(tmp_path):
    # `python -m bot.cli` behaves like the installed script.
    path = variant(tmp_path, "[server]\nport", 'port = "abc"')
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MEMBERBOT_")}
    result = subprocess.run([sys.executable, "-m", "bot.cli", "--config", str(path), "serve"],
                            cwd=ROOT, env=clean, capture_output=True, text=True, timeout=30,
                            check=False)
    assert_one_line_config_error(result, "server.port")
