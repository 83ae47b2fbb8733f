"""The Telegram front end, driven through the real aiogram client against a strict fake Bot API."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from conftest import Server, wait_for
from telegram_harness import CHAT, ThreadedTelegram


@pytest.fixture
def telegram() -> Iterator[ThreadedTelegram]:
    tg = ThreadedTelegram()
    yield tg
    tg.close()


@pytest.fixture
def tg_server(server_factory: Callable[..., Server], telegram: ThreadedTelegram, tmp_path: Path) -> Server:
    return server_factory(**telegram.env(SM_TELEGRAM_ALLOWED_ROOTS=str(tmp_path)))


def spawn(server: Server, name: str, prompt: str = "") -> dict[str, Any]:
    return server.spawn_agent(name, prompt, dir=str(server.workdir))


def test_new_creates_a_session_and_its_topic(telegram: ThreadedTelegram, tg_server: Server) -> None:
    telegram.say(f"/new {tg_server.workdir} write the tests")
    session = wait_for(lambda: next(iter(tg_server.json("status")["sessions"]), None), 20,
                       message="the session")
    thread = telegram.topic_of(session)
    assert tg_server.wait_prompt(lambda p: "write the tests" in p) == "[from owner] write the tests"
    card = telegram.wait(lambda t: next((m for m in t.messages(thread) if m.get("reply_markup")), None),
                         message="the status card")
    assert session["id"] in card["text"]
    assert card["message_id"] in telegram.do(lambda: telegram.fake.pinned(CHAT, thread))


def test_text_in_a_topic_arrives_in_the_pane_and_is_acknowledged(telegram: ThreadedTelegram,
                                                                tg_server: Server) -> None:
    session = spawn(tg_server, "eng")
    thread = telegram.topic_of(session)
    sent = telegram.say("please refactor <the> & things", thread)
    got = tg_server.wait_prompt(lambda p: "please refactor" in p)
    assert got == "[from owner via telegram (owner)] please refactor <the> & things"
    telegram.wait(lambda t: any("delivered" in x for x in t.texts(thread)), message="the delivered ack")
    acks = [m for m in telegram.messages(thread) if m.get("reply_to_message_id") == sent["message_id"]]
    assert acks and "delivered" in acks[0]["text"]


def test_kill_asks_for_confirmation_then_kills(telegram: ThreadedTelegram, tg_server: Server) -> None:
    session = spawn(tg_server, "victim")
    thread = telegram.topic_of(session)
    message_id, data = telegram.button(thread, "Kill")
    telegram.press(message_id, data)
    yes_id, yes = telegram.button(thread, "Yes")
    assert tg_server.state("victim") != "dead"
    telegram.press(yes_id, yes)
    wait_for(lambda: all(s["name"] != "victim" for s in tg_server.json("status")["sessions"]),
             message="the kill")
    telegram.wait(lambda t: t.topics()[thread]["closed"], message="the topic to close")


def test_strangers_are_ignored(telegram: ThreadedTelegram, tg_server: Server) -> None:
    session = spawn(tg_server, "eng")
    thread = telegram.topic_of(session)
    message_id, data = telegram.button(thread, "Kill")
    before = len(telegram.messages(thread))
    telegram.say("rm -rf / please", thread, user=telegram.stranger)
    telegram.press(message_id, data + "", user=telegram.stranger)
    telegram.say(f"/new {tg_server.workdir} evil", user=telegram.stranger)
    # The owner's message after the stranger's goes through: so the stranger's were seen and dropped.
    telegram.say("owner was here", thread)
    tg_server.wait_prompt(lambda p: "owner was here" in p)
    assert not any("rm -rf" in p or "evil" in p for p in tg_server.prompts())
    assert len(tg_server.json("status")["sessions"]) == 1
    assert not any("Kill eng?" in t for t in telegram.texts(thread))
    assert "ignoring update from chat" in tg_server.log.read_text()
    del before
