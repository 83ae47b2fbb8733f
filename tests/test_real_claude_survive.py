"""Surviving real life with the real Claude Code CLI (2.1.330): a lost tmux server, a usage limit.

tests/test_resume.py and tests/test_limits.py prove the same with the fake
agent; here the agents are the real CLI against tests/fake_anthropic.py, so
what is proven is what the real CLI does: that `--resume <id>` really
continues the conversation (the model sees its earlier messages), and that
a 429 from the API really ends the turn with a StopFailure sm reads as a
usage limit.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any, Callable

import pytest

from claude_home import CLAUDE_BIN, make_claude_home, require_claude
from conftest import Server, holds, wait_for
from fake_anthropic import is_side_request, last_text
from test_real_claude import fake_model, user_texts  # noqa: F401  (fixture)

pytestmark = pytest.mark.claude


def model_requests(log: Path) -> list[dict[str, Any]]:
    """The main-loop requests the model got, in order (side requests left out)."""
    if not log.exists():
        return []
    bodies = [json.loads(line) for line in log.read_text().splitlines() if line]
    return [b for b in bodies if not is_side_request(b)]


def conversation_texts(body: dict[str, Any]) -> list[str]:
    """Every user text block of one request: the conversation the model was shown."""
    return user_texts_of([body])


def user_texts_of(bodies: list[dict[str, Any]]) -> list[str]:
    out: list[str] = []
    for body in bodies:
        for message in body.get("messages", []):
            if message.get("role") != "user":
                continue
            content = message.get("content")
            out.extend([content] if isinstance(content, str) else
                       [b.get("text", "") for b in content or [] if isinstance(b, dict) and b.get("type") == "text"])
    return out


def mentions(body: dict[str, Any], text: str) -> int:
    return sum(t.count(text) for t in conversation_texts(body))


def real_claude_server(server_factory: Callable[..., Server], tmp_path: Path, url: str, **extra: str) -> Server:
    require_claude()
    # sm starts Claude with `--add-dir <state>/inbox/<id>`; 2.1.330 asks about an untrusted one at every
    # start ("Adding a new directory", default "No, exit"), so the inboxes' parent is trusted here.
    env = make_claude_home(tmp_path / "home", tmp_path / "work", allow_bash=True, base_url=url,
                           trust=(tmp_path / "state" / "inbox",))
    # A 429 is not retried (the CLI's default is several retries with backoff).
    return server_factory(SM_CLAUDE_COMMAND=str(CLAUDE_BIN), CLAUDE_CODE_MAX_RETRIES="0", **env, **extra)


def kill_tmux_server(server: Server) -> None:
    subprocess.run(["tmux", "-L", server.socket, "kill-server"], check=True, capture_output=True)


def test_kill_server_under_real_claude_agents_then_resume_all_continues_their_conversations(
        server_factory: Callable[..., Server], tmp_path: Path, fake_model: tuple[str, Path]) -> None:
    url, log = fake_model
    server = real_claude_server(server_factory, tmp_path, url, SM_MONITOR_POLL_INTERVAL="60")
    names = ("boss", "eng", "rev")
    for name in names:
        server.client().request("POST", "/sessions", {"name": name, "prompt": f"hello {name}",
                                                      "dir": str(server.workdir)})
    for name in names:
        wait_for(lambda: server.session(name)["state"] == "idle" and server.session(name)["agent_session_id"]
                 and any(f"hello {name}" in last_text(b) for b in model_requests(log)),
                 90, 0.2, f"{name} to answer its first message")
    before = {name: server.session(name) for name in names}
    events = server.events()
    # eng is in a long turn (the model takes its time) with a message queued behind it; boss waits on eng.
    server.ok("send", "eng", "SLOW 600 long job")
    wait_for(lambda: any("SLOW 600 long job" in last_text(b) for b in model_requests(log)), 60, 0.2,
             "the model to get eng's long job")
    server.wait_state("eng", "busy", 30)
    server.ok("send", "eng", "queued one")
    server.ok("wait", "eng", "600", env=server.agent_env("boss"))
    assert server.session("eng")["queued"] == 1

    kill_tmux_server(server)

    lost = wait_for(lambda: (s := server.json("status")["sessions"]) and all(x["state"] == "lost" for x in s) and s,
                    20, 0.2, "every session to be lost")
    assert {s["name"] for s in lost} == set(names)
    assert all(s["state_kind"] == "vanished" for s in lost)
    assert server.session("eng")["queued"] == 1  # kept, not failed
    wake = events.wait(lambda e: e["type"] == "message.queued" and e["session"] == before["boss"]["id"]
                       and e["text"].startswith("[sm] eng was lost"), 15, "the wait on eng to fire")
    assert "vanished" in wake["text"]
    events.close()
    server.ok("send", "rev", "after the loss")  # waits for rev to come back
    sent_before_resume = len(model_requests(log))

    out = server.ok("resume", "--all")
    assert out.count("resuming") == 3, out
    for name in names:
        server.wait_state(name, "idle", 90)
        assert server.session(name)["agent_session_id"] == before[name]["agent_session_id"]

    def after(text: str) -> dict[str, Any]:
        return wait_for(lambda: next((b for b in model_requests(log)[sent_before_resume:] if text in last_text(b)), None),
                        90, 0.2, f"the model to get {text!r} after the resume")

    # Each resumed agent continues its own conversation: the model is shown the earlier messages.
    eng = after("queued one")
    assert mentions(eng, "hello eng") == 1 and mentions(eng, "SLOW 600 long job") == 1
    assert mentions(eng, "hello boss") == 0
    boss = after("[sm] eng was lost")
    assert mentions(boss, "hello boss") == 1 and mentions(boss, "hello eng") == 0
    rev = after("after the loss")
    assert mentions(rev, "hello rev") == 1
    # Delivered exactly once: one turn each, and the last conversation holds each message once.
    for name, text in (("eng", "queued one"), ("boss", "[sm] eng was lost"), ("rev", "after the loss")):
        server.wait_state(name, "idle", 60)
        assert server.session(name)["queued"] == 0
        requests = model_requests(log)
        assert sum(text in last_text(b) for b in requests) == 1, f"{text!r} was submitted more than once"
        last = [b for b in requests if mentions(b, f"hello {name}")][-1]
        assert mentions(last, text) == 1
    assert sum("SLOW 600 long job" in last_text(b) for b in model_requests(log)) == 1  # not sent again


def test_a_usage_limit_from_the_api_holds_the_real_agent_then_continues_it(
        server_factory: Callable[..., Server], tmp_path: Path, fake_model: tuple[str, Path]) -> None:
    url, log = fake_model
    server = real_claude_server(server_factory, tmp_path, url, SM_LIMIT_RETRY="8", SM_LIMIT_MARGIN="0",
                                SM_LIMIT_CONTINUE="please continue")
    server.client().request("POST", "/sessions", {"name": "eng", "prompt": "", "dir": str(server.workdir)})
    server.wait_state("eng", "idle", 90)
    server.ok("send", "eng", "big task HIT-LIMIT")
    limited = server.wait_state("eng", "limited", 60)
    assert limited["state_kind"] == "usage limit"
    assert "no reset time shown" in limited["state_reason"]
    server.ok("send", "eng", "queued while limited")
    # Held: nothing is pasted into the limited agent, nothing reaches the model.
    holds(lambda: "queued while limited" not in server.screen("eng")
          and not any("queued while limited" in t for t in user_texts(log))
          and server.state("eng") == "limited", 3, "the limited agent being left alone")
    # At the retry time the continue message goes in alone, then the queue.
    wait_for(lambda: any("queued while limited" in last_text(b) for b in model_requests(log)), 60, 0.2,
             "the queue to reach the model after the reset")
    requests = model_requests(log)
    continued = [i for i, b in enumerate(requests) if "please continue" in last_text(b)]
    queued = [i for i, b in enumerate(requests) if "queued while limited" in last_text(b)]
    assert len(continued) == 1 and len(queued) == 1
    assert continued[0] < queued[0]
    assert "queued while limited" not in json.dumps(requests[continued[0]])
    # The conversation goes on: the limited prompt is still in it.
    assert mentions(requests[queued[0]], "big task HIT-LIMIT") == 1
    server.wait_state("eng", "idle", 60)
