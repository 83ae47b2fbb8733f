"""The card's toolbar, the topic's title and notifications, and Live: through the real
aiogram client against the strict fake Bot API, with fake agents in real tmux panes."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest

from conftest import FAKE_AGENT, Server, wait_for
from telegram_harness import CHAT, ThreadedTelegram, telegram  # noqa: F401 (a fixture)


@pytest.fixture
def keylog(tmp_path: Path) -> Path:
    path = tmp_path / "keys"
    path.mkdir()
    return path


@pytest.fixture
def tg_server(server_factory: Callable[..., Server], telegram: ThreadedTelegram, tmp_path: Path,
              keylog: Path) -> Server:
    import sys
    return server_factory(**telegram.env(SM_TELEGRAM_ALLOWED_ROOTS=str(tmp_path)),
                          FAKE_AGENT_KEYLOG=str(keylog),
                          SM_SHELL_COMMAND=f"{sys.executable} {FAKE_AGENT}")


def keys_of(keylog: Path, session: dict[str, Any]) -> bytes:
    path = keylog / f"{session['id']}.keys"
    return path.read_bytes() if path.exists() else b""


def tap(telegram: ThreadedTelegram, thread: int, label: str) -> str:
    message_id, data = telegram.button(thread, label)
    return telegram.press(message_id, data)


def answer_to(telegram: ThreadedTelegram, query_id: str) -> dict[str, Any]:
    return telegram.wait(lambda t: next((a for a in t.do(lambda: list(t.fake.answered_callbacks))
                                         if a["callback_query_id"] == query_id), None),
                         message="the button's answer")


def test_each_toolbar_key_of_claude_reaches_the_pane(telegram: ThreadedTelegram, tg_server: Server,
                                                     keylog: Path) -> None:
    session = tg_server.spawn_agent("eng", dir=str(tg_server.workdir))
    thread = telegram.topic_of(session)
    for label, sent in (("⎋ Esc", b"\x1b"), ("⏎ Enter", b"\r"), ("⇧⇥ Mode", b"\x1b[Z")):
        before = keys_of(keylog, session)
        assert answer_to(telegram, tap(telegram, thread, label))["text"] == "Sent"
        wait_for(lambda: keys_of(keylog, session)[len(before):] == sent, 15,
                 message=f"{label} to reach the pane as {sent!r}")
    # /compact is typed text through the queue: it reaches the agent as a prompt of its own.
    tap(telegram, thread, "/compact")
    assert tg_server.wait_prompt(lambda p: "compact" in p) == "/compact"
    # Clear keeps its confirmation: nothing is typed before "Yes".
    tap(telegram, thread, "Clear")
    yes_id, yes = telegram.button(thread, "Yes")
    assert "/clear" not in tg_server.prompts()
    telegram.press(yes_id, yes)
    tg_server.wait_prompt(lambda p: p == "/clear")


def test_a_shell_gets_ctrl_c_and_enter(telegram: ThreadedTelegram, tg_server: Server, keylog: Path) -> None:
    session = tg_server.client().request("POST", "/sessions", {"name": "sh", "provider": "shell",
                                                                "dir": str(tg_server.workdir)})
    thread = telegram.topic_of(session)
    message_id, _data = telegram.button(thread, "^C")
    labels = [b["text"] for row in telegram.do(lambda: telegram.fake.message(CHAT, message_id))["reply_markup"][
        "inline_keyboard"] for b in row]
    assert "⎋ Esc" not in labels and "⏎ Enter" in labels and "/compact" not in labels
    tap(telegram, thread, "⏎ Enter")
    wait_for(lambda: keys_of(keylog, session) == b"\r", 15, message="Enter in the shell's pane")
    tap(telegram, thread, "^C")
    wait_for(lambda: keys_of(keylog, session) == b"\r\x03", 15, message="Ctrl-C in the shell's pane")


def test_a_key_not_on_the_providers_toolbar_is_refused(telegram: ThreadedTelegram, tg_server: Server,
                                                      keylog: Path) -> None:
    session = tg_server.spawn_agent("eng", dir=str(tg_server.workdir))
    thread = telegram.topic_of(session)
    message_id, data = telegram.button(thread, "⎋ Esc")
    forged = data.rsplit(":", 1)[0] + ":ctrlc"  # Ctrl-C is the shell's, not Claude's
    answer = answer_to(telegram, telegram.press(message_id, forged))
    assert answer["show_alert"] and "no toolbar key 'ctrlc'" in answer["text"]
    assert keys_of(keylog, session) == b""
