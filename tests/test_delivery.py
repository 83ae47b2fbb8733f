"""Durable delivery to agents: order, modes, confirmation, verbatim text.

The agent is tests/fake_agent.py, a small TUI in a real tmux pane that fires
real hook events through `sm hook` (as Claude Code does with sm's settings),
and logs every prompt it sees submitted: that log is what the agent "saw".
"""

from __future__ import annotations

import json
import subprocess

from conftest import Server, wait_for


def delivered_ids(server: Server, target: str) -> set[int]:
    rows = subprocess.run(
        ["sqlite3", str(server.state_dir / "sm.db"),
         f"SELECT id FROM messages WHERE target_id = '{target}' AND status = 'delivered'"],
        capture_output=True, text=True).stdout.split()
    return {int(r) for r in rows}


def test_sequential_messages_arrive_in_order_as_one_input(server: Server) -> None:
    server.spawn_agent("eng", "busy for a while sleep 2")
    server.wait_prompt(lambda p: "sleep 2" in p)
    for n in range(1, 4):
        server.ok("send", "eng", f"step {n}")
    batch = server.wait_prompt(lambda p: "step 1" in p)
    assert batch == "[from owner] step 1\n\n[from owner] step 2\n\n[from owner] step 3"


def test_important_jumps_ahead_of_queued_messages(server: Server) -> None:
    server.spawn_agent("eng", "busy sleep 2")
    server.wait_prompt(lambda p: "busy sleep 2" in p)
    server.ok("send", "eng", "routine A")
    server.ok("send", "eng", "routine B")
    server.ok("send", "eng", "IMPORTANT C", "--important")
    batch = server.wait_prompt(lambda p: "routine A" in p)
    assert batch.index("IMPORTANT C") < batch.index("routine A") < batch.index("routine B")


def test_urgent_interrupts_a_busy_agent(server: Server) -> None:
    server.spawn_agent("eng", "long job sleep 60")
    server.wait_state("eng", "busy")
    server.ok("send", "eng", "queued behind", )
    server.ok("send", "eng", "STOP NOW", "--urgent")
    urgent = server.wait_prompt(lambda p: "STOP NOW" in p, timeout=30)
    assert urgent == "[from owner] STOP NOW"
    assert "Interrupted by user" in server.screen("eng")
    # The sequential message still comes, after the urgent one.
    later = server.wait_prompt(lambda p: "queued behind" in p)
    prompts = server.prompts()
    assert prompts.index(urgent) < prompts.index(later)


def test_enter_is_not_swallowed_after_paste(server: Server) -> None:
    """The fake agent, like Claude Code, folds an Enter that lands <80 ms after a paste into it."""
    server.spawn_agent("eng")
    for n in range(5):
        server.ok("send", "eng", f"ping {n}")
        server.wait_prompt(lambda p, n=n: f"ping {n}" in p, timeout=30)
    assert len([p for p in server.prompts() if "ping" in p]) == 5


def message_row(server: Server, message_id: int) -> dict[str, object]:
    import sqlite3

    with sqlite3.connect(server.state_dir / "sm.db") as db:
        db.row_factory = sqlite3.Row
        return dict(db.execute("SELECT * FROM messages WHERE id = ?", (message_id,)).fetchone())


def test_message_is_marked_delivered_only_once_submitted(server_factory) -> None:
    # The agent ignores the first Enter: the text sits in its box, not submitted.
    server = server_factory(FAKE_AGENT_SWALLOW_ENTERS="1")
    server.spawn_agent("eng")
    out = server.client().request("POST", "/sessions/eng/input", {"text": "confirm me"})
    wait_for(lambda: "[from owner] confirm me" in server.screen("eng"), message="the text in the box")
    row = message_row(server, out["message"])
    assert row["status"] == "inflight" and row["delivered_at"] is None
    assert not any("confirm me" in p for p in server.prompts())
    # The deliverer presses Enter again (never a second copy); only then is it delivered.
    wait_for(lambda: message_row(server, out["message"])["status"] == "delivered",
             message="the message to be marked delivered")
    assert [p for p in server.prompts() if "confirm me" in p] == ["[from owner] confirm me"]
    submitted_at = next(json.loads(line)["t"] for line in server.agent_log.read_text().splitlines()
                        if "confirm me" in line)
    assert message_row(server, out["message"])["delivered_at"] >= submitted_at
    assert "Enter not taken" in server.log.read_text()


def test_unconfirmed_batch_fails_after_max_attempts_and_status_shows_it(server_factory) -> None:
    server = server_factory(FAKE_AGENT_SWALLOW_ENTERS="99")  # no Enter is ever taken
    server.spawn_agent("eng")
    server.ok("send", "eng", "never taken")
    failed = wait_for(lambda: next((m for m in server.json("status")["undelivered"]
                                    if m["text"] == "never taken" and m["status"] == "failed"), None),
                      20, message="the message to be failed")
    assert failed["error"] == "submission not confirmed after 5 attempts"
    assert server.log.read_text().count("Enter not taken") == 4  # 1 typed + 4 retries
    assert server.screen("eng").count("[from owner] never taken") == 1, "pasted a second copy"
    assert not any("never taken" in p for p in server.prompts())


def test_each_delivered_event_fires_once(server: Server) -> None:
    events = server.events()
    try:
        server.spawn_agent("eng", "busy sleep 1")
        server.wait_state("eng", "busy")
        ids = [server.client().request("POST", "/sessions/eng/input", {"text": f"batch {n}"})["message"]
               for n in range(3)]
        ids.append(server.client().request("POST", "/sessions/eng/input",
                                           {"text": "multi\nline"})["message"])
        server.wait_prompt(lambda p: "batch 0" in p)
        server.wait_prompt(lambda p: "multi" in p)
        wait_for(lambda: server.session("eng")["state"] == "idle" and server.session("eng")["queued"] == 0,
                 message="the agent to finish both turns")
        # The agent's Stop came after every hook of both prompts: a second
        # "delivered" for any message would have been published by now.
        delivered = [m for e in events.events if e.get("type") == "message.delivered"
                     for m in e.get("messages", [])]
        for message_id in ids:
            assert delivered.count(message_id) == 1, (message_id, delivered)
    finally:
        events.close()


def test_batch_in_flight_at_a_crash_is_confirmed_by_the_replayed_hook(server_factory) -> None:
    import signal

    server = server_factory(FAKE_AGENT_SWALLOW_ENTERS="1")
    server.spawn_agent("eng")
    out = server.client().request("POST", "/sessions/eng/input", {"text": "across the crash"})
    wait_for(lambda: "[from owner] across the crash" in server.screen("eng"), message="the text in the box")
    server.stop(signal.SIGKILL)
    # While sm is down the person presses Enter: the hook goes to the spool.
    subprocess.run(["tmux", "-L", server.socket, "send-keys", "-t", pane_of(server, "eng"), "Enter"],
                   check=True)
    server.wait_prompt(lambda p: "across the crash" in p)
    wait_for(lambda: list((server.state_dir / "spool").glob("*.json")), message="the hook to be spooled")
    server.start()
    wait_for(lambda: message_row(server, out["message"])["status"] == "delivered",
             message="the replayed hook to confirm the batch")
    assert [p for p in server.prompts() if "across the crash" in p] == ["[from owner] across the crash"]
    log = server.log.read_text()
    assert "Enter not taken" not in log and "sent again" not in log


def pane_of(server: Server, name: str) -> str:
    import sqlite3

    with sqlite3.connect(server.state_dir / "sm.db") as db:
        return db.execute("SELECT pane_id FROM sessions WHERE name = ? AND state != 'dead'",
                          (name,)).fetchone()[0]


def test_trailing_backslash_is_submitted_and_kept(server: Server) -> None:
    server.spawn_agent("eng")
    server.ok("send", "eng", "path ends in C:\\")
    # Claude would take backslash-Enter as a line break; the deliverer adds a
    # space after it (Claude trims it; the fake agent keeps it).
    got = server.wait_prompt(lambda p: "path ends" in p)
    assert got.rstrip() == "[from owner] path ends in C:\\"


def test_multiline_text_arrives_as_one_input(server: Server) -> None:
    server.spawn_agent("eng")
    server.ok("send", "eng", "line one\nline two\n\nline four")
    got = server.wait_prompt(lambda p: "line one" in p)
    assert got == "[from owner] line one\nline two\n\nline four"
    assert len([p for p in server.prompts() if "line" in p]) == 1


def test_key_names_stay_words(server: Server) -> None:
    server.spawn_agent("eng")
    server.ok("send", "eng", "Enter C-c Escape")
    assert server.wait_prompt(lambda p: "C-c" in p) == "[from owner] Enter C-c Escape"


def test_escape_sequences_and_control_bytes_are_neutralised(server: Server) -> None:
    server.spawn_agent("eng")
    server.ok("send", "eng", "a\x1b[31mred\x1b[0m bell\x07 nul-free\r\nnext")
    got = server.wait_prompt(lambda p: "red" in p)
    assert got == "[from owner] ared bell nul-free\nnext"


def test_long_message_is_delivered_as_a_file(server: Server) -> None:
    server.spawn_agent("eng")
    text = "".join(f"line {n}: {'x' * 60}\n" for n in range(200))  # ~14 KB
    server.sm("send", "eng", "-", input=text.encode())
    got = server.wait_prompt(lambda p: "byte message" in p)
    path = got.split("read it from ")[1].rstrip(")")
    with open(path, encoding="utf-8") as fh:
        assert fh.read() == text


def test_person_typing_in_the_pane_is_never_typed_over(server: Server) -> None:
    server.spawn_agent("eng")
    pane = server.session("eng")["pane_id"]
    subprocess.run(["tmux", "-L", server.socket, "send-keys", "-t", pane, "-l", "half-typed"], check=True)
    wait_for(lambda: "half-typed" in server.screen("eng"), message="the typing to show")
    server.ok("send", "eng", "from sm")
    wait_for(lambda: "input box holds text; holding" in server.log.read_text(), 10,
             message="the deliverer to look at the pane and hold")
    assert not any("from sm" in p for p in server.prompts())
    assert "from sm" not in server.screen("eng")
    assert server.session("eng")["queued"] == 1
    subprocess.run(["tmux", "-L", server.socket, "send-keys", "-t", pane, *["BSpace"] * 10], check=True)
    got = server.wait_prompt(lambda p: "from sm" in p, timeout=30)
    assert got == "[from owner] from sm"


def test_first_message_to_a_slow_starting_agent_is_delivered_when_ready(server_factory) -> None:
    server = server_factory(FAKE_AGENT_STARTUP_DELAY="2")
    server.client().request("POST", "/sessions", {"name": "slow", "prompt": "hello slowpoke"})
    assert server.session("slow")["state"] == "starting"
    assert server.wait_prompt(lambda p: "slowpoke" in p, timeout=30) == "[from owner] hello slowpoke"


def test_sender_header_names_the_sending_agent(server: Server) -> None:
    a = server.spawn_agent("alice")
    server.spawn_agent("bob")
    server.ok("send", "bob", "hi bob", env=server.agent_env("alice"))
    assert server.wait_prompt(lambda p: "hi bob" in p) == f"[from alice ({a['id']})] hi bob"


def test_messages_to_an_agent_that_exited_are_failed_and_shown(server: Server) -> None:
    server.spawn_agent("eng", "working sleep 30")
    server.wait_state("eng", "busy")
    server.ok("send", "eng", "doomed message")
    server.kill_agent_process("eng")  # the agent dies mid-task

    s = wait_for(lambda: (s := server.session("eng"))["state"] == "errored" and s,
                 message="the agent to be errored")
    assert s["state_reason"].startswith("agent exited with status 137")
    status = server.json("status")
    failed = [m for m in status["undelivered"] if m["text"] == "doomed message"]
    assert failed and failed[0]["status"] == "failed" and "agent exited" in failed[0]["error"]
    assert "doomed message" not in "".join(server.prompts())
    assert "\nundelivered" in server.ok("status")

    refused = server.sm("send", "eng", "anyone there?")
    assert refused.returncode == 1
    assert "agent exited" in refused.stderr


def test_shell_gets_multiline_input_as_one_command(server: Server) -> None:
    server.ok("spawn", "", "--provider", "shell", "--name", "sh")
    server.wait_state("sh", "idle")
    server.ok("send", "sh", "echo first-$((1+1))\necho second-$((2+2))")
    wait_for(lambda: "first-2" in server.screen("sh") and "second-4" in server.screen("sh"),
             message="both lines to run")
