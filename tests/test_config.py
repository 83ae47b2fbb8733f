"""Settings from the environment, a .env file and the YAML config, as sm-bot reads them."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from bot.telegram.settings import TelegramSettings, load_telegram_settings
from conftest import ROOT
from core.config import Settings, load_settings

TOKEN = "123456789:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No SM_* variables, no ~/.config/sm/config.yaml and no .env but the test's own."""
    for key in list(os.environ):
        if key.startswith("SM_"):
            monkeypatch.delenv(key)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return cwd


def write_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    monkeypatch.setenv("SM_CONFIG", str(path))
    return path


FULL_YAML = f"""\
server:
  host: 0.0.0.0
  port: 9999
  tcp: true
paths:
  state_dir: ~/sm-state
tmux:
  socket: yaml-socket
monitor:
  idle_timeout: 42
  poll_interval: 0.25
telegram:
  token: "{TOKEN}"
  allowed_chat_ids: [-1001, -1002]
  allowed_user_ids: [7]
providers:
  claude:
    command: /opt/bin/claude --fast
  shell:
    command: zsh -i
"""


def test_environment_variables_set_state_dir_and_tmux_socket(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("SM_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("SM_TMUX_SOCKET", "sm-env-socket")
    settings = load_settings()
    assert settings.state_dir == tmp_path / "state"
    assert settings.db_path == tmp_path / "state" / "sm.db"
    assert settings.socket_path == tmp_path / "state" / "sm.sock"
    assert settings.tmux_socket == "sm-env-socket"


def test_state_dir_tilde_is_expanded(monkeypatch) -> None:
    monkeypatch.setenv("SM_STATE_DIR", "~/elsewhere")
    assert load_settings().state_dir == Path(os.environ["HOME"]) / "elsewhere"


@pytest.mark.parametrize("value", ["1,2", "[1, 2]", " 1 , 2 ", "1,2,"])
def test_allowed_chat_ids_accept_comma_list_and_json_list(monkeypatch, value: str) -> None:
    monkeypatch.setenv("SM_TELEGRAM_ALLOWED_CHAT_IDS", value)
    assert load_telegram_settings().allowed_chat_ids == [1, 2]


@pytest.mark.parametrize("value", ["-1001234,55", "[-1001234, 55]"])
def test_allowed_user_ids_accept_comma_list_and_json_list(monkeypatch, value: str) -> None:
    monkeypatch.setenv("SM_TELEGRAM_ALLOWED_USER_IDS", value)
    assert load_telegram_settings().allowed_user_ids == [-1001234, 55]


def test_a_single_allowed_id_is_a_list_of_one(monkeypatch) -> None:
    monkeypatch.setenv("SM_TELEGRAM_ALLOWED_CHAT_IDS", "-100777")
    assert load_telegram_settings().allowed_chat_ids == [-100777]


def test_empty_allow_lists_are_empty_lists_so_everyone_is_denied(monkeypatch) -> None:
    settings = load_telegram_settings()
    assert settings.allowed_chat_ids == []
    assert settings.allowed_user_ids == []
    monkeypatch.setenv("SM_TELEGRAM_ALLOWED_CHAT_IDS", "")
    monkeypatch.setenv("SM_TELEGRAM_ALLOWED_USER_IDS", "[]")
    settings = load_telegram_settings()
    assert settings.allowed_chat_ids == []
    assert settings.allowed_user_ids == []


def test_allow_list_that_is_not_numbers_is_refused_naming_the_variable(monkeypatch) -> None:
    monkeypatch.setenv("SM_TELEGRAM_ALLOWED_CHAT_IDS", "alice,bob")
    with pytest.raises(ValueError, match="SM_TELEGRAM_ALLOWED_CHAT_IDS"):
        load_telegram_settings()


def test_empty_variable_means_unset_like_the_cli_reads_it(monkeypatch) -> None:
    # The CLI (core/paths.py) treats an empty SM_STATE_DIR as unset; the server
    # must agree, or the two look for the socket in different places.
    monkeypatch.setenv("SM_STATE_DIR", "")
    monkeypatch.setenv("SM_TELEGRAM_CHAT_ID", "")
    monkeypatch.setenv("SM_SERVER_TCP", "")
    settings = load_settings()
    assert settings.state_dir == Path(os.environ["HOME"]) / ".local" / "state" / "sm"
    assert load_telegram_settings().chat_id is None
    assert settings.server_tcp is False


def test_yaml_sections_map_onto_the_flat_settings(monkeypatch, tmp_path) -> None:
    write_yaml(tmp_path, monkeypatch, FULL_YAML)
    settings = load_settings()
    assert settings.server_host == "0.0.0.0"
    assert settings.server_port == 9999
    assert settings.server_tcp is True
    assert settings.state_dir == Path(os.environ["HOME"]) / "sm-state"
    assert settings.tmux_socket == "yaml-socket"
    assert settings.monitor_idle_timeout == 42
    assert settings.monitor_poll_interval == 0.25
    telegram = load_telegram_settings()
    assert telegram.token == TOKEN
    assert telegram.allowed_chat_ids == [-1001, -1002]
    assert telegram.allowed_user_ids == [7]
    assert settings.claude_command == "/opt/bin/claude --fast"
    assert settings.command_for("claude") == "/opt/bin/claude --fast"
    assert settings.shell_command == "zsh -i"
    assert settings.codex_command == "codex"  # untouched fields keep their defaults


def test_yaml_allow_list_may_be_a_comma_string(monkeypatch, tmp_path) -> None:
    write_yaml(tmp_path, monkeypatch, 'telegram:\n  allowed_chat_ids: "5, 6"\n')
    assert load_telegram_settings().allowed_chat_ids == [5, 6]


def test_unknown_yaml_keys_are_ignored(monkeypatch, tmp_path) -> None:
    write_yaml(tmp_path, monkeypatch, "server:\n  port: 1234\n  colour: blue\nextras:\n  a: 1\n")
    assert load_settings().server_port == 1234


def test_environment_overrides_yaml(monkeypatch, tmp_path) -> None:
    write_yaml(tmp_path, monkeypatch, FULL_YAML)
    monkeypatch.setenv("SM_SERVER_PORT", "7000")
    monkeypatch.setenv("SM_CLAUDE_COMMAND", "claude-from-env")
    monkeypatch.setenv("SM_TELEGRAM_ALLOWED_CHAT_IDS", "3")
    settings = load_settings()
    assert settings.server_port == 7000
    assert settings.claude_command == "claude-from-env"
    assert load_telegram_settings().allowed_chat_ids == [3]
    assert settings.server_host == "0.0.0.0"  # still from YAML


def test_dotenv_in_the_working_directory_is_read_and_beats_yaml(monkeypatch, tmp_path, clean_env) -> None:
    write_yaml(tmp_path, monkeypatch, FULL_YAML)
    (clean_env / ".env").write_text("SM_TMUX_SOCKET=from-dotenv\nSM_SERVER_PORT=8111\nOTHER=ignored\n")
    settings = load_settings()
    assert settings.tmux_socket == "from-dotenv"
    assert settings.server_port == 8111
    assert settings.monitor_idle_timeout == 42  # still from YAML

    monkeypatch.setenv("SM_SERVER_PORT", "8222")
    assert load_settings().server_port == 8222  # the environment beats .env


def test_missing_config_file_named_by_sm_config_is_an_error_that_names_it(monkeypatch, tmp_path) -> None:
    missing = tmp_path / "nope.yaml"
    monkeypatch.setenv("SM_CONFIG", str(missing))
    with pytest.raises(ValueError, match="nope.yaml"):
        load_settings()


def test_default_config_yaml_in_home_is_read_when_sm_config_is_unset() -> None:
    config = Path(os.environ["HOME"]) / ".config" / "sm" / "config.yaml"
    config.parent.mkdir(parents=True)
    config.write_text("tmux:\n  socket: from-home\n")
    assert load_settings().tmux_socket == "from-home"


def test_telegram_token_never_appears_in_repr(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("SM_TELEGRAM_TOKEN", TOKEN)
    settings = load_telegram_settings()
    assert settings.token == TOKEN
    assert TOKEN not in repr(settings)
    assert TOKEN not in str(settings)
    monkeypatch.delenv("SM_TELEGRAM_TOKEN")
    write_yaml(tmp_path, monkeypatch, FULL_YAML)
    assert TOKEN not in repr(load_telegram_settings())
    assert TOKEN not in repr(load_settings())


def test_telegram_settings_are_not_the_engines() -> None:
    assert not [name for name in Settings.model_fields if name.startswith("telegram")]


def test_dotenv_sets_telegram_settings_too(clean_env) -> None:
    (clean_env / ".env").write_text(f"SM_TELEGRAM_TOKEN={TOKEN}\nSM_TELEGRAM_CHAT_ID=-1005\n")
    settings = load_telegram_settings()
    assert settings.token == TOKEN
    assert settings.chat_id == -1005


def test_a_telegram_section_that_is_not_a_mapping_is_an_error(monkeypatch, tmp_path) -> None:
    write_yaml(tmp_path, monkeypatch, "telegram: yes\n")
    with pytest.raises(ValueError, match="telegram section"):
        load_telegram_settings()


# -- .env.example -----------------------------------------------------------------

EXAMPLE = ROOT / ".env.example"
# Every variable sm reads, the engine's and the Telegram door's.
VARIABLES = {Settings.env_name(n) for n in Settings.model_fields} | {
    TelegramSettings.env_name(n) for n in TelegramSettings.model_fields}


def test_env_example_mentions_every_setting() -> None:
    text = EXAMPLE.read_text()
    missing = [name for name in sorted(VARIABLES) if not re.search(rf"^{name}=", text, re.MULTILINE)]
    assert missing == [], f".env.example lacks {missing}"


def test_env_example_says_what_each_setting_is_for() -> None:
    lines = EXAMPLE.read_text().splitlines()
    for i, line in enumerate(lines):
        if line.startswith("SM_"):
            assert i > 0 and lines[i - 1].startswith("# "), f"no comment above {line!r}"


def test_env_example_names_no_setting_that_does_not_exist() -> None:
    names = re.findall(r"^(SM_[A-Z0-9_]+)=", EXAMPLE.read_text(), re.MULTILINE)
    unknown = [n for n in names if n not in VARIABLES]
    assert unknown == []


def test_env_example_copied_to_dotenv_loads_with_the_defaults(clean_env) -> None:
    shutil.copy(EXAMPLE, clean_env / ".env")
    assert load_settings().model_dump() == Settings(_env_file=None).model_dump()
    assert load_telegram_settings().model_dump() == TelegramSettings(_env_file=None).model_dump()
    assert "SM_TELEGRAM_TOKEN=\n" in EXAMPLE.read_text()  # no token ships in the example


def test_config_that_is_not_yaml_is_an_error_naming_the_file_and_line(monkeypatch, tmp_path) -> None:
    path = write_yaml(tmp_path, monkeypatch, "server:\n  port: 1\n  host: [unclosed\n")
    with pytest.raises(ValueError, match=r"config\.yaml is not valid YAML \(line \d+\)"):
        load_settings()
    assert path.exists()


def test_config_that_is_a_directory_is_an_error_naming_it(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("SM_CONFIG", str(tmp_path))
    with pytest.raises(ValueError, match="cannot read config file"):
        load_settings()


def test_log_level_is_checked_and_any_case_is_accepted(monkeypatch) -> None:
    monkeypatch.setenv("SM_LOG_LEVEL", "debug")
    assert load_settings().log_level == "DEBUG"
    monkeypatch.setenv("SM_LOG_LEVEL", "chatty")
    with pytest.raises(ValueError, match="SM_LOG_LEVEL|log_level"):
        load_settings()


def test_default_allowed_root_is_the_home_directory_expanded() -> None:
    # /new compares resolved directories against the roots: a literal "~" would match nothing.
    home = Path(os.environ["HOME"]).resolve()
    assert load_telegram_settings().allowed_roots == [home]


def test_allowed_roots_accept_a_path_list_or_json(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("SM_TELEGRAM_ALLOWED_ROOTS", f"~/src{os.pathsep}{tmp_path}")
    home = Path(os.environ["HOME"]).resolve()
    assert load_telegram_settings().allowed_roots == [home / "src", tmp_path.resolve()]
    monkeypatch.setenv("SM_TELEGRAM_ALLOWED_ROOTS", f'["{tmp_path}"]')
    assert load_telegram_settings().allowed_roots == [tmp_path.resolve()]


# -- the seed's keys, and the allow-lists --------------------------------------------------


def test_keys_sm_does_not_use_are_named_and_the_rest_are_not(monkeypatch, tmp_path) -> None:
    from core.config import unused_yaml_keys

    write_yaml(tmp_path, monkeypatch, FULL_YAML + "paths:\n  state_file: /x/state.json\n"
               "  state_dir: /srv/sm\ntelegram:\n  token: x\n  colour: blue\nextras:\n  a: 1\n")
    assert unused_yaml_keys(TelegramSettings) == ["paths.state_file", "telegram.colour", "extras.a"]
    write_yaml(tmp_path, monkeypatch, FULL_YAML)
    assert unused_yaml_keys(TelegramSettings) == []


def test_a_private_chat_id_on_the_chat_list_also_allows_that_person(monkeypatch) -> None:
    monkeypatch.setenv("SM_TELEGRAM_ALLOWED_CHAT_IDS", "123456789,-1005")
    settings = load_telegram_settings()
    assert settings.allowed_users() == {123456789}
    assert settings.allowed_chats() == {123456789, -1005}
    assert settings.allow_list_problem() is None


@pytest.mark.parametrize("env, names", [
    ({}, "allow-lists are empty"),
    ({"SM_TELEGRAM_CHAT_ID": "-1005"}, "SM_TELEGRAM_ALLOWED_USER_IDS (telegram.allowed_user_ids) is empty"),
    ({"SM_TELEGRAM_ALLOWED_CHAT_IDS": "-1005"}, "SM_TELEGRAM_ALLOWED_USER_IDS (telegram.allowed_user_ids) is empty"),
    ({"SM_TELEGRAM_ALLOWED_USER_IDS": "7"}, "SM_TELEGRAM_CHAT_ID and SM_TELEGRAM_ALLOWED_CHAT_IDS"),
    ({"SM_TELEGRAM_ALLOWED_USER_IDS": "7", "SM_TELEGRAM_CHAT_ID": "-1005"}, None),
], ids=["both", "users, with a chat", "users, with a chat list", "chats", "neither"])
def test_the_allow_list_warning_names_the_list_that_is_empty(monkeypatch, env: dict[str, str],
                                                             names: str | None) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    problem = load_telegram_settings().allow_list_problem()
    assert problem is None if names is None else names in problem
