"""The first run, as a new user meets it: the real Claude Code CLI (2.1.330) on a
fresh home, where its first interactive start asks "Make auto mode your default
permission mode?" before any input box appears.

The first message comes from the phone. It must not be pasted into the dialog;
the dialog's choices reach the topic as buttons; a press on "No" answers it,
and then the message goes in, exactly once.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from claude_home import CLAUDE_BIN, make_claude_home, require_claude
from conftest import holds, wait_for
from telegram_harness import ThreadedTelegram
from test_real_claude import fake_model, user_texts  # noqa: F401  (the fixture)

pytestmark = pytest.mark.claude


def test_fresh_home_first_run_dialog_is_answered_from_the_phone(
        server_factory, tmp_path: Path, fake_model: tuple[str, Path]) -> None:  # noqa: F811
    require_claude()
    url, log = fake_model
    telegram = ThreadedTelegram()
    try:
        env = make_claude_home(tmp_path / "home", tmp_path / "work", allow_bash=True, base_url=url,
                               seen_nudges=False)
        server = server_factory(SM_CLAUDE_COMMAND=str(CLAUDE_BIN),
                                **telegram.env(SM_TELEGRAM_ALLOWED_ROOTS=str(tmp_path)), **env)
        session = server.client().request("POST", "/sessions", {"name": "newbie", "dir": str(server.workdir)})
        thread = telegram.topic_of(session, 60)
        no_id, no_data = telegram.button(thread, "No, keep manual mode")
        waiting = server.wait_state("newbie", "waiting", 30)
        assert waiting["state_kind"] == "dialog" and "auto mode" in waiting["state_reason"]

        telegram.say("hello from the phone", thread)
        wait_for(lambda: server.session("newbie")["queued"] == 1, 30, message="the message to be queued")
        # Held: nothing goes into a dialog.
        holds(lambda: not any("hello from the phone" in t for t in user_texts(log))
              and "hello from the phone" not in server.screen("newbie"), 2.0, "the message held")

        telegram.press(no_id, no_data)
        wait_for(lambda: any("hello from the phone" in t for t in user_texts(log)), 60, 0.2,
                 "the model to receive the phone's message")
        server.wait_state("newbie", "idle", 60)
        carrying = [t for t in user_texts(log) if "hello from the phone" in t]
        assert len(set(carrying)) == 1 and carrying[0].count("hello from the phone") == 1
        assert "[from owner via telegram (owner)] hello from the phone" in carrying[0]
        assert server.session("newbie")["queued"] == 0
    finally:
        telegram.close()
