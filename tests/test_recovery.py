"""Nothing accepted is lost or doubled: crashes of the server, hooks while it is down."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from collections import Counter

import pytest

from conftest import Server, wait_for


@pytest.mark.parametrize("crash_after", [0.0, 0.3, 0.6])
def test_kill_9_with_200_queued_messages_delivers_each_exactly_once(server: Server,
                                                                    crash_after: float) -> None:
    server.spawn_agent("eng", "warm-up sleep 2")
    server.wait_state("eng", "busy")
    client = server.client()
    for n in range(200):
        client.request("POST", "/sessions/eng/input", {"text": f"msg-{n:03d}"})
    # Crash somewhere in the first deliveries (the agent is done ~2 s after it started).
    wait_for(lambda: server.session("eng")["state"] != "busy", 10, 0.01, "the warm-up to end")
    time.sleep(crash_after)
    server.stop(signal.SIGKILL)
    server.start()

    def seen() -> Counter[str]:
        return Counter(m for p in server.prompts() for m in re.findall(r"msg-\d{3}", p))

    wait_for(lambda: len(seen()) == 200, 60, 0.2, "all 200 messages to arrive")
    wait_for(lambda: server.session("eng")["queued"] == 0, 20, 0.2, "the queue to drain")
    counts = seen()
    assert sorted(counts) == [f"msg-{n:03d}" for n in range(200)]
    assert [m for m, c in counts.items() if c != 1] == [], "some messages arrived twice"
    order = [m for p in server.prompts() for m in re.findall(r"msg-\d{3}", p)]
    assert order == sorted(order), "messages arrived out of order"


def test_hook_sent_while_the_server_is_down_is_replayed_in_order(server: Server) -> None:
    server.spawn_agent("eng")
    before = server.session("eng")["agent_session_id"]
    server.stop()
    # The person clears the agent at its terminal while sm is down: SessionEnd
    # and SessionStart(clear, new session id) go to the spool.
    tmux_session = f"sm-{server_session_id(server, 'eng')}"
    subprocess.run(["tmux", "-L", server.socket, "send-keys", "-t", tmux_session, "-l", "/clear"], check=True)
    time.sleep(0.2)  # let the paste settle before Enter, as a person would
    subprocess.run(["tmux", "-L", server.socket, "send-keys", "-t", tmux_session, "Enter"], check=True)
    spool = server.state_dir / "spool"
    wait_for(lambda: len(list(spool.glob("*.json"))) >= 2, 10, message="hooks to be spooled")

    server.start()
    after = server.session("eng")["agent_session_id"]
    assert after and after != before, "the spooled SessionStart was not replayed"
    assert list(spool.glob("*.json")) == []
    assert "replayed" in server.log.read_text()


def server_session_id(server: Server, name: str) -> str:
    import sqlite3

    with sqlite3.connect(server.state_dir / "sm.db") as db:
        return db.execute("SELECT id FROM sessions WHERE name = ? AND state != 'dead'", (name,)).fetchone()[0]
