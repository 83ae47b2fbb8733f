"""The usage reader and the price table, on transcript lines shaped as Claude Code 2.1.330 writes them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import Server
from core.config import Settings
from core.store import Store
from core.usage import DEFAULT_PRICES, Tokens, UsageBook, cost_of, price_for, read_new


def line(message_id: str, output: int = 200, model: str = "claude-opus-5-5", block: str = "text") -> str:
    return json.dumps({"type": "assistant", "timestamp": "2026-11-28T23:09:37.642Z", "message": {
        "id": message_id, "model": model, "content": [{"type": block}],
        "usage": {"input_tokens": 1000, "output_tokens": output, "cache_read_input_tokens": 4000,
                  "cache_creation_input_tokens": 30}}}) + "\n"


@pytest.mark.parametrize("model, prefix", [
    ("claude-opus-5-5", "claude-opus-5-5"),
    ("claude-opus-5-5-20270101", "claude-opus-5-5"),
    ("claude-opus-5", "claude-opus-5"),
    ("claude-sonnet-4-5-20250929", "claude-sonnet-4"),
    ("claude-opus-4-1-20250805", "claude-opus-4"),
    ("claude-opus-4-5", "claude-opus-4-5"),
    ("gpt-5-codex", None),
    ("claude-opus-55", None),  # a prefix only counts at a '-'
])
def test_a_model_gets_the_price_of_its_longest_name(model: str, prefix: str | None) -> None:
    assert price_for(model, DEFAULT_PRICES) == (DEFAULT_PRICES[prefix] if prefix else None)


def test_cost_matches_claude_codes_own_figure() -> None:
    # Claude Code 2.1.330 wrote totalCostUSD 0.0179 for 2000 in, 400 out, 8000 cache read, 60 cache write.
    assert cost_of("claude-opus-5-5", Tokens(2000, 400, 8000, 60), DEFAULT_PRICES) == pytest.approx(0.0179)
    assert cost_of("some-local-model", Tokens(1, 1, 1, 1), DEFAULT_PRICES) is None


def test_reading_stops_at_the_last_complete_line_and_resumes_there(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    first = line("msg_a")
    half = line("msg_b")
    path.write_text(first + half[:40])
    calls, offset, read = read_new(str(path), 0)
    assert [c.message_id for c in calls] == ["msg_a"] and offset == len(first.encode())
    assert read == len((first + half[:40]).encode())
    with path.open("a") as fh:
        fh.write(half[40:])
    calls, offset2, read = read_new(str(path), offset)
    assert [c.message_id for c in calls] == ["msg_b"] and read == len(half.encode())
    assert read_new(str(path), offset2) == ([], offset2, 0)  # nothing new: nothing read


async def test_each_message_counts_once_and_the_figures_are_stored(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "sm.db")
    try:
        await store.execute(
            "INSERT INTO sessions (id, name, provider, workdir, tmux_session, token_hash, state, state_since,"
            " idle_reminded, created_at, last_activity) VALUES ('abc123', 'a', 'claude', '/', 's', 'h', 'idle',"
            " 0, 0, 0, 0)")
        book = UsageBook(store, DEFAULT_PRICES)
        path = tmp_path / "t.jsonl"
        # One message, two content blocks: two lines with its id; the later one has the final output count.
        path.write_text(line("msg_a", output=1) + line("msg_a", output=200, block="tool_use") + line("msg_b"))
        await book.refresh("abc123", str(path))
        spend = (await book.spend(["abc123"]))["abc123"]
        assert spend.tokens() == Tokens(2000, 400, 8000, 60)
        # Appended lines of a message already counted add nothing; a new message adds one.
        with path.open("a") as fh:
            fh.write(line("msg_b") + line("msg_c", model="unknown-model"))
        await book.refresh("abc123", str(path))
        again = UsageBook(store, DEFAULT_PRICES)  # as after a restart: from the store
        await again.refresh("abc123", str(path))
        assert again.bytes_read == 0
        spend = (await again.spend(["abc123"]))["abc123"]
        assert spend.tokens() == Tokens(3000, 600, 12000, 90)
        assert spend.public(DEFAULT_PRICES)["cost"] is None  # an unknown model: tokens only
        assert (await again.spend(["abc123"], since=2e9))["abc123"].tokens() == Tokens()
    finally:
        await store.close()


def test_prices_override_from_the_environment_and_yaml(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SM_CONFIG", "/dev/null")
    monkeypatch.setenv("SM_PRICES", '{"claude-opus-5-5": {"input": 1000}, "my-model": {"output": 2}}')
    table = Settings().price_table()
    assert table["claude-opus-5-5"] == {**DEFAULT_PRICES["claude-opus-5-5"], "input": 1000}
    assert table["my-model"]["output"] == 2 and table["my-model"]["input"] == 0
    monkeypatch.delenv("SM_PRICES")
    config = tmp_path / "config.yaml"
    config.write_text("prices:\n  my-model: {input: 3, output: 15}\n")
    monkeypatch.setenv("SM_CONFIG", str(config))
    assert Settings().price_table()["my-model"]["input"] == 3
    monkeypatch.setenv("SM_PRICES", '{"x": {"inptu": 1}}')
    with pytest.raises(ValueError, match="give input, output, cache_write and/or cache_read"):
        Settings()


def test_a_shell_reports_no_usage(server: Server) -> None:
    server.ok("spawn", "", "--provider", "shell", "--name", "plain")
    server.wait_state("plain", "idle")
    assert server.session("plain")["usage"]["reported"] is False
    assert "not reported" in server.ok("cost", "plain")
    assert server.json("children")[0]["usage"]["cost"] is None
