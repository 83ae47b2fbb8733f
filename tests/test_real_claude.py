"""Delivery to the real Claude Code CLI (2.1.330, installed by scripts/test).

The model behind it is tests/fake_anthropic.py on loopback, so the agent is
real (its TUI, its paste handling, its hooks through sm's --settings file)
and its answers are scripted.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import pytest

from claude_home import CLAUDE_BIN, make_claude_home, require_claude
from conftest import scripted_model, Server, wait_for

pytestmark = pytest.mark.claude


@pytest.fixture
def fake_model(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    log = tmp_path / "model-requests.jsonl"
    for url in scripted_model("fake_anthropic.py", log):
        yield url, log


def user_texts(log: Path) -> list[str]:
    if not log.exists():
        return []
    texts = []
    for line in log.read_text().splitlines():
        body = json.loads(line)
        for message in body.get("messages", []):
            if message.get("role") != "user":
                continue
            content = message.get("content")
            blocks = [content] if isinstance(content, str) else [
                b.get("text", "") if b.get("type") == "text" else json.dumps(b.get("content", ""))
                for b in content or [] if isinstance(b, dict)]
            texts.extend(blocks)
    return texts


@pytest.fixture
def claude_server(server_factory, tmp_path: Path, fake_model: tuple[str, Path]) -> Server:
    require_claude()
    url, _ = fake_model
    env = make_claude_home(tmp_path / "home", tmp_path / "work", allow_bash=True, base_url=url)
    return server_factory(SM_CLAUDE_COMMAND=str(CLAUDE_BIN), **env)


def test_real_claude_gets_messages_and_reports_state_through_hooks(
        claude_server: Server, fake_model: tuple[str, Path]) -> None:
    server, (_, log) = claude_server, fake_model
    session = server.client().request("POST", "/sessions", {"name": "real", "prompt": "hello real claude\nsecond line",
                                                            "dir": str(server.workdir)})
    # The first message waits for the agent to be ready, then goes in as one input.
    wait_for(lambda: any("[from owner] hello real claude\nsecond line" in t for t in user_texts(log)),
             60, 0.2, "the model to receive the first message")
    server.wait_state("real", "idle", 60)
    assert server.session("real")["agent_session_id"], "SessionStart hook never bound Claude's session id"

    # A second message makes the real agent run `sm` through its Bash tool, as itself.
    server.ok("send", "real", "RUN: sm status --json > status.json && touch ran-it.txt")
    workdir = Path(session["workdir"])
    wait_for(lambda: (workdir / "ran-it.txt").exists(), 60, 0.2, "the tool call to run")
    status = json.loads((workdir / "status.json").read_text())
    assert status["you"]["id"] == session["id"], "the agent's sm did not act as the agent"
    server.wait_state("real", "idle", 60)
    assert server.session("real")["queued"] == 0
    assert server.ok("output", "real", "--transcript").strip().endswith("done")


@pytest.fixture
def phone(server_factory, tmp_path: Path, fake_model: tuple[str, Path]) -> Iterator[tuple[Server, Any]]:
    """A real Claude (no allow rule for Bash: its calls raise the real dialog) mirrored to the fake Bot API."""
    from telegram_harness import ThreadedTelegram

    require_claude()
    url, _ = fake_model
    telegram = ThreadedTelegram()
    try:
        env = make_claude_home(tmp_path / "home", tmp_path / "work", allow_bash=False, base_url=url)
        yield server_factory(SM_CLAUDE_COMMAND=str(CLAUDE_BIN),
                             **telegram.env(SM_TELEGRAM_ALLOWED_ROOTS=str(tmp_path)), **env), telegram
    finally:
        telegram.close()


def test_real_permission_dialog_is_approved_from_the_phone(phone: tuple[Server, Any]) -> None:
    from test_permissions import permission_message, text_of

    server, telegram = phone
    session = server.client().request("POST", "/sessions", {
        "name": "real", "prompt": "RUN: touch made-by-claude.txt", "dir": str(server.workdir)})
    thread = telegram.topic_of(session, 60)
    message_id, buttons = permission_message(telegram, thread)
    assert "touch made-by-claude.txt" in text_of(telegram, message_id)
    # The real dialog is on the screen meanwhile.
    wait_for(lambda: "Do you want to proceed?" in server.screen("real"), 30, message="the real dialog")
    assert not (server.workdir / "made-by-claude.txt").exists()
    telegram.press(message_id, buttons["Allow"])
    wait_for(lambda: (server.workdir / "made-by-claude.txt").exists(), 60, 0.2, "the command to run")
    telegram.wait(lambda t: "allowed by Owner" in text_of(t, message_id), message="the outcome")
    server.wait_state("real", "idle", 60)


def test_real_claude_reads_a_file_from_its_inbox_without_a_prompt(
        server_factory, tmp_path: Path, fake_model: tuple[str, Path]) -> None:
    """Files from the phone land outside the agent's directory; sm's allow rule lets
    Claude read them with no permission dialog (and no "trust this directory?" at start)."""
    require_claude()
    url, log = fake_model
    env = make_claude_home(tmp_path / "home", tmp_path / "work", allow_bash=False, base_url=url)
    server = server_factory(SM_CLAUDE_COMMAND=str(CLAUDE_BIN), **env)
    session = server.client().request("POST", "/sessions", {"name": "reader", "dir": str(server.workdir)})
    server.wait_state("reader", "idle", 60)
    inbox = server.state_dir / "inbox" / session["id"]
    inbox.mkdir(parents=True, exist_ok=True)
    (inbox / "note.txt").write_text("the blue box is the bug 4711\n")
    server.ok("send", "reader", f"READ: {inbox / 'note.txt'}")
    wait_for(lambda: any("the blue box is the bug 4711" in t for t in user_texts(log)), 60, 0.2,
             "the file's text to reach the model as the Read tool's result")
    server.wait_state("reader", "idle", 60)
    assert "Do you want" not in server.screen("reader")


def test_the_cards_mode_key_cycles_the_real_claudes_permission_mode(phone: tuple[Server, Any]) -> None:
    server, telegram = phone
    session = server.client().request("POST", "/sessions", {"name": "real", "dir": str(server.workdir)})
    server.wait_state("real", "idle", 60)
    thread = telegram.topic_of(session, 60)

    def footer() -> str:
        return "\n".join(server.screen("real").rstrip().splitlines()[-2:])

    assert "manual mode on" in footer()
    message_id, data = telegram.button(thread, "⇧⇥ Mode")
    telegram.press(message_id, data)
    shown = wait_for(lambda: "accept edits on" in footer() and footer(), 30, 0.2, "the next mode")
    assert "manual mode on" not in shown
