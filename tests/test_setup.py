"""`sm setup` against the fake Bot API: from a token to a bot that answers, with and without questions."""

from __future__ import annotations

import os
import stat
import subprocess
import threading
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from conftest import SM, Server, wait_for
from telegram_harness import CHAT, OWNER_ID, ThreadedTelegram


@pytest.fixture
def telegram() -> Iterator[ThreadedTelegram]:
    t = ThreadedTelegram()
    yield t
    t.close()


def setup_env(tmp_path: Path) -> dict[str, str]:
    """No server running, no settings but the state dir: a new user's machine."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SM_") and k != "TMUX"}
    return {**env, "SM_STATE_DIR": str(tmp_path / "state"), "XDG_CONFIG_HOME": str(tmp_path / "cfg"),
            "HOME": str(tmp_path / "home")}


def run_setup(env: dict[str, str], *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SM, "setup", *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)


def test_non_interactive_setup_finds_the_group_and_you_and_the_bot_then_works(tmp_path: Path,
                                                                             telegram: ThreadedTelegram) -> None:
    config = tmp_path / "conf" / "config.yaml"
    telegram.say("hello sm")  # the person's message in the group, as the instructions ask
    result = run_setup(setup_env(tmp_path), "--token", telegram.token, "--api-url", telegram.url,
                       "--config", str(config), "--no-service", "--no-input", "--wait", "20", cwd=tmp_path)
    assert result.returncode == 0, result.stderr + result.stdout
    assert "✓ the bot @sm_test_bot" in result.stdout
    assert f"✓ the group 'swarm' ({CHAT}), and you, user {OWNER_ID}" in result.stdout
    assert "admin that can manage topics" in result.stdout
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    written = yaml.safe_load(config.read_text())["telegram"]
    assert written == {"token": telegram.token, "chat_id": CHAT, "allowed_user_ids": [OWNER_ID],
                       "api_url": telegram.url}
    assert telegram.do(lambda: telegram.fake.pending_updates) == 0  # "hello sm" is not replayed to sm-bot

    # The file alone makes a working bot: it answers the person in the group.
    server = Server(tmp_path)
    server.env.update(SM_CONFIG=str(config))
    try:
        server.start()
        telegram.say("/list")
        telegram.wait(lambda t: any("no sessions" in x.lower() or "session" in x.lower() for x in t.texts()),
                      20, "the bot's answer to /list")
    finally:
        server.close()


def test_the_person_who_added_the_bot_is_found_from_my_chat_member(tmp_path: Path,
                                                                   telegram: ThreadedTelegram) -> None:
    telegram.do(lambda: telegram.fake.bot_added(CHAT, telegram.owner))
    config = tmp_path / "config.yaml"
    result = run_setup(setup_env(tmp_path), "--token", telegram.token, "--api-url", telegram.url,
                       "--config", str(config), "--no-service", "--no-input", "--wait", "20", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load(config.read_text())["telegram"]["allowed_user_ids"] == [OWNER_ID]


def test_a_bot_without_topic_rights_is_refused_with_the_fix_and_nothing_is_written(
        tmp_path: Path, telegram: ThreadedTelegram) -> None:
    telegram.do(lambda: telegram.fake.bot_can_manage_topics(CHAT, False))
    config = tmp_path / "config.yaml"
    result = run_setup(setup_env(tmp_path), "--token", telegram.token, "--api-url", telegram.url,
                       "--chat-id", str(CHAT), "--user-id", str(OWNER_ID), "--config", str(config),
                       "--no-service", "--no-input", cwd=tmp_path)
    assert result.returncode == 1
    assert "without the right to manage topics" in result.stdout
    assert result.stderr.startswith("sm: the bot cannot work in chat") and "Manage topics" in result.stderr
    assert not config.exists()


@pytest.mark.parametrize("args, says", [
    (["--token", "123456:WRONG"], "Telegram refused the token"),
    ([], "give --token"),
], ids=["a refused token", "no token and no questions"])
def test_a_token_that_cannot_be_used_is_one_line_and_exit_1(tmp_path: Path, telegram: ThreadedTelegram,
                                                            args: list[str], says: str) -> None:
    result = run_setup(setup_env(tmp_path), *args, "--api-url", telegram.url, "--config",
                       str(tmp_path / "c.yaml"), "--no-input", cwd=tmp_path)
    assert result.returncode == 1
    assert says in result.stderr and result.stderr.count("\n") == 1, result.stderr
    assert not (tmp_path / "c.yaml").exists()


def test_a_running_server_is_not_stopped_without_leave(tmp_path: Path, telegram: ThreadedTelegram) -> None:
    server = Server(tmp_path)
    try:
        server.start()
        env = {**setup_env(tmp_path), "SM_STATE_DIR": str(server.state_dir)}
        result = run_setup(env, "--token", telegram.token, "--api-url", telegram.url, "--config",
                           str(tmp_path / "c.yaml"), "--no-service", "--no-input", "--wait", "5", cwd=tmp_path)
        assert result.returncode == 1
        assert "sm-bot is running" in result.stderr and "sm stop" in result.stderr
        assert server.sm("status").returncode == 0  # still running
    finally:
        server.close()


class Conversation:
    """`sm setup` on a pipe: the test reads what it says and answers on its stdin."""

    def __init__(self, env: dict[str, str], cwd: Path, *args: str) -> None:
        self.proc = subprocess.Popen([SM, "setup", *args], env=env, cwd=cwd, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=0)
        self.out = ""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        while chunk := self.proc.stdout.read(1):
            self.out += chunk

    def after(self, text: str, answer: str, nth: int = 1) -> None:
        """Answer once `text` has been said `nth` times."""
        wait_for(lambda: self.out.count(text) >= nth or self.proc.poll() is not None, 30, message=repr(text))
        assert self.out.count(text) >= nth, self.out
        assert self.proc.stdin is not None
        self.proc.stdin.write(answer + "\n")
        self.proc.stdin.flush()

    def finish(self) -> int:
        code = self.proc.wait(30)
        self._reader.join(5)
        return code


def test_interactive_setup_asks_again_stops_the_server_waits_for_rights_and_keeps_the_rest_of_the_file(
        tmp_path: Path, telegram: ThreadedTelegram) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("server:\n  port: 9111\ntelegram:\n  allowed_user_ids: [5]\n")
    telegram.do(lambda: telegram.fake.bot_can_manage_topics(CHAT, False))
    server = Server(tmp_path)
    try:
        server.start()
        env = {**setup_env(tmp_path), "SM_STATE_DIR": str(server.state_dir), "SM_CONFIG": str(config)}
        talk = Conversation(env, tmp_path, "--api-url", telegram.url, "--wait", "30")
        talk.after("Bot token:", "123456:WRONG")
        talk.after("Bot token:", telegram.token, nth=2)
        talk.after("Stop it now?", "y")
        wait_for(lambda: "Waiting for that message" in talk.out, 30, message="the instructions")
        assert "stopped sm-bot" in talk.out and server.sm("status").returncode == 2
        telegram.say("here I am")
        talk.after("press Enter to check again", "")  # the right is still missing: it asks again
        talk.after("press Enter to check again", "", nth=2)
        wait_for(lambda: talk.out.count("press Enter to check again") == 3 or talk.proc.poll() is not None, 30)
        telegram.do(lambda: telegram.fake.bot_can_manage_topics(CHAT, True))
        talk.after("press Enter to check again", "", nth=3)
        talk.after("Run sm-bot as a service", "n")
        assert talk.finish() == 0, talk.out
    finally:
        server.close()
    assert "Telegram refused the token" in talk.out
    assert "Start it: sm-bot" in talk.out
    doc = yaml.safe_load(config.read_text())
    assert doc["server"] == {"port": 9111}
    assert doc["telegram"]["chat_id"] == CHAT and doc["telegram"]["allowed_user_ids"] == [5, OWNER_ID]
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
