"""Nothing accepted is lost or doubled: crashes of the server, hooks while it is down."""

from __future__ import annotations

import json
import re
import signal
import subprocess
from collections import Counter

import pytest

from conftest import Server, wait_for


def counts_by_status(server: Server) -> dict[str, int]:
    import sqlite3

    with sqlite3.connect(server.state_dir / "sm.db") as db:
        return dict(db.execute("SELECT status, COUNT(*) FROM messages GROUP BY status").fetchall())


# Where the crash lands: as the warm-up ends, with a batch in flight (pasted,
# not yet confirmed), or after some batches went in and others wait.
CRASH_POINTS = {
    "at-idle": lambda server: server.session("eng")["state"] != "busy",
    "batch-in-flight": lambda server: counts_by_status(server).get("inflight", 0) > 0,
    "part-delivered": lambda server: 1 < counts_by_status(server).get("delivered", 0) < 201,  # 1: the warm-up
}


@pytest.mark.parametrize("crash_point", list(CRASH_POINTS))
def test_kill_9_with_200_queued_messages_delivers_each_exactly_once(server: Server,
                                                                    crash_point: str) -> None:
    server.spawn_agent("eng", "warm-up sleep 2")
    server.wait_state("eng", "busy")
    client = server.client()
    for n in range(200):
        # ~21 KB in all: the deliverer's 8 KB batches make three inputs of it.
        client.request("POST", "/sessions/eng/input", {"text": f"msg-{n:03d} " + "x" * 100})
    wait_for(lambda: CRASH_POINTS[crash_point](server), 20, 0.005, f"the crash point {crash_point}")
    server.stop(signal.SIGKILL)
    server.start()

    def seen() -> Counter[str]:
        return Counter(m for p in server.prompts() for m in re.findall(r"msg-\d{3}", p))

    wait_for(lambda: len(seen()) == 200, 60, 0.2, "all 200 messages to arrive")
    wait_for(lambda: server.session("eng")["queued"] == 0, 40, 0.2, "the queue to drain")
    counts = seen()
    assert sorted(counts) == [f"msg-{n:03d}" for n in range(200)]
    assert [m for m, c in counts.items() if c != 1] == [], "some messages arrived twice"
    order = [m for p in server.prompts() for m in re.findall(r"msg-\d{3}", p)]
    assert order == sorted(order), "messages arrived out of order"


def test_hook_sent_while_the_server_is_down_is_replayed_in_order(server: Server) -> None:
    server.spawn_agent("eng")
    before = server.session("eng")["agent_session_id"]
    server.stop()
    # The person clears the agent at its terminal twice while sm is down: each
    # time SessionEnd and SessionStart(clear, new session id) go to the spool.
    tmux_session = f"sm-{server_session_id(server, 'eng')}"
    pane_text = lambda: subprocess.run(["tmux", "-L", server.socket, "capture-pane", "-p", "-t", tmux_session],  # noqa: E731
                                       capture_output=True, text=True).stdout
    spool = server.state_dir / "spool"
    for spooled in (2, 4):
        subprocess.run(["tmux", "-L", server.socket, "send-keys", "-t", tmux_session, "-l", "/clear"], check=True)
        wait_for(lambda: "❯ /clear" in pane_text(), message="the typed /clear in the input box")
        subprocess.run(["tmux", "-L", server.socket, "send-keys", "-t", tmux_session, "Enter"], check=True)
        wait_for(lambda: len(list(spool.glob("*.json"))) >= spooled, 30, message="hooks to be spooled")
    records = [json.loads(p.read_text()) for p in sorted(spool.glob("*.json"))]
    assert [r["event"] for r in records] == ["SessionEnd", "SessionStart"] * 2
    first, last = (r["payload"]["session_id"] for r in records if r["event"] == "SessionStart")

    server.start()
    after = server.session("eng")["agent_session_id"]
    assert after and after != before, "the spooled SessionStart was not replayed"
    # Only an in-order replay leaves the agent bound to its current session id.
    assert after == last != first, "the spooled hooks were replayed out of order"
    assert list(spool.glob("*.json")) == []
    assert "replayed" in server.log.read_text()


def server_session_id(server: Server, name: str) -> str:
    import sqlite3

    with sqlite3.connect(server.state_dir / "sm.db") as db:
        return db.execute("SELECT id FROM sessions WHERE name = ? AND state != 'dead'", (name,)).fetchone()[0]
