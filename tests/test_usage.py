"""The usage reader and the price table, on transcript lines shaped as Claude Code 2.1.330 writes them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import Server
from core.config import Settings
from core.store import Store
from core.usage import DEFAULT_PRICES, Tokens, UsageBook, cost_of, price_for, read_new
from hooks.entry import codex_rollout


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
    ("claude-opus-55", None),  # a prefix only counts at a '-'
    ("gpt-5-codex", "gpt-5-codex"),
    ("gpt-5-2025-08-07", "gpt-5"),  # OpenAI's dated snapshots
    ("gpt-5-pro", None),  # outside Anthropic's names, a suffix is another product: no guess
    ("gpt-5.1-codex-mini", None),
    ("gpt-5.5", None),  # Codex 0.171.0's default: no published price
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
    chunk = read_new(str(path), 0)
    assert [c.message_id for c in chunk.calls] == ["msg_a"] and chunk.offset == len(first.encode())
    assert chunk.read == len((first + half[:40]).encode())
    with path.open("a") as fh:
        fh.write(half[40:])
    again = read_new(str(path), chunk.offset)
    assert [c.message_id for c in again.calls] == ["msg_b"] and again.read == len(half.encode())
    nothing = read_new(str(path), again.offset)
    assert (nothing.calls, nothing.offset, nothing.read) == ([], again.offset, 0)  # nothing new: nothing read


async def add_session(store: Store, session_id: str, provider: str) -> None:
    await store.execute(
        "INSERT INTO sessions (id, name, provider, workdir, tmux_session, token_hash, state, state_since,"
        " idle_reminded, created_at, last_activity) VALUES (?, ?, ?, '/', 's', 'h', 'idle', 0, 0, 0, 0)",
        (session_id, session_id, provider))


async def test_each_message_counts_once_and_the_figures_are_stored(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "sm.db")
    try:
        await add_session(store, "abc123", "claude")
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


def codex_lines(*records: tuple[str, str | None, int, int, int]) -> str:
    """A Codex 0.171.0 rollout: a turn_context naming the model, then a token_usage_record
    per response; (response id, model of a new turn or None, input, cached, output)."""
    out = [json.dumps({"timestamp": "2026-11-29T01:20:24.747Z", "type": "session_meta",
                       "payload": {"id": "t1", "cwd": "/w", "cli_version": "0.171.0"}})]
    for response_id, model, input_tokens, cached, output in records:
        if model:
            out.append(json.dumps({"timestamp": "2026-11-29T01:20:24.818Z", "type": "turn_context",
                                   "payload": {"turn_id": "u", "cwd": "/w", "model": model}}))
        out.append(json.dumps({"timestamp": "2026-11-29T01:20:24.870Z", "type": "token_usage_record",
                               "payload": {"thread_id": "t1", "response_id": response_id, "usage": {
                                   "input_tokens": input_tokens, "cached_input_tokens": cached,
                                   "cache_write_input_tokens": 0, "output_tokens": output,
                                   "reasoning_output_tokens": 3, "total_tokens": input_tokens + output}}}))
        # The running totals Codex also writes: not counted (the records are).
        out.append(json.dumps({"timestamp": "2026-11-29T01:20:25.086Z", "type": "event_msg", "payload": {
            "type": "token_count", "info": {"total_token_usage": {"input_tokens": 999999}}}}))
    return "\n".join(out) + "\n"


async def test_codex_rollouts_count_each_response_once_priced_by_its_turns_model(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "sm.db")
    try:
        await add_session(store, "cx1", "codex")
        prices = {**DEFAULT_PRICES, "gpt-5": {"input": 1.25, "output": 10, "cache_read": 0.125}}
        book = UsageBook(store, prices)
        path = tmp_path / "rollout-2026-11-29T01-20-24-t1.jsonl"
        path.write_text(codex_lines(("resp_a", "gpt-5", 1200, 1000, 80), ("resp_b", None, 1300, 1200, 20)))
        assert await book.refresh("cx1", str(path))
        spend = (await book.spend(["cx1"]))["cx1"]
        # Input without its cached part; the cached part as cache reads.
        assert spend.models == {"gpt-5": Tokens(300, 100, 2200, 0)}
        assert spend.cost(prices) == pytest.approx((300 * 1.25 + 100 * 10 + 2200 * 0.125) / 1e6)
        # A later turn on a model with no price, read from where the last read stopped: the
        # model named before that offset still prices what follows it.
        with path.open("a") as fh:
            fh.write(codex_lines(("resp_c", None, 100, 0, 10))[len(codex_lines()):])
            fh.write(codex_lines(("resp_d", "gpt-5.5", 500, 0, 50))[len(codex_lines()):])
        assert await UsageBook(store, prices).refresh("cx1", str(path))
        spend = (await book.spend(["cx1"]))["cx1"]
        assert spend.models == {"gpt-5": Tokens(400, 110, 2200, 0), "gpt-5.5": Tokens(500, 50, 0, 0)}
        public = spend.public(prices)
        assert public["cost"] is None and public["input"] == 900  # tokens shown, no made-up cost
        assert not await book.refresh("cx1", str(path))  # nothing new
    finally:
        await store.close()


def test_a_codex_threads_rollout_is_found_by_its_id(tmp_path: Path) -> None:
    day = tmp_path / "sessions" / "2026" / "11" / "29"
    day.mkdir(parents=True)
    mine = day / "rollout-2026-11-29T01-20-56-01a224e4-12e0-7c43-8d84-22365bfc0c3f.jsonl"
    mine.write_text("")
    (day / "rollout-2026-11-29T01-20-24-01a224e3-968c-7821-ac63-6e44e6600024.jsonl").write_text("")
    assert codex_rollout(str(tmp_path), "01a224e4-12e0-7c43-8d84-22365bfc0c3f") == str(mine)
    assert codex_rollout(str(tmp_path), "01a224e4-2daf-7132-ab86-b27d61ad667c") is None  # the title thread
    assert codex_rollout(str(tmp_path), "*") is None
    assert codex_rollout(str(tmp_path / "nowhere"), "x") is None


def test_the_persons_own_codex_notify_still_runs(tmp_path: Path) -> None:
    # sm starts Codex with its own `-c notify=…`; the person's notify program runs too.
    import os
    import subprocess
    import sys

    from conftest import wait_for

    got = tmp_path / "got.json"
    script = tmp_path / "notify.sh"
    script.write_text(f'#!/bin/sh\nprintf "%s" "$1" > {got}\n')
    script.chmod(0o755)
    (tmp_path / "config.toml").write_text(f'model = "gpt-5.5"\nnotify = ["{script}"]\n')
    payload = json.dumps({"type": "agent-turn-complete", "thread-id": "t-1", "last-assistant-message": "done"})
    env = {k: v for k, v in os.environ.items() if not k.startswith("SM_")} | {"CODEX_HOME": str(tmp_path)}
    sm = str(Path(sys.executable).parent / "sm")
    out = subprocess.run([sm, "hook", "CodexTurnEnd", payload], env=env, capture_output=True, text=True,
                         stdin=subprocess.DEVNULL, timeout=30)
    assert out.returncode == 0, out.stderr
    wait_for(lambda: got.exists() and got.read_text() == payload, 15, 0.05, "the person's notify to run")
