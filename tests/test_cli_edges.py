"""The CLI at its edges: exit codes, finding a server configured elsewhere, completion, attach in tmux."""

from __future__ import annotations

import os
import secrets
import shlex
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from conftest import SM, SM_BOT, Server, wait_for
from telegram_harness import ThreadedTelegram


def sm(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SM, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=30)


def no_server_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SM_") and k != "TMUX"}
    return {**env, "SM_STATE_DIR": str(tmp_path / "nothing-here"), "XDG_CONFIG_HOME": str(tmp_path / "cfg")}


@pytest.mark.parametrize("args", [["no-such-command"], ["send"], ["status", "--bogus"], ["spawn", "--provider", "x"], []],
                         ids=["unknown command", "missing argument", "unknown option", "bad choice", "no command"])
def test_usage_errors_exit_64_never_2(tmp_path: Path, args: list[str]) -> None:
    result = sm(*args, env=no_server_env(tmp_path), cwd=tmp_path)
    assert result.returncode == 64, result.stderr
    assert "Usage: sm" in result.stderr or "Usage: sm" in result.stdout


@pytest.mark.parametrize("args", [["status"], ["status", "--json"], ["send", "x", "hi"], ["kill", "x"]])
def test_a_server_that_is_not_running_exits_2_with_the_hint(tmp_path: Path, args: list[str]) -> None:
    result = sm(*args, env=no_server_env(tmp_path), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == "sm: the sm server is not running; start it with: sm-bot\n"


def test_version_comes_from_the_package(tmp_path: Path) -> None:
    from importlib.metadata import version

    result = sm("--version", env=no_server_env(tmp_path), cwd=tmp_path)
    assert result.returncode == 0 and result.stdout.strip() == f"sm, version {version('sm')}"


# -- one configuration -------------------------------------------------------------------


def test_the_cli_finds_a_state_dir_set_only_in_yaml(tmp_path: Path) -> None:
    server = Server(tmp_path)
    config = tmp_path / "config.yaml"
    config.write_text(f"paths:\n  state_dir: {server.state_dir}\ntmux:\n  socket: {server.socket}\n")
    del server.env["SM_STATE_DIR"], server.env["SM_TMUX_SOCKET"]
    server.env.update(SM_CONFIG=str(config), XDG_CONFIG_HOME=str(tmp_path / "cfg"))
    try:
        server.start()  # waits for `sm status` to answer with this same environment
        assert server.sock_path.exists()
        cli_env = {k: v for k, v in server.env.items() if k != "SM_CONFIG"}  # the CLI reads no YAML
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        out = subprocess.run([SM, "spawn", "", "--provider", "shell", "--name", "yamlfound"], env=cli_env,
                             cwd=elsewhere, capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        assert "yamlfound" in subprocess.run([SM, "status"], env=cli_env, cwd=elsewhere,
                                             capture_output=True, text=True).stdout
    finally:
        server.close()


def test_the_cli_reads_the_state_dir_from_dotenv_as_the_server_does(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from core import paths
    from core.config import load_settings

    for key in ("SM_STATE_DIR", "SM_SOCKET"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("SM_CONFIG", "/dev/null")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    monkeypatch.chdir(tmp_path)
    for line in ('SM_STATE_DIR=/srv/a', 'export SM_STATE_DIR="/srv/b c"', "SM_STATE_DIR='/srv/d'  ",
                 "SM_STATE_DIR=/srv/e # a comment", "SM_STATE_DIR=~/f"):
        (tmp_path / ".env").write_text(f"# sm\nSM_LOG_LEVEL=INFO\n{line}\n")
        assert paths.state_dir() == str(load_settings().state_dir), line
        assert paths.socket_path() == str(load_settings().socket_path), line
    (tmp_path / ".env").write_text("SM_STATE_DIR=\n")  # empty means unset, for both
    assert paths.state_dir() == str(load_settings().state_dir) == os.path.expanduser(paths.DEFAULT_STATE_DIR)


SEED_CONFIG = """\
# config.yaml as the seed project ships it
server:
  host: 127.0.0.1
  port: 8420
paths:
  state_dir: {state}
  state_file: {state}/state.json
telegram:
  token: "YOUR_BOT_TOKEN_HERE"
  allowed_chat_ids: [123456789]
"""


def test_the_seed_config_with_its_placeholder_token_is_one_line_exit_1_and_no_socket(tmp_path: Path) -> None:
    state = tmp_path / "state"
    config = tmp_path / "config.yaml"
    config.write_text(SEED_CONFIG.format(state=state))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SM_")}
    env.update(SM_CONFIG=str(config), SM_TMUX_SOCKET=f"sm-test-{secrets.token_hex(4)}",
               XDG_CONFIG_HOME=str(tmp_path / "cfg"))
    result = subprocess.run([SM_BOT], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("sm-bot: bad configuration: telegram.token (SM_TELEGRAM_TOKEN)")
    assert "@BotFather" in result.stderr
    assert not (state / "sm.sock").exists()


def test_a_revoked_token_is_said_once_and_the_cli_keeps_working(tmp_path: Path) -> None:
    telegram = ThreadedTelegram()
    server = Server(tmp_path, telegram.env(SM_TELEGRAM_TOKEN="123456:revoked-token-xxxxxxxxxxxxxxxxxxxxxx"))
    try:
        server.start()
        log = wait_for(lambda: (text := server.log.read_text()) and "sm-bot ready" in text and text, 20,
                       message="sm-bot to be ready")
        refused = [line for line in log.splitlines() if "the token was refused" in line]
        assert len(refused) == 1 and "@BotFather" in refused[0] and "ERROR" in refused[0], log
        assert "Traceback" not in log and "revoked-token" not in log
        assert server.sm("status").returncode == 0
        assert server.stop() == 0
        assert not server.sock_path.exists()  # and no stale socket once it stops
    finally:
        server.close()
        telegram.close()


# -- completion and attach -------------------------------------------------------------


def test_session_arguments_complete_names_and_ids(server: Server) -> None:
    server.ok("spawn", "", "--provider", "shell", "--name", "keeper")
    keeper = server.wait_state("keeper", "idle")
    env = {**server.env, "_SM_COMPLETE": "bash_complete", "COMP_WORDS": "sm send ke", "COMP_CWORD": "2"}
    out = subprocess.run([SM], env=env, capture_output=True, text=True, timeout=30).stdout
    assert "plain,keeper" in out.splitlines()
    env.update(COMP_WORDS=f"sm kill {keeper['id'][:3]}")
    assert f"plain,{keeper['id']}" in subprocess.run([SM], env=env, capture_output=True, text=True).stdout


@pytest.fixture
def users_tmux() -> Iterator[str]:
    """The person's own tmux server (a private socket), where they type `sm attach`."""
    name = f"sm-user-{secrets.token_hex(4)}"
    yield name
    subprocess.run(["tmux", "-L", name, "kill-server"], capture_output=True)


def test_attach_from_inside_tmux_opens_a_new_window_attached_to_the_agent(server: Server, users_tmux: str) -> None:
    server.ok("spawn", "", "--provider", "shell", "--name", "keeper")
    server.wait_state("keeper", "idle")
    env_args = " ".join(shlex.quote(f"{k}={v}") for k, v in server.env.items() if k.startswith("SM_") or k == "PATH")
    subprocess.run(["tmux", "-L", users_tmux, "new-session", "-d", "-s", "mine", "-x", "120", "-y", "30",
                    f"env {env_args} {SM} attach keeper; sleep 30"], check=True)

    def windows() -> list[str]:
        return subprocess.run(["tmux", "-L", users_tmux, "list-windows", "-a", "-F", "#{window_name}"],
                              capture_output=True, text=True).stdout.split()

    wait_for(lambda: "keeper" in windows(), 30, message="a window named keeper in the user's tmux")
    clients = lambda: subprocess.run(["tmux", "-L", server.socket, "list-clients", "-F", "#{client_session}"],  # noqa: E731
                                     capture_output=True, text=True).stdout
    assert wait_for(lambda: server.session("keeper")["tmux_session"] in clients(), 15,
                    message="a client attached to the agent's tmux session")


def test_the_seed_config_runs_warns_once_about_state_file_and_lets_its_private_chat_in(tmp_path: Path) -> None:
    """The seed's config.yaml as is, with a real token: `paths.state_file` (which sm does not
    use) is named in one warning, and the one id it allows (a private chat) may use the bot."""
    telegram = ThreadedTelegram()
    person = telegram.fake.user(123456789, "Seed", "seed")
    server = Server(tmp_path, {"SM_TELEGRAM_API_URL": telegram.url})
    config = tmp_path / "config.yaml"
    config.write_text(SEED_CONFIG.format(state=server.state_dir).replace("YOUR_BOT_TOKEN_HERE", telegram.token))
    del server.env["SM_STATE_DIR"]
    server.env.update(SM_CONFIG=str(config), XDG_CONFIG_HOME=str(tmp_path / "cfg"))
    try:
        server.start()
        log = wait_for(lambda: (text := server.log.read_text()) and "sm-bot ready" in text and text, 20,
                       message="sm-bot to be ready")
        warnings = [line for line in log.splitlines() if "is not a setting sm uses" in line]
        assert len(warnings) == 1 and "paths.state_file" in warnings[0], log
        assert "allow-lists are empty" not in log and "is empty" not in log, log
        telegram.do(lambda: telegram.fake.send_text(123456789, person, "/list"))
        telegram.wait(lambda t: t.do(lambda: t.fake.messages(123456789)), 20, "the bot's answer in the private chat")
    finally:
        server.close()
        telegram.close()
