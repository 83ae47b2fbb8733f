"""`sm doctor` on a good setup and on each broken part, against the fake Bot API."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Callable, Iterator

import pytest

from conftest import SM, Server
from telegram_harness import CHAT, ThreadedTelegram


@pytest.fixture
def telegram() -> Iterator[ThreadedTelegram]:
    t = ThreadedTelegram()
    yield t
    t.close()


def doctor(env: dict[str, str], cwd: Path) -> tuple[int, str]:
    result = subprocess.run([SM, "doctor"], env=env, cwd=cwd, capture_output=True, text=True, timeout=60)
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, result.stdout


def line(out: str, start: str) -> str:
    """The check line starting with `start`, with its fix line if it has one."""
    lines = out.splitlines()
    for i, text in enumerate(lines):
        if text.startswith(start):
            fix = lines[i + 1] if i + 1 < len(lines) and lines[i + 1].startswith("    fix:") else ""
            return text + ("\n" + fix if fix else "")
    raise AssertionError(f"no line starting {start!r} in:\n{out}")


def offline_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """No server, no Telegram: just this machine."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SM_") and k != "TMUX"}
    return {**env, "SM_STATE_DIR": str(tmp_path / "state"), "SM_CONFIG": "/dev/null", **extra}


def test_a_working_setup_passes_every_check(server_factory: Callable[..., Server],
                                            telegram: ThreadedTelegram) -> None:
    server = server_factory(**telegram.env())
    code, out = doctor({**server.env, **telegram.env()}, server.workdir)
    assert code == 0, out
    assert "✗" not in out
    assert line(out, "✓ tmux 3.")
    assert "✓ claude: " in out
    assert "running" in line(out, "✓ server ")
    assert "@sm_test_bot" in line(out, "✓ Telegram token")
    assert "admin that can manage topics" in line(out, "✓ Telegram chat")
    assert line(out, "✓ allow-lists: 1 in allowed_user_ids")
    assert line(out, "✓ hooks template")
    assert f"state dir {server.state_dir}" in line(out, "✓ state dir")
    assert "GiB free" in out


def test_missing_tmux_and_agent_cli_are_named_with_a_fix(tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    code, out = doctor(offline_env(tmp_path, PATH=str(empty)), tmp_path)
    assert code == 1
    assert "install tmux" in line(out, "✗ tmux: not found on PATH")
    assert "SM_CLAUDE_COMMAND" in line(out, "✗ claude: `claude` not found")
    assert "sm-bot" in line(out, "✗ server: not running")
    assert line(out, "- codex:")  # not configured: optional, not a failure
    assert out.rstrip().endswith("problem(s) found.")


def test_a_bad_token_is_refused_with_the_botfather_fix(tmp_path: Path, telegram: ThreadedTelegram) -> None:
    env = offline_env(tmp_path, **telegram.env(SM_TELEGRAM_TOKEN="123456:not-the-right-token-at-all-xxxxxxxx"))
    code, out = doctor(env, tmp_path)
    assert code == 1
    bad = line(out, "✗ Telegram token")
    assert "Unauthorized" in bad and "@BotFather" in bad


def test_a_bot_without_topic_rights_is_told_to_get_manage_topics(tmp_path: Path,
                                                                 telegram: ThreadedTelegram) -> None:
    env = offline_env(tmp_path, **telegram.env())
    telegram.do(lambda: telegram.fake.bot_can_manage_topics(CHAT, False))
    code, out = doctor(env, tmp_path)
    assert code == 1
    assert "@sm_test_bot" in line(out, "✓ Telegram token")
    chat = line(out, "✗ Telegram chat 'swarm'")
    assert "without the right to manage topics" in chat and "Manage topics" in chat

    telegram.do(lambda: telegram.fake.set_bot_status(CHAT, "member"))
    assert "not an admin (member)" in line(doctor(env, tmp_path)[1], "✗ Telegram chat")


def test_empty_allow_lists_fail(tmp_path: Path, telegram: ThreadedTelegram) -> None:
    env = offline_env(tmp_path, **telegram.env(SM_TELEGRAM_ALLOWED_USER_IDS=""))
    code, out = doctor(env, tmp_path)
    assert code == 1
    assert "SM_TELEGRAM_ALLOWED_USER_IDS" in line(out, "✗ allow-lists")


def test_a_state_dir_others_can_read_is_named_with_chmod(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    state.chmod(0o755)
    code, out = doctor(offline_env(tmp_path), tmp_path)
    assert code == 1
    assert f"chmod -R go-rwx {state}" in line(out, f"✗ state dir {state}")
