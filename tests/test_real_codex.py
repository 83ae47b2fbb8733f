"""Delivery to the real Codex CLI (0.171.0, installed by scripts/test).

The model behind it is tests/fake_openai.py, a scripted Responses API on
loopback, so the agent is real (its TUI, its paste handling, its tools) and
its answers are scripted, with known usage figures. Codex has no hooks: sm
knows its state from the screen alone (core/providers.py, tested on
tests/panes/codex-*), and its usage from its rollout, read when Codex's
`notify` program says a turn ended.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import pytest

from codex_home import CODEX_BIN, CODEX_MODEL, make_codex_home, require_codex
from conftest import scripted_model, Server, wait_for
from core.humanize import usd
from fake_openai import USAGE, is_side_request, user_text

pytestmark = pytest.mark.codex


@pytest.fixture
def fake_model(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    log = tmp_path / "model-requests.jsonl"
    for url in scripted_model("fake_openai.py", log):
        yield url, log


def user_texts(log: Path) -> list[str]:
    """The person's text of every request the model received."""
    if not log.exists():
        return []
    return [user_text(json.loads(line)) for line in log.read_text().splitlines() if line]


@pytest.fixture
def codex_server(server_factory, tmp_path: Path, fake_model: tuple[str, Path]) -> Server:
    require_codex()
    url, _ = fake_model
    home = tmp_path / "home"
    home.mkdir()
    env = make_codex_home(tmp_path / "codex-home", tmp_path / "work", url)
    return server_factory(SM_CODEX_COMMAND=str(CODEX_BIN), HOME=str(home), **env)


def test_real_codex_gets_messages_and_runs_tools(codex_server: Server, fake_model: tuple[str, Path]) -> None:
    server, (_, log) = codex_server, fake_model
    session = server.client().request("POST", "/sessions", {
        "name": "cx", "provider": "codex", "prompt": "hello real codex", "dir": str(server.workdir)})
    # The first message waits for the agent's input box, then goes in once.
    wait_for(lambda: "[from owner] hello real codex" in user_texts(log), 60, 0.2,
             "the model to receive the first message")
    server.wait_state("cx", "idle", 60)
    assert user_texts(log).count("[from owner] hello real codex") == 1

    # A second message makes the real agent run a command with its shell tool.
    server.ok("send", "cx", "RUN: touch ran-it.txt")
    workdir = Path(session["workdir"])
    wait_for(lambda: (workdir / "ran-it.txt").exists(), 60, 0.2, "the tool call to run")
    wait_for(lambda: "• done" in server.screen("cx"), 30, 0.2, "the turn to finish")
    server.wait_state("cx", "idle", 30)
    assert server.session("cx")["queued"] == 0
    assert sum("RUN: touch ran-it.txt" in t for t in user_texts(log)) >= 1


def test_real_codex_approval_reads_as_waiting(codex_server: Server, fake_model: tuple[str, Path]) -> None:
    server = codex_server
    session = server.client().request("POST", "/sessions", {
        "name": "cx", "provider": "codex", "prompt": "ASK: touch asked.txt", "dir": str(server.workdir)})
    wait_for(lambda: "Would you like to run the following command?" in server.screen("cx"), 60, 0.2,
             "the real approval dialog")
    server.wait_state("cx", "waiting", 30)
    assert not (Path(session["workdir"]) / "asked.txt").exists()


def main_requests(log: Path) -> int:
    """Requests of the agent's own turns (Codex's title request is not in its rollout)."""
    if not log.exists():
        return 0
    return sum(1 for line in log.read_text().splitlines() if line and not is_side_request(json.loads(line)))


def test_real_codex_usage_and_cost_are_what_the_model_reported(server_factory, tmp_path: Path,
                                                               fake_model: tuple[str, Path]) -> None:
    require_codex()
    url, log = fake_model
    home = tmp_path / "home"
    home.mkdir()
    env = make_codex_home(tmp_path / "codex-home", tmp_path / "work", url)
    # Codex 0.171.0's default model has no published price: one is given here.
    price = {"input": 2, "output": 16, "cache_read": 0.2}
    server = server_factory(SM_CODEX_COMMAND=str(CODEX_BIN), HOME=str(home),
                            SM_PRICES=json.dumps({CODEX_MODEL: price}), **env)
    events = server.events()
    server.client().request("POST", "/sessions", {
        "name": "cx", "provider": "codex", "prompt": "RUN: touch one.txt", "dir": str(server.workdir)})
    wait_for(lambda: main_requests(log) >= 2, 60, 0.2, "the tool call and the answer after it")
    wait_for(lambda: "• done" in server.screen("cx"), 30, 0.2, "the turn to finish")
    # The turn's end, from Codex's notify: its answer, for the phone.
    turn = events.wait(lambda e: e["type"] == "turn.finished", 30)
    assert (turn["name"], turn["text"]) == ("cx", "done")

    def figures(n: int) -> tuple[int, int, int, int]:
        # What the fake reported for n answers, split as sm shows it: input without the cached part.
        return (n * (USAGE["input_tokens"] - USAGE["cached_tokens"]), n * USAGE["output_tokens"],
                n * USAGE["cached_tokens"], 0)

    def shown(u: dict) -> tuple[int, int, int, int]:
        return u["input"], u["output"], u["cache_read"], u["cache_write"]

    # Read at the turn's end (Codex's notify), with no `sm cost` asked: the status shows it.
    wait_for(lambda: shown(server.session("cx")["usage"]) == figures(main_requests(log)), 30, 0.2,
             "the turn's usage in the session's status")
    n = main_requests(log)
    cost = server.json("cost", "cx")
    u = cost["total"]
    assert shown(u) == figures(n) and u["reported"] and u["models"] == [CODEX_MODEL]
    expected = n * ((USAGE["input_tokens"] - USAGE["cached_tokens"]) * 2 + USAGE["output_tokens"] * 16
                    + USAGE["cached_tokens"] * 0.2) / 1e6
    assert u["cost"] == pytest.approx(expected)
    assert usd(expected) in server.ok("cost", "cx")

    # A second turn adds its calls, each response once.
    server.wait_state("cx", "idle", 30)
    server.ok("send", "cx", "just say something")
    wait_for(lambda: main_requests(log) == n + 1, 60, 0.2, "the second turn's request")
    wait_for(lambda: shown(server.session("cx")["usage"]) == figures(n + 1), 30, 0.2,
             "the second turn's usage")

    # After a /new (sm clear), a new thread and rollout: the old one still counts.
    server.wait_state("cx", "idle", 30)
    server.ok("clear", "cx", "a new thread")
    wait_for(lambda: main_requests(log) == n + 2, 60, 0.2, "the new thread's request")
    wait_for(lambda: shown(server.session("cx")["usage"]) == figures(n + 2), 30, 0.2,
             "both threads' usage")
    rollouts = list((tmp_path / "codex-home" / "sessions").glob("*/*/*/rollout-*.jsonl"))
    assert len(rollouts) == 2
    # Each turn's answer once; never the title Codex asks for in a thread of its own ("Session").
    answers = [e["text"] for e in events.events if e["type"] == "turn.finished"]
    events.close()
    assert answers == ["done", "ok: [from owner] just say something", "ok: [from owner] a new thread"]
