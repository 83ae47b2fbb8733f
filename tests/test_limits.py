"""Usage limits: the session is limited (not errored), its queue held, then continued at the reset."""

from __future__ import annotations

import datetime as dt
import json
from typing import Callable
from zoneinfo import ZoneInfo

import pytest

from conftest import Server, holds
from core.limits import is_limit, limit_line, reset_time, retry_at

BERLIN = ZoneInfo("Europe/Berlin")
# 2026-03-10 13:20 in Berlin
NOW = dt.datetime(2026, 3, 10, 13, 20, tzinfo=BERLIN).timestamp()


def at(day: int, hour: int, minute: int = 0, zone: dt.tzinfo = BERLIN) -> float:
    return dt.datetime(2026, 3, day, hour, minute, tzinfo=zone).timestamp()


@pytest.mark.parametrize("text, expected", [
    ("You've hit your limit · resets 3pm", at(10, 15)),
    ("5-hour limit reached ∙ resets 3:30pm", at(10, 15, 30)),
    ("limit reached · resets 1pm", at(11, 13)),  # already past today: tomorrow
    ("usage limit · resets at 15:45", at(10, 15, 45)),
    ("You've hit your limit · resets 3pm (America/New_York)", at(10, 15, zone=ZoneInfo("America/New_York"))),
    ("You've hit your limit · resets 12am", at(11, 0)),
    ("You've hit your limit", None),
    ("resets 5", None),  # no time of day
    ("resets 13pm", None),
])
def test_the_reset_time_is_read_where_it_is_shown(text: str, expected: float | None) -> None:
    assert reset_time(text, NOW, BERLIN) == expected


def test_without_a_reset_time_sm_retries_after_the_interval() -> None:
    assert retry_at("You've hit your limit", NOW, 300, 60) == (NOW + 300, False)


@pytest.mark.parametrize("error, text, limited", [
    ("rate_limit", "", True),
    ("unknown", "You've hit your limit · resets 3pm", True),
    ("overloaded", "Overloaded", False),
    ("server_error", "", False),
])
def test_what_counts_as_a_limit(error: str, text: str, limited: bool) -> None:
    assert is_limit(error, text) is limited


def test_the_limit_line_is_found_on_screen() -> None:
    screen = "● working\n  ⎿ You've hit your limit · resets 3pm\n\n────\n❯ \n────\n  ? for shortcuts"
    assert limit_line(screen) == "You've hit your limit · resets 3pm"
    assert limit_line("● all good\n❯ ") is None


def test_a_limited_agent_is_held_then_continued_and_its_queue_follows(
        server_factory: Callable[..., Server]) -> None:
    server = server_factory(SM_LIMIT_RETRY="5", SM_LIMIT_CONTINUE="please continue")
    server.spawn_agent("eng")
    server.spawn_agent("boss")
    server.ok("send", "eng", "big task hit-limit")
    server.ok("wait", "eng", "600", env=server.agent_env("boss"))
    limited = server.wait_state("eng", "limited", 15)
    assert limited["state_kind"] == "usage limit"
    assert "hit your limit" in limited["state_reason"] and "no reset time shown" in limited["state_reason"]
    server.ok("send", "eng", "queued while limited")
    server.ok("send", "eng", "urgent while limited", "--urgent")  # not even an urgent one goes in
    # Held: nothing is pasted into a limited agent, and the wait does not fire as idle.
    holds(lambda: not any("while limited" in p for p in server.prompts())
          and not any(p.startswith("[sm] eng") for p in server.prompts())
          and server.state("eng") == "limited", 3, "the limited agent being left alone")
    # At the retry time: the continue message first, then the queue.
    server.wait_prompt(lambda p: "queued while limited" in p, 20, "the queue after the reset")
    prompts = server.prompts()
    continued = [i for i, p in enumerate(prompts) if "please continue" in p]
    assert len(continued) == 1  # once, with the urgent message that waited beside it
    assert continued[0] < next(i for i, p in enumerate(prompts) if "queued while limited" in p)
    server.wait_prompt(lambda p: p.startswith("[sm] eng is idle"), 20, "the wait to fire once eng is done")


def test_a_limit_is_found_in_the_transcript_when_the_screen_has_none(tmp_path) -> None:
    from core.limits import limit_notice

    transcript = tmp_path / "t.jsonl"
    lines = [
        {"type": "user", "message": {"role": "user", "content": "do the thing"}},
        {"type": "assistant", "message": {"content": [
            {"type": "text", "text": "You've hit your limit · resets 3pm (Europe/Berlin)"}]}},
    ]
    transcript.write_text("".join(json.dumps(line) + "\n" for line in lines))
    clean_screen = "❯ \n? for shortcuts\n"
    assert "resets 3pm" in (limit_notice(clean_screen, str(transcript)) or "")
    transcript.write_text(json.dumps({"type": "assistant", "message": {"content": "all done"}}) + "\n")
    assert limit_notice(clean_screen, str(transcript)) is None
    assert limit_notice(clean_screen, None) is None
