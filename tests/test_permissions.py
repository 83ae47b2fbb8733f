"""Permission prompts and questions answered from the (fake) phone."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from conftest import Server, wait_for
from telegram_harness import ThreadedTelegram

SM = str(Path(sys.executable).parent / "sm")
BASH_REQUEST = {"hook_event_name": "PermissionRequest", "tool_name": "Bash",
                "tool_input": {"command": "rm -rf build/ && make", "description": "rebuild"},
                "permission_suggestions": [{"type": "addRules", "behavior": "allow", "destination": "localSettings",
                                            "rules": [{"toolName": "Bash", "ruleContent": "make:*"}]}]}


@pytest.fixture
def telegram() -> Iterator[ThreadedTelegram]:
    tg = ThreadedTelegram()
    yield tg
    tg.close()


def make_server(server_factory: Callable[..., Server], telegram: ThreadedTelegram, tmp_path: Path,
                **extra: str) -> Server:
    return server_factory(**telegram.env(SM_TELEGRAM_ALLOWED_ROOTS=str(tmp_path), **extra))


class Hook:
    """A hook process run as the agent, in the background (it blocks while it waits)."""

    def __init__(self, server: Server, name: str, event: str, payload: dict[str, Any]) -> None:
        env = {**server.env, **server.agent_env(name)}
        self.result: subprocess.CompletedProcess[str] | None = None
        self.started = time.monotonic()
        self.took = 0.0

        def run() -> None:
            self.result = subprocess.run([SM, "hook", event], input=json.dumps(payload), env=env,
                                         text=True, capture_output=True, timeout=120)
            self.took = time.monotonic() - self.started

        self.thread = threading.Thread(target=run)
        self.thread.start()

    def output(self, timeout: float = 30) -> str:
        self.thread.join(timeout)
        assert self.result is not None, "the hook did not return"
        assert self.result.returncode == 0
        return self.result.stdout


def permission_message(telegram: ThreadedTelegram, thread: int, timeout: float = 20) -> tuple[int, dict[str, str]]:
    def find(t: ThreadedTelegram) -> tuple[int, dict[str, str]] | None:
        for m in reversed(t.messages(thread)):
            rows = (m.get("reply_markup") or {}).get("inline_keyboard", [])
            buttons = {b["text"]: b["callback_data"] for row in rows for b in row if b.get("callback_data")}
            if "Allow" in buttons:
                return m["message_id"], buttons
        return None
    return telegram.wait(find, timeout, "the permission message")


def text_of(telegram: ThreadedTelegram, message_id: int) -> str:
    return next(m["text"] for m in telegram.messages() if m["message_id"] == message_id)


@pytest.mark.parametrize("button, decision", [("Allow", {"behavior": "allow"}),
                                              ("Deny", {"behavior": "deny", "message": "Denied by Owner (from sm)."})])
def test_a_tap_is_what_the_hook_prints(server_factory, telegram: ThreadedTelegram, tmp_path: Path,
                                       button: str, decision: dict[str, str]) -> None:
    server = make_server(server_factory, telegram, tmp_path)
    session = server.spawn_agent("eng", "", dir=str(server.workdir))
    thread = telegram.topic_of(session)
    hook = Hook(server, "eng", "PermissionRequest", BASH_REQUEST)
    message_id, buttons = permission_message(telegram, thread)
    assert "rm -rf build/ &amp;&amp; make" not in text_of(telegram, message_id)  # shown as text, escaped once
    assert "rm -rf build/ && make" in text_of(telegram, message_id)
    assert server.state("eng") == "waiting"
    telegram.press(message_id, buttons[button])
    out = json.loads(hook.output())
    assert out == {"hookSpecificOutput": {"hookEventName": "PermissionRequest", "decision": decision}}
    word = "allowed" if button == "Allow" else "denied"
    telegram.wait(lambda t: f"{word} by Owner" in text_of(t, message_id), message="the outcome")


def test_allow_always_passes_claudes_suggested_rule(server_factory, telegram: ThreadedTelegram,
                                                   tmp_path: Path) -> None:
    server = make_server(server_factory, telegram, tmp_path)
    session = server.spawn_agent("eng", "", dir=str(server.workdir))
    hook = Hook(server, "eng", "PermissionRequest", BASH_REQUEST)
    message_id, buttons = permission_message(telegram, telegram.topic_of(session))
    telegram.press(message_id, buttons["Allow always"])
    decision = json.loads(hook.output())["hookSpecificOutput"]["decision"]
    assert decision == {"behavior": "allow", "updatedPermissions": BASH_REQUEST["permission_suggestions"]}


def test_no_answer_expires_and_the_hook_prints_nothing(server_factory, telegram: ThreadedTelegram,
                                                       tmp_path: Path) -> None:
    server = make_server(server_factory, telegram, tmp_path, SM_PERMISSION_TIMEOUT="2")
    session = server.spawn_agent("eng", "", dir=str(server.workdir))
    hook = Hook(server, "eng", "PermissionRequest", BASH_REQUEST)
    message_id, _ = permission_message(telegram, telegram.topic_of(session))
    assert hook.output() == ""
    assert hook.took >= 2
    telegram.wait(lambda t: "expired" in text_of(t, message_id), message="the expiry shown")


def test_a_strangers_tap_is_ignored(server_factory, telegram: ThreadedTelegram, tmp_path: Path) -> None:
    server = make_server(server_factory, telegram, tmp_path)
    session = server.spawn_agent("eng", "", dir=str(server.workdir))
    hook = Hook(server, "eng", "PermissionRequest", BASH_REQUEST)
    message_id, buttons = permission_message(telegram, telegram.topic_of(session))
    telegram.press(message_id, buttons["Allow"], user=telegram.stranger)
    wait_for(lambda: "user 666: not on the allow-lists" in server.log.read_text(), 15,
             message="the stranger's tap to be seen and refused")
    assert hook.thread.is_alive(), "a stranger's tap answered the prompt"
    telegram.press(message_id, buttons["Deny"])
    assert json.loads(hook.output())["hookSpecificOutput"]["decision"]["behavior"] == "deny"


def test_an_answer_at_the_terminal_releases_the_hook_and_closes_the_message(
        server_factory, telegram: ThreadedTelegram, tmp_path: Path) -> None:
    server = make_server(server_factory, telegram, tmp_path)
    session = server.spawn_agent("eng", "", dir=str(server.workdir))
    hook = Hook(server, "eng", "PermissionRequest", BASH_REQUEST)
    message_id, _ = permission_message(telegram, telegram.topic_of(session))
    # The person answered the dialog at the terminal: the tool ran, its PostToolUse arrives.
    Hook(server, "eng", "PostToolUse", {"hook_event_name": "PostToolUse", "tool_name": "Bash",
                                        "tool_input": BASH_REQUEST["tool_input"]}).output()
    assert hook.output() == ""
    telegram.wait(lambda t: "answered at the terminal" in text_of(t, message_id), message="the message closed")
    msg = next(m for m in telegram.messages() if m["message_id"] == message_id)
    assert not msg.get("reply_markup"), "the buttons are still there"


def test_a_question_shows_its_options_and_a_tap_answers_with_its_digit(
        server_factory, telegram: ThreadedTelegram, tmp_path: Path) -> None:
    server = make_server(server_factory, telegram, tmp_path)
    session = server.spawn_agent("eng", "", dir=str(server.workdir))
    thread = telegram.topic_of(session)
    question = {"questions": [{"question": "Which database?", "header": "DB", "multiSelect": False,
                               "options": [{"label": "Postgres", "description": ""},
                                           {"label": "SQLite", "description": ""}]}]}
    Hook(server, "eng", "PreToolUse", {"hook_event_name": "PreToolUse", "tool_name": "AskUserQuestion",
                                       "tool_input": question}).output()
    message_id, data = telegram.button(thread, "2. SQLite")
    assert "Which database?" in text_of(telegram, message_id)
    telegram.press(message_id, data)
    wait_for(lambda: "❯ 2" in server.screen("eng"), message="the digit in the pane")


def test_a_prompt_seen_only_on_screen_gets_buttons_that_send_its_digits(
        server_factory, telegram: ThreadedTelegram, tmp_path: Path) -> None:
    script = tmp_path / "asker.py"
    script.write_text(
        "import sys, tty\n"
        "print('Would you like to run the following command?')\n"
        "print('  $ make deploy')\n"
        "print('1. Yes')\nprint('2. No')\n"
        "sys.stdout.flush(); tty.setcbreak(0)\n"
        "choice = sys.stdin.read(1)\n"
        "print('chose', choice, flush=True)\n"
        "import signal; signal.pause()\n")
    server = make_server(server_factory, telegram, tmp_path, SM_CODEX_COMMAND=f"{sys.executable} {script}")
    session = server.json("spawn", "", "--provider", "codex", "--name", "cx", "--dir", str(server.workdir))
    thread = telegram.topic_of(session)
    message_id, data = telegram.button(thread, "1. Yes")
    assert "make deploy" in text_of(telegram, message_id)
    telegram.press(message_id, data)
    wait_for(lambda: "chose 1" in server.screen("cx"), message="the answer in the pane")


def test_a_stale_option_button_types_nothing(server_factory, telegram: ThreadedTelegram, tmp_path: Path) -> None:
    server = make_server(server_factory, telegram, tmp_path)
    session = server.spawn_agent("eng", "", dir=str(server.workdir))
    thread = telegram.topic_of(session)
    question = {"questions": [{"question": "Proceed?", "options": [{"label": "Yes"}, {"label": "No"}]}]}
    Hook(server, "eng", "PreToolUse", {"hook_event_name": "PreToolUse", "tool_name": "AskUserQuestion",
                                       "tool_input": question}).output()
    message_id, data = telegram.button(thread, "1. Yes")
    # Answered at the terminal meanwhile: the turn went on and ended.
    Hook(server, "eng", "Stop", {"hook_event_name": "Stop"}).output()
    server.wait_state("eng", "idle")
    query = telegram.press(message_id, data)
    answer = telegram.wait(lambda t: next((a for a in t.do(lambda: list(t.fake.answered_callbacks))
                                           if a["callback_query_id"] == query), None), message="the answer")
    assert "no dialog" in (answer.get("text") or "")
    assert "❯ 1" not in server.screen("eng")


def test_a_tap_on_a_prompt_from_before_a_restart_answers_that_it_expired(
        server_factory, telegram: ThreadedTelegram, tmp_path: Path) -> None:
    server = make_server(server_factory, telegram, tmp_path)
    session = server.spawn_agent("eng", "", dir=str(server.workdir))
    hook = Hook(server, "eng", "PermissionRequest", BASH_REQUEST)
    message_id, buttons = permission_message(telegram, telegram.topic_of(session))
    server.stop()
    assert hook.output() == ""  # the server went away: the hook fails open, the dialog stays
    # The person taps while sm-bot is down; the new sm-bot gets the tap once it polls again.
    query = telegram.press(message_id, buttons["Allow"])
    server.start()
    answer = telegram.wait(lambda t: next((a for a in t.do(lambda: list(t.fake.answered_callbacks))
                                           if a["callback_query_id"] == query), None), message="the answer")
    assert answer["show_alert"] and "expired" in answer["text"] and "restarted" in answer["text"]
    telegram.wait(lambda t: "restarted" in text_of(t, message_id), message="the prompt closed")
    msg = next(m for m in telegram.messages() if m["message_id"] == message_id)
    assert not msg.get("reply_markup"), "the buttons are still there"
    # A second tap on the same old prompt (a stale client) gets the same clear answer.
    again = telegram.press(message_id, buttons["Deny"])
    answer = telegram.wait(lambda t: next((a for a in t.do(lambda: list(t.fake.answered_callbacks))
                                           if a["callback_query_id"] == again), None), message="the answer")
    assert "expired" in answer["text"]
    assert "Traceback" not in server.log.read_text()


def test_a_tap_on_a_prompt_already_answered_says_how_it_ended(
        server_factory, telegram: ThreadedTelegram, tmp_path: Path) -> None:
    server = make_server(server_factory, telegram, tmp_path)
    session = server.spawn_agent("eng", "", dir=str(server.workdir))
    hook = Hook(server, "eng", "PermissionRequest", BASH_REQUEST)
    message_id, buttons = permission_message(telegram, telegram.topic_of(session))
    telegram.press(message_id, buttons["Deny"])
    assert json.loads(hook.output())["hookSpecificOutput"]["decision"]["behavior"] == "deny"
    telegram.wait(lambda t: "denied by Owner" in text_of(t, message_id), message="the outcome")
    server.restart()
    query = telegram.press(message_id, buttons["Allow"])
    answer = telegram.wait(lambda t: next((a for a in t.do(lambda: list(t.fake.answered_callbacks))
                                           if a["callback_query_id"] == query), None), message="the answer")
    assert "denied by Owner" in answer["text"]
