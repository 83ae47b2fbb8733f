"""The card's toolbar, the topic's title and notifications, and Live: through the real
aiogram client against the strict fake Bot API, with fake agents in real tmux panes."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest

from conftest import FAKE_AGENT, Server, holds, wait_for
from telegram_harness import CHAT, ThreadedTelegram, telegram  # noqa: F401 (a fixture)


# Telegram's group window, a minute, is 6 s here and in sm-bot (SM_TELEGRAM_RATE_WINDOW):
# these tests send more than 20 messages a minute, and are not about the budget.
TELEGRAM_WINDOW_SCALE = 0.1


@pytest.fixture
def keylog(tmp_path: Path) -> Path:
    path = tmp_path / "keys"
    path.mkdir()
    return path


@pytest.fixture
def tg_server(server_factory: Callable[..., Server], telegram: ThreadedTelegram, tmp_path: Path,
              keylog: Path) -> Server:
    import sys
    return server_factory(**telegram.env(SM_TELEGRAM_ALLOWED_ROOTS=str(tmp_path), SM_TELEGRAM_RATE_WINDOW="6"),
                          FAKE_AGENT_KEYLOG=str(keylog),
                          SM_SHELL_COMMAND=f"{sys.executable} {FAKE_AGENT}",
                          SM_TELEGRAM_RENAME_INTERVAL="3", SM_TELEGRAM_CLOSE_DEAD_AFTER="1",
                          SM_TELEGRAM_BUSY_REACTION_AFTER="1", SM_TELEGRAM_LIVE_INTERVAL="0.5")


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


# -- the topic's title ----------------------------------------------------------------------------


def renames(telegram: ThreadedTelegram, thread: int) -> list[str]:
    """The "topic edited" lines Telegram posted into the topic, as the titles they gave."""
    return [m["forum_topic_edited"]["name"] for m in telegram.do(
        lambda: telegram.fake.service_messages(CHAT, thread)) if "forum_topic_edited" in m]


def test_a_topic_title_says_when_the_session_needs_you_and_busy_idle_never_rename(
        telegram: ThreadedTelegram, tg_server: Server) -> None:
    session = tg_server.spawn_agent("eng", "first sleep 0.3", dir=str(tg_server.workdir))
    thread = telegram.topic_of(session)
    name = f"eng · {session['id']}"
    tg_server.wait_turn_done("eng", "first sleep 0.3")
    tg_server.ok("send", "eng", "second sleep 0.3")
    tg_server.wait_turn_done("eng", "second sleep 0.3")
    assert telegram.topics()[thread]["name"] == name and renames(telegram, thread) == []
    tg_server.ok("send", "eng", "hit-limit")
    tg_server.wait_state("eng", "limited")
    telegram.wait(lambda t: t.topics()[thread]["name"] == f"⏸ {name}", message="the ⏸ title")
    # A second change within the interval waits for it; then the latest state is the title.
    tg_server.kill_agent_process("eng")
    tg_server.wait_state("eng", "errored")
    holds(lambda: telegram.topics()[thread]["name"] == f"⏸ {name}", 1, "the title within the interval")
    telegram.wait(lambda t: t.topics()[thread]["name"] == f"⚠️ {name}", message="the ⚠️ title")
    assert renames(telegram, thread) == [f"⏸ {name}", f"⚠️ {name}"]


def test_a_dead_sessions_topic_closes_after_a_while_and_list_reopens_it(telegram: ThreadedTelegram,
                                                                         tg_server: Server) -> None:
    session = tg_server.spawn_agent("eng", dir=str(tg_server.workdir))
    thread = telegram.topic_of(session)
    tg_server.ok("kill", "eng")
    telegram.wait(lambda t: t.topics()[thread]["closed"], message="the topic to close")
    assert telegram.topics()[thread]["name"].startswith("💀 ")
    telegram.say("/list")
    message_id, data = telegram.button(None, f"↩ Reopen 💀 eng · {session['id']}")
    telegram.press(message_id, data)
    telegram.wait(lambda t: not t.topics()[thread]["closed"], message="the topic to reopen")


# -- notifications --------------------------------------------------------------------------------


def answer_in(telegram: ThreadedTelegram, thread: int, start: str) -> dict[str, Any]:
    """The topic's first message with a line that starts with `start` (texts of a topic may go
    out together as one message; the card quotes answers too, behind "› ")."""
    return telegram.wait(lambda t: next((m for m in t.messages(thread) if any(
        line.startswith(start) for line in (m["text"] or "").splitlines())), None), message=repr(start))


def test_the_card_cycles_the_topics_notifications(telegram: ThreadedTelegram, tg_server: Server) -> None:
    session = tg_server.spawn_agent("eng", dir=str(tg_server.workdir))
    thread = telegram.topic_of(session)
    tg_server.ok("send", "eng", "loud")
    assert not answer_in(telegram, thread, "🤖 ok: [from owner] loud")["silent"]
    tap(telegram, thread, "🔔 All")
    telegram.button(thread, "🔕 Actionable only")  # the card shows the new mode
    tg_server.ok("send", "eng", "quiet answer")
    assert answer_in(telegram, thread, "🤖 ok: [from owner] quiet answer")["silent"]
    tg_server.ok("send", "eng", "hit-limit")  # a limit needs you: it still rings
    assert not answer_in(telegram, thread, "⏸ hit a usage limit")["silent"]
    tap(telegram, thread, "🔕 Actionable only")
    telegram.button(thread, "🔇 Muted")
    tg_server.kill_agent_process("eng")
    assert answer_in(telegram, thread, "⚠️ errored")["silent"]  # muted: even what needs you is silent
    tap(telegram, thread, "🔇 Muted")
    telegram.button(thread, "🔔 All")


def test_terminal_clients_are_counted_and_control_clients_are_not(tmp_path: Path) -> None:
    import asyncio
    import secrets
    import subprocess

    from core.tmux import Tmux

    socket = f"sm-test-{secrets.token_hex(4)}"
    tmux = Tmux(socket, tmp_path)
    subprocess.run(["tmux", "-L", socket, "-f", "/dev/null", "new-session", "-d", "-s", "work", "sleep 60"],
                   check=True)
    control = subprocess.Popen(["tmux", "-L", socket, "-C", "attach", "-t", "work"], stdin=subprocess.PIPE,
                               stdout=subprocess.DEVNULL)
    terminal = None
    try:
        wait_for(lambda: "control-mode" in subprocess.run(
            ["tmux", "-L", socket, "list-clients", "-F", "#{client_flags}"], capture_output=True,
            text=True).stdout, 10, message="the control client")
        assert asyncio.run(tmux.terminal_clients("work")) == 0
        terminal = subprocess.Popen(["script", "-qfc", f"tmux -L {socket} attach -t work", "/dev/null"],
                                    stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
        wait_for(lambda: asyncio.run(tmux.terminal_clients("work")) == 1, 10, message="the terminal client")
        assert asyncio.run(tmux.terminal_clients("no-such-session")) == 0
    finally:
        for proc in (control, terminal):
            if proc is not None:
                proc.kill()
                proc.wait()
        subprocess.run(["tmux", "-L", socket, "kill-server"], capture_output=True)


def test_while_a_person_is_attached_at_a_terminal_the_topic_is_silent(telegram: ThreadedTelegram,
                                                                      tg_server: Server) -> None:
    import subprocess

    session = tg_server.spawn_agent("eng", dir=str(tg_server.workdir))
    thread = telegram.topic_of(session)
    command = f"tmux -L {tg_server.socket} attach -t sm-{session['id']}"
    terminal = subprocess.Popen(["script", "-qfc", command, "/dev/null"], stdin=subprocess.PIPE,
                                stdout=subprocess.DEVNULL)
    try:
        # The bot looks at who is attached every few seconds: a turn soon shows it.
        def silent_turn(n: list[int] = [0]) -> bool:
            n[0] += 1
            tg_server.ok("send", "eng", f"turn {n[0]}")
            return answer_in(telegram, thread, f"🤖 ok: [from owner] turn {n[0]}")["silent"]
        wait_for(silent_turn, 30, interval=0.5, message="an answer sent silently")
    finally:
        terminal.kill()
        terminal.wait()


# -- verbose, the current tool, 👀 ----------------------------------------------------------------


def test_verbose_topics_post_tool_calls_and_the_card_shows_the_current_tool(telegram: ThreadedTelegram,
                                                                            tg_server: Server) -> None:
    session = tg_server.spawn_agent("eng", dir=str(tg_server.workdir))
    thread = telegram.topic_of(session)
    tg_server.ok("send", "eng", "quiet work")
    answer_in(telegram, thread, "🤖 ok: [from owner] quiet work")
    assert not [x for x in telegram.texts(thread) if x.startswith("🔧 Bash")]
    tap(telegram, thread, "🔧 Tools: off")
    telegram.button(thread, "🔧 Tools: on")
    tg_server.ok("send", "eng", "long work sleep 20")  # the card shows the tool while it runs
    card_id = telegram.do(lambda: telegram.fake.pinned(CHAT, thread))[0]
    # A line of its own, or (chatter under pressure) folded into the card's note.
    telegram.wait(lambda t: any(line.startswith("🔧 Bash: true") for x in t.texts(thread) for line in x.splitlines())
                  or "🗒 🔧 Bash: true" in t.do(lambda: t.fake.message(CHAT, card_id))["text"],
                  message="the tool call posted")
    telegram.wait(lambda t: "› 🔧 Bash: true" in t.do(lambda: t.fake.message(CHAT, card_id))["text"],
                  message="the card to show the current tool")


def test_a_message_kept_waiting_by_a_busy_agent_gets_eyes_then_a_thumbs_up(telegram: ThreadedTelegram,
                                                                           tg_server: Server) -> None:
    session = tg_server.spawn_agent("eng", "long job sleep 4", dir=str(tg_server.workdir))
    thread = telegram.topic_of(session)
    tg_server.wait_state("eng", "busy")
    sent = telegram.say("after that, this", thread)
    telegram.wait(lambda t: t.reactions(sent["message_id"]) == ["👀"],
                  message="the 👀 reaction")
    tg_server.wait_prompt(lambda p: "after that, this" in p)
    telegram.wait(lambda t: t.reactions(sent["message_id"]) == ["👍"],
                  message="the 👍 reaction")


# -- Live ---------------------------------------------------------------------------------------


def photos(telegram: ThreadedTelegram, thread: int) -> list[dict[str, Any]]:
    return [m for m in telegram.messages(thread) if telegram.do(lambda: telegram.fake.photo(CHAT, m["message_id"]))]


def test_live_replaces_the_photo_as_the_screen_changes_and_stops_on_idle(telegram: ThreadedTelegram,
                                                                          tg_server: Server) -> None:
    import subprocess

    session = tg_server.spawn_agent("eng", "long job sleep 8", dir=str(tg_server.workdir))
    thread = telegram.topic_of(session)
    tg_server.wait_state("eng", "busy")
    pane = tg_server.session("eng")["pane_id"]

    def type_in_pane(text: str) -> None:  # a person at the terminal: the screen changes
        subprocess.run(["tmux", "-L", tg_server.socket, "send-keys", "-t", pane, "-l", text], check=True)

    tap(telegram, thread, "📺 Live")
    telegram.button(thread, "⏹ Live")  # the card says a view runs
    photo = telegram.wait(lambda t: next(iter(photos(t, thread)), None), message="the live photo")
    first = telegram.do(lambda: telegram.fake.photo(CHAT, photo["message_id"]))
    type_in_pane("changing the screen")
    telegram.wait(lambda t: t.do(lambda: t.fake.photo(CHAT, photo["message_id"])) != first,
                  message="the photo replaced by the new screen")
    assert len(photos(telegram, thread)) == 1  # the same message, replaced
    tg_server.wait_state("eng", "idle", 30)
    telegram.button(thread, "📺 Live")  # stopped on idle; the card's button says so
    shown = telegram.do(lambda: telegram.fake.photo(CHAT, photo["message_id"]))
    type_in_pane(" and more")
    holds(lambda: telegram.do(lambda: telegram.fake.photo(CHAT, photo["message_id"])) == shown, 2,
          "the photo, once Live stopped")
    assert len(photos(telegram, thread)) == 1


def test_one_live_view_per_chat(telegram: ThreadedTelegram, tg_server: Server) -> None:
    first = tg_server.spawn_agent("one", "long job sleep 30", dir=str(tg_server.workdir))
    second = tg_server.spawn_agent("two", "long job sleep 30", dir=str(tg_server.workdir))
    one, two = telegram.topic_of(first), telegram.topic_of(second)
    tg_server.wait_state("one", "busy")
    tg_server.wait_state("two", "busy")
    tap(telegram, one, "📺 Live")
    telegram.button(one, "⏹ Live")
    tap(telegram, two, "📺 Live")
    telegram.button(two, "⏹ Live")
    telegram.button(one, "📺 Live")  # the first view stopped when the second started
    tap(telegram, two, "⏹ Live")
    telegram.button(two, "📺 Live")  # and a second tap stops a view
