"""Tokens and cost, from transcripts written by the real Claude Code CLI (2.1.330).

The model behind it is tests/fake_anthropic.py, answering every main call
with known `usage` figures and, for `SAY+RUN:`, with two content blocks (text
then a tool use), which Claude Code writes as two transcript lines carrying
the same message id and usage.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from claude_home import CLAUDE_BIN, make_claude_home, require_claude
from conftest import Server, wait_for
from fake_anthropic import is_side_request

USAGE = {"input_tokens": 1000, "output_tokens": 200, "cache_creation_input_tokens": 30,
         "cache_read_input_tokens": 4000}
# claude-opus-5-5 (Claude Code 2.1.330's default) at $4 / $20 / $5 cache write / $0.20 cache read per M.
COST_PER_CALL = (1000 * 4 + 200 * 20 + 30 * 5 + 4000 * 0.2) / 1e6


@pytest.fixture
def fake_model(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    log = tmp_path / "model-requests.jsonl"
    proc = subprocess.Popen([sys.executable, str(Path(__file__).parent / "fake_anthropic.py"), "--port", "0",
                             "--log-requests", str(log), "--usage", json.dumps(USAGE)],
                            stdout=subprocess.PIPE, text=True)
    url = proc.stdout.readline().strip() if proc.stdout else ""
    assert url.startswith("http://127.0.0.1:"), url
    yield url, log
    proc.terminate()
    proc.wait(10)


def main_calls(log: Path) -> int:
    """Model calls of the agent's own loop (side requests are not in its transcript)."""
    if not log.exists():
        return 0
    return sum(1 for line in log.read_text().splitlines() if not is_side_request(json.loads(line)))


def assistant_lines(path: str) -> tuple[int, int]:
    """(lines with a usage, distinct message ids) in a transcript."""
    lines, ids = 0, set()
    for line in Path(path).read_text().splitlines():
        entry = json.loads(line)
        message = entry.get("message")
        if isinstance(message, dict) and "usage" in message:
            lines += 1
            ids.add(message["id"])
    return lines, len(ids)


class Settled:
    """True once `value()` has not changed for `quiet` seconds (polled by wait_for)."""

    def __init__(self, value, quiet: float = 3.0) -> None:
        self.value, self.quiet = value, quiet
        self.last, self.since = None, time.monotonic()

    def __call__(self) -> bool:
        now = self.value()
        if now != self.last:
            self.last, self.since = now, time.monotonic()
        return time.monotonic() - self.since >= self.quiet


def usage_of(server: Server, name: str) -> dict:
    return server.session(name)["usage"]


def bytes_read(server: Server) -> int:
    return server.client().request("GET", "/health")["transcript_bytes_read"]


@pytest.mark.claude
def test_tokens_and_cost_of_a_real_claude_session(server_factory, tmp_path: Path,
                                                  fake_model: tuple[str, Path]) -> None:
    from telegram_harness import ThreadedTelegram

    require_claude()
    url, log = fake_model
    # Telegram's 20-a-minute group window, scaled to 6 s on both sides to keep the test short.
    telegram = ThreadedTelegram(window_scale=0.1)
    try:
        env = make_claude_home(tmp_path / "home", tmp_path / "work", allow_bash=True, base_url=url)
        server = server_factory(SM_CLAUDE_COMMAND=str(CLAUDE_BIN), **env, **telegram.env(
            SM_TELEGRAM_ALLOWED_ROOTS=str(tmp_path), SM_TELEGRAM_RATE_WINDOW="6"))
        session = server.client().request("POST", "/sessions", {"name": "real", "prompt": "SAY+RUN: echo one",
                                                                "dir": str(server.workdir)})
        wait_for(lambda: main_calls(log) >= 2, 60, 0.2, "two model calls")
        server.wait_turn_done("real", "done", 60)
        transcript = server.session("real")["transcript_path"]
        lines, ids = assistant_lines(transcript)
        assert lines > ids == main_calls(log) == 2, "each message was not several lines"

        # Each message counted once, by its id.
        u = wait_for(lambda: (u := usage_of(server, "real"))["input"] == 2000 and u, 15, 0.2, "usage")
        assert (u["input"], u["output"], u["cache_read"], u["cache_write"]) == (2000, 400, 8000, 60)
        assert u["models"] == ["claude-opus-5-5"]
        assert u["cost"] == pytest.approx(2 * COST_PER_CALL)
        assert "$0.02" in server.ok("status")  # the COST column

        # Appending: only the new bytes are read.
        size_before, read_before = Path(transcript).stat().st_size, bytes_read(server)
        server.ok("send", "real", "SAY+RUN: echo two")
        wait_for(lambda: main_calls(log) >= 4, 60, 0.2, "two more model calls")
        wait_for(lambda: usage_of(server, "real")["input"] == 4000, 30, 0.2, "the new figures")
        grown = Path(transcript).stat().st_size - size_before
        read = bytes_read(server) - read_before
        assert grown <= read < size_before + grown, (grown, read, size_before)

        # After a /clear, the old transcript still counts, and the new one too.
        server.wait_state("real", "idle", 60)
        server.ok("clear", "real", "SAY+RUN: echo three")
        wait_for(lambda: server.session("real")["transcript_path"] != transcript, 60, 0.2, "a new transcript")
        wait_for(lambda: usage_of(server, "real")["input"] == 6000, 60, 0.2, "figures across the /clear")
        server.wait_state("real", "idle", 60)
        assert main_calls(log) == 6

        # /cost in the topic, through the Bot API.
        calls = 6
        thread = telegram.topic_of(session, 30)
        telegram.say("/cost", thread)
        expected = f"${calls * COST_PER_CALL:.2f}"
        telegram.wait(lambda t: any("Total:" in x and expected in x for x in t.texts(thread)), 60,
                      message=f"/cost answering {expected}")
        # /cost in the group: everything today.
        telegram.say("/cost")
        telegram.wait(lambda t: any("Cost today" in x and "real" in x and expected in x for x in t.texts(None)),
                      message="/cost in the group")
        # The card carries it too.
        wait_for(lambda: any("💰" in x and expected in x for x in telegram.texts(thread)), 30, 0.2,
                 "the card's cost line")

        # A subagent's calls are in a transcript of its own; they count too. (2.1.330 may call
        # the model once more when the subagent's result arrives: wait for the calls to settle.)
        server.ok("send", "real", "AGENT: count to three")
        wait_for(lambda: main_calls(log) >= 9, 60, 0.2, "the subagent's call and the parent's")
        settled = Settled(lambda: main_calls(log))
        wait_for(lambda: settled() and server.state("real") == "idle"
                 and usage_of(server, "real")["input"] == 1000 * main_calls(log), 90, 0.2,
                 "the subagent's figures")
        current = server.session("real")["transcript_path"]
        subagents = list(Path(current[:-len(".jsonl")], "subagents").glob("*.jsonl"))
        assert len(subagents) == 1 and assistant_lines(str(subagents[0]))[1] == 1
        calls = main_calls(log)

        # Stored: a restart reads nothing again, and a price override changes the cost.
        server.env["SM_PRICES"] = json.dumps({"claude-opus-5-5": {"input": 1000}})
        server.restart()
        u = usage_of(server, "real")
        assert (u["input"], u["output"]) == (calls * 1000, calls * 200)
        assert bytes_read(server) == 0
        assert u["cost"] == pytest.approx(calls * (1000 * 1000 + 200 * 20 + 30 * 5 + 4000 * 0.2) / 1e6)
        total = server.json("cost")["total"]
        assert total["input"] == calls * 1000 and total["cost"] == pytest.approx(u["cost"])
    finally:
        telegram.close()


def test_usage_is_read_when_a_turn_ends_and_status_reads_no_transcript(server_factory) -> None:
    # tests/fake_agent.py records each answer as a model call with this usage, then fires Stop.
    server = server_factory(FAKE_AGENT_USAGE=json.dumps(USAGE))
    for name in ("one", "two", "three"):
        server.spawn_agent(name)
    server.ok("send", "one", "first")
    server.wait_turn_done("one", "first")
    # Read at the turn's end: no `sm cost` asked, and only this session has figures.
    wait_for(lambda: usage_of(server, "one")["input"] == 1000, 15, 0.1, "the turn's usage")
    two = usage_of(server, "two")  # no turn yet: counted, nothing so far (not "not reported")
    assert (two["reported"], two["input"], two["cost"]) == (True, 0, 0)

    # Listing sessions reads no transcript: the figures are stored.
    read = bytes_read(server)
    for _ in range(5):
        server.ok("status")
        server.json("children")
    assert bytes_read(server) == read

    # What a transcript gains during a turn (here, by hand) shows once a turn ends, or at
    # once in `sm cost`, which reads the live sessions' transcripts up to now.
    transcript = server.session("one")["transcript_path"]
    with open(transcript, "a") as fh:
        # A call answered long ago (its timestamp): out of `--since`.
        fh.write(json.dumps({"type": "assistant", "timestamp": "2025-01-01T00:00:00Z", "message": {
            "id": "msg_by_hand", "model": "claude-opus-5-5", "usage": USAGE}}) + "\n")
    assert usage_of(server, "one")["input"] == 1000
    assert server.json("cost", "one")["total"]["input"] == 2000
    assert bytes_read(server) > read
    assert usage_of(server, "one")["input"] == 2000

    # The next turn's call is counted when it ends.
    server.ok("send", "one", "second")
    server.wait_turn_done("one", "second")
    wait_for(lambda: usage_of(server, "one")["input"] == 3000, 15, 0.1, "the second turn's usage")
    assert usage_of(server, "one")["cost"] == pytest.approx(3 * COST_PER_CALL)
    assert f"${3 * COST_PER_CALL:.2f}" in server.ok("status")
    # Per child, and since a time: the two turns' calls, not the old one.
    recent = server.json("cost", "--since", "1h")
    assert {r["name"]: r["usage"]["input"] for r in recent["sessions"]} == {"one": 2000, "two": 0, "three": 0}
    assert recent["total"]["input"] == 2000
    assert "one" in server.ok("cost", "--since", "1h")
