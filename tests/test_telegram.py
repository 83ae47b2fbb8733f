"""The Telegram front end, driven through the real aiogram client against a strict fake Bot API."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any, Callable

import pytest

from conftest import Server, wait_for
from telegram_harness import CHAT, SID, ThreadedTelegram, outbox_rig, telegram, until  # noqa: F401 (a fixture)


@pytest.fixture
def tg_server(server_factory: Callable[..., Server], telegram: ThreadedTelegram, tmp_path: Path) -> Server:
    return server_factory(**telegram.env(SM_TELEGRAM_ALLOWED_ROOTS=str(tmp_path), SM_TELEGRAM_CLOSE_DEAD_AFTER="0.5"))


def spawn(server: Server, name: str, prompt: str = "") -> dict[str, Any]:
    return server.spawn_agent(name, prompt, dir=str(server.workdir))


def test_new_creates_a_session_and_its_topic(telegram: ThreadedTelegram, tg_server: Server) -> None:
    telegram.say(f"/new {tg_server.workdir} write the tests")
    session = wait_for(lambda: next(iter(tg_server.json("status")["sessions"]), None), 20,
                       message="the session")
    thread = telegram.topic_of(session)
    # The person who typed /new is the sender, as for any input from the phone.
    assert tg_server.wait_prompt(lambda p: "write the tests" in p) == "[from owner via telegram (owner)] write the tests"
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
    # Acknowledged with a reaction on the person's own message, not with messages of its own.
    telegram.wait(lambda t: t.reactions(sent["message_id"]) == ["👍"],
                  message="the 👍 reaction")
    assert not [m for m in telegram.messages(thread) if m.get("reply_to_message_id") == sent["message_id"]]


def test_a_restart_between_queueing_and_delivery_keeps_the_reaction(telegram: ThreadedTelegram,
                                                                    tg_server: Server) -> None:
    session = spawn(tg_server, "eng", "long job sleep 60")
    thread = telegram.topic_of(session)
    tg_server.wait_state("eng", "busy")
    sent = telegram.say("after the restart", thread)
    wait_for(lambda: tg_server.session("eng")["queued"] == 1, 40, 0.1, "the message to be queued")
    tg_server.restart()  # the bot with it: what it waits to acknowledge is in its store
    tg_server.ok("send", "eng", "--urgent", "stop the long job")  # the busy turn ends
    tg_server.wait_prompt(lambda p: "after the restart" in p, 30, "the queued message to go in")
    telegram.wait(lambda t: t.do(lambda: t.fake.reactions.get((CHAT, sent["message_id"]))) == ["👍"], 30,
                  message="the 👍 reaction from the restarted bot")


def test_a_turn_posts_its_answer_and_the_card_alone_says_idle(telegram: ThreadedTelegram,
                                                             tg_server: Server) -> None:
    session = spawn(tg_server, "eng", "build it sleep 0.5")
    thread = telegram.topic_of(session)
    telegram.wait(lambda t: any(x.startswith("🤖 ok:") and "build it" in x for x in t.texts(thread)),
                  message="the answer")
    tg_server.wait_state("eng", "idle")
    card_id = telegram.wait(lambda t: (t.do(lambda: t.fake.pinned(CHAT, thread)) or [None])[0], message="the card")
    telegram.wait(lambda t: "idle since" in (t.do(lambda: t.fake.message(CHAT, card_id)) or {}).get("text", ""),
                  message="the card to say idle since …")
    card = telegram.do(lambda: telegram.fake.message(CHAT, card_id))["text"]
    assert "› ok: [from owner] build it" in card  # what it did last
    posts = [x for x in telegram.texts(thread) if x and "since" not in x]
    assert not [x for x in posts if "idle" in x or "busy" in x]  # state changes post nothing
    refused = telegram.do(lambda: list(telegram.fake.rejected))
    assert not [r for r in refused if "not modified" in r[3]]


def test_a_final_answer_in_markdown_arrives_formatted(telegram: ThreadedTelegram, tg_server: Server) -> None:
    import json
    import subprocess
    import sys

    session = spawn(tg_server, "eng")
    thread = telegram.topic_of(session)
    answer = "Done. **Two** things:\n\n- fixed `parse()`\n- added a test\n\n```python\nprint(1 < 2)\n```\n"
    env = {**tg_server.env, **tg_server.agent_env("eng")}
    subprocess.run([str(Path(sys.executable).parent / "sm"), "hook", "Stop"], env=env, check=True,
                   input=json.dumps({"hook_event_name": "Stop", "last_assistant_message": answer}).encode())
    shown = telegram.wait(lambda t: next((m for m in t.messages(thread) if "Two" in (m["text"] or "")), None),
                          message="the answer")
    assert "• fixed parse()" in shown["text"] and "print(1 < 2)" in shown["text"]
    kinds = {e["type"]: e for e in shown["entities"]}
    assert {"bold", "code", "pre"} <= set(kinds)
    assert kinds["pre"].get("language") == "python"


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


def test_agent_output_with_markup_characters_and_10kb_is_accepted(telegram: ThreadedTelegram,
                                                                 tg_server: Server) -> None:
    import json
    import subprocess
    import sys

    session = spawn(tg_server, "eng")
    thread = telegram.topic_of(session)
    answer = "if a < b && c > d: print('<b>not bold</b> & done')\n" + ("x" * 79 + "\n") * 128  # ~10 KB
    env = {**tg_server.env, **tg_server.agent_env("eng")}
    subprocess.run([str(Path(sys.executable).parent / "sm"), "hook", "Stop"], env=env, check=True,
                   input=json.dumps({"hook_event_name": "Stop", "last_assistant_message": answer}).encode())
    tg_server.ok("send", "eng", "<script>alert('&amp;')</script> & more")

    doc = telegram.wait(lambda t: next((m for m in t.messages(thread) if m.get("document")), None),
                        message="the full answer as a file")
    assert doc["document"]["content"].decode() == answer
    texts = telegram.wait(lambda t: [x for x in t.texts(thread) if "not bold" in x or "<script>" in x]
                          if len([x for x in t.texts(thread) if "not bold" in x or "<script>" in x]) >= 2
                          else None, message="both texts")
    joined = "\n".join(texts)
    assert "if a < b && c > d: print('<b>not bold</b> & done')" in joined
    assert "owner → eng: <script>alert('&amp;')</script> & more" in joined
    assert not [r for r in telegram.do(lambda: list(telegram.fake.rejected)) if r[2] == 400]


def test_300_mirrored_messages_across_10_topics_arrive_in_order(server_factory: Callable[..., Server],
                                                               tmp_path: Path) -> None:
    import time

    # Telegram's 20-a-minute group window, scaled to 6 s on both sides to keep the test short.
    tg = ThreadedTelegram(window_scale=0.1)
    try:
        server = server_factory(**tg.env(SM_TELEGRAM_ALLOWED_ROOTS=str(tmp_path),
                                         SM_TELEGRAM_RATE_WINDOW="6"))
        sessions = [server.spawn_agent(f"agent{i}", "", dir=str(server.workdir)) for i in range(10)]
        client = server.client()
        started = time.monotonic()
        for n in range(30):
            for i in range(10):
                client.request("POST", f"/sessions/agent{i}/input", {"text": f"m{i}-{n:02d} " + "y" * 40})
        assert time.monotonic() - started < 30
        threads = {s["id"]: tg.topic_of(s, 60) for s in sessions}

        def in_order(t: ThreadedTelegram) -> bool:
            for i, s in enumerate(sessions):
                text = "\n".join(t.texts(threads[s["id"]]))
                found = [text.find(f"m{i}-{n:02d} ") for n in range(30)]
                if -1 in found or found != sorted(found):
                    return False
            return True

        tg.wait(in_order, 120, message="all 300 messages, in order in each topic")
        calls = tg.do(lambda: len([c for c in tg.fake.calls if c[0] in ("sendMessage", "editMessageText")]))
        assert calls < 150, f"{calls} send/edit calls for 300 messages: not coalescing"
    finally:
        tg.close()


async def test_everything_queued_during_a_60s_outage_is_delivered_afterwards(tmp_path: Path) -> None:
    """The outbox in-process on virtual time: a minute of Telegram down costs no wall-clock minute."""
    async with outbox_rig(tmp_path) as rig:
        await rig.outbox.put(rig.CHAT, "text", {"html": "before"}, SID)
        await rig.fake.wait_for(lambda f: any("before" in t for t in rig.texts()))
        rig.fake.outage(True)
        down_at = rig.clock()
        for n in range(5):
            await rig.outbox.put(rig.CHAT, "text", {"html": f"during outage {n}"}, SID)
        # A full minute of the outbox's own time passes, retrying with backoff, and nothing gets through.
        await until(lambda: rig.clock() - down_at >= 60, message="a minute of retries")
        assert rig.fake.outage_hits >= 5
        assert not any("during outage" in t for t in rig.texts())
        rig.fake.outage(False)
        await rig.fake.wait_for(lambda f: all(any(f"during outage {n}" in t for t in rig.texts())
                                              for n in range(5)))
        joined = "\n".join(rig.texts())
        found = [joined.find(f"during outage {n}") for n in range(5)]
        assert found == sorted(found)


def test_reply_to_a_mirrored_message_outside_a_topic_is_input(server_factory: Callable[..., Server],
                                                              tmp_path: Path) -> None:
    """A private chat without topics: sessions are mirrored into the chat itself."""
    from telegram_harness import OWNER_ID

    tg = ThreadedTelegram()
    try:
        tg.do(lambda: tg.fake.add_private_chat(tg.owner))
        tg.do(lambda: setattr(tg.fake.limits, "private_per_second", None))
        env = tg.env(SM_TELEGRAM_ALLOWED_ROOTS=str(tmp_path), SM_TELEGRAM_CHAT_ID=str(OWNER_ID))
        server = server_factory(**env)
        server.spawn_agent("eng", "", dir=str(server.workdir))
        server.spawn_agent("ops", "", dir=str(server.workdir))
        server.ok("send", "eng", "mirrored for eng")

        def mirrored(t: ThreadedTelegram) -> dict | None:
            msgs = t.do(lambda: t.fake.messages(OWNER_ID))
            return next((m for m in msgs if "mirrored for eng" in (m["text"] or "")), None)

        message = tg.wait(mirrored, message="the mirrored message in the private chat")
        assert message["text"].startswith("[eng · ")

        def remembered() -> bool:
            # The bot maps a message to its session once sendMessage has answered;
            # a person's reply comes seconds later, a test's at once: wait for it.
            with sqlite3.connect(server.state_dir / "sm.db") as db:
                return db.execute("SELECT 1 FROM mirrored WHERE chat_id = ? AND message_id = ?",
                                  (OWNER_ID, message["message_id"])).fetchone() is not None

        wait_for(remembered, timeout=30, message="the bot to map the message to its session")
        tg.do(lambda: tg.fake.send_text(OWNER_ID, tg.owner, "answer via reply",
                                        reply_to_message_id=message["message_id"]))
        got = server.wait_prompt(lambda p: "answer via reply" in p)
        assert got == "[from owner via telegram (owner)] answer via reply"
    finally:
        tg.close()


def test_a_deleted_topic_is_made_again(telegram: ThreadedTelegram, tg_server: Server) -> None:
    session = spawn(tg_server, "eng")
    old = telegram.topic_of(session)
    telegram.wait(lambda t: any("Spawned" in x for x in t.texts(old)), message="the spawn notice")

    def delete() -> None:
        telegram.fake._chats[CHAT].topics[old].deleted = True  # a person deleted it in the app

    telegram.do(delete)
    tg_server.ok("send", "eng", "after the deletion")
    new = telegram.wait(lambda t: next((tid for tid, topic in t.topics().items()
                                        if tid != old and topic["name"].startswith("eng · ")), None),
                        message="a new topic")
    telegram.wait(lambda t: any("after the deletion" in x for x in t.texts(new)), message="the message in it")


def test_rename_renames_the_topic(telegram: ThreadedTelegram, tg_server: Server) -> None:
    session = spawn(tg_server, "eng")
    thread = telegram.topic_of(session)
    tg_server.ok("name", "eng", "architect")
    telegram.wait(lambda t: t.topics()[thread]["name"] == f"architect · {session['id']}",
                  message="the renamed topic")


def test_list_status_and_open_answer_where_asked(telegram: ThreadedTelegram, tg_server: Server) -> None:
    session = spawn(tg_server, "eng")
    thread = telegram.topic_of(session)
    telegram.say("/list")
    listing = telegram.wait(lambda t: next((m for m in t.messages(0) if "eng" in (m["text"] or "")
                                            and m.get("reply_markup")), None), message="/list")
    button = listing["reply_markup"]["inline_keyboard"][0][0]
    assert button["url"].endswith(f"/{thread}")
    telegram.say("/status", thread)
    telegram.wait(lambda t: sum("idle since" in x for x in t.texts(thread)) >= 2, message="/status in the topic")
    commands = telegram.do(lambda: [c["command"] for c in telegram.fake.commands])
    assert {"new", "list", "status", "kill", "open", "help"} <= set(commands)
    telegram.say(f"/open {session['id']}")
    opened = telegram.wait(lambda t: next((x for x in t.texts(0) if "attach-session" in x), None),
                           message="/open")
    assert f"tmux -L {tg_server.socket} attach-session -t sm-{session['id']}" in opened


def test_new_refuses_a_path_outside_the_allowed_roots(telegram: ThreadedTelegram, tg_server: Server) -> None:
    telegram.say("/new /etc do something")
    telegram.wait(lambda t: any("not an existing directory under the allowed roots" in x for x in t.texts(0)),
                  message="the refusal")
    assert tg_server.json("status")["sessions"] == []


def test_replies_follow_the_persons_language(telegram: ThreadedTelegram, tg_server: Server) -> None:
    session = spawn(tg_server, "eng")
    thread = telegram.topic_of(session)
    russian = dict(telegram.owner, language_code="ru")
    telegram.say("/kill", thread, user=russian)
    telegram.wait(lambda t: any("Завершить eng?" in x for x in t.texts(thread)), message="Russian")


def test_urgent_from_the_phone_interrupts(telegram: ThreadedTelegram, tg_server: Server) -> None:
    session = spawn(tg_server, "eng", "long job sleep 60")
    thread = telegram.topic_of(session)
    tg_server.wait_state("eng", "busy")
    telegram.say("!stop that", thread)
    assert tg_server.wait_prompt(lambda p: "stop that" in p) == "[from owner via telegram (owner)] stop that"


def test_a_message_that_fails_reaches_the_phone(telegram: ThreadedTelegram, tg_server: Server) -> None:
    session = tg_server.spawn_agent("eng", "working sleep 30", dir=str(tg_server.workdir))
    thread = telegram.topic_of(session)
    tg_server.wait_state("eng", "busy")
    tg_server.ok("send", "eng", "doomed message")
    tg_server.kill_agent_process("eng")  # the agent dies mid-task
    shown = telegram.wait(lambda t: next((x for x in t.texts(thread) if "not delivered" in x), None),
                          message="the failure in the topic")
    assert "eng" in shown and "agent exited" in shown and "doomed message" in shown


def test_a_persons_message_that_fails_gets_a_thumbs_down_and_the_reason(telegram: ThreadedTelegram,
                                                                       tg_server: Server) -> None:
    session = tg_server.spawn_agent("eng", "working sleep 30", dir=str(tg_server.workdir))
    thread = telegram.topic_of(session)
    tg_server.wait_state("eng", "busy")
    sent = telegram.say("are you there?", thread)
    wait_for(lambda: tg_server.session("eng")["queued"] == 1, 30, message="the message to be queued")
    tg_server.kill_agent_process("eng")
    telegram.wait(lambda t: t.reactions(sent["message_id"]) == ["👎"],
                  message="the 👎 reaction")
    reply = telegram.wait(lambda t: next((m for m in t.messages(thread)
                                          if m.get("reply_to_message_id") == sent["message_id"]), None),
                          message="the reply with the reason")
    assert "not delivered" in reply["text"] and "agent exited" in reply["text"]


def test_the_screen_button_and_slash_screen_send_a_picture_of_the_pane(telegram: ThreadedTelegram,
                                                                        tg_server: Server) -> None:
    import io

    from PIL import Image

    session = spawn(tg_server, "eng", "draw something")
    tg_server.wait_turn_done("eng", "draw something")
    thread = telegram.topic_of(session)
    message_id, data = telegram.button(thread, "Screen")
    telegram.press(message_id, data)
    photo = telegram.wait(lambda t: next((m for m in t.messages(thread)
                                          if t.do(lambda: t.fake.photo(CHAT, m["message_id"]))), None),
                          message="the screenshot")
    assert photo["caption"].startswith("eng · idle")
    image = Image.open(io.BytesIO(telegram.do(lambda: telegram.fake.photo(CHAT, photo["message_id"]))))
    assert image.width > image.height > 100  # a 200×50 pane, drawn
    assert len(image.convert("L").getcolors(256) or []) > 2  # text on a background, not a blank
    telegram.say("/screen", thread)
    telegram.wait(lambda t: sum(1 for m in t.messages(thread) if t.do(lambda: t.fake.photo(CHAT, m["message_id"])))
                  == 2, message="the second screenshot")
