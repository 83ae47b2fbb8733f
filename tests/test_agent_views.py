"""clear, what, output, and the state an agent reports through its hooks."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from conftest import Server, holds, wait_for


def test_clear_confirms_then_delivers_the_new_prompt(server: Server) -> None:
    server.spawn_agent("eng", "old context")
    server.wait_turn_done("eng", "old context")
    before = server.session("eng")["agent_session_id"]
    server.ok("clear", "eng", "fresh start")
    fresh = server.wait_prompt(lambda p: "fresh start" in p)
    prompts = server.prompts()
    assert prompts.index("/clear") < prompts.index(fresh)
    assert fresh == "[from owner] fresh start"
    assert server.session("eng")["agent_session_id"] != before


def test_clear_waits_for_a_busy_agent_to_finish_its_turn(server: Server) -> None:
    server.spawn_agent("eng", "finishing sleep 1.5")
    server.wait_state("eng", "busy")
    server.ok("clear", "eng")
    wait_for(lambda: "/clear" in server.prompts(), 30, message="the clear")
    server.wait_state("eng", "idle")
    prompts = server.prompts()
    assert prompts.index("[from owner] finishing sleep 1.5") < prompts.index("/clear")


def test_agent_cannot_clear_a_sibling(server: Server) -> None:
    server.spawn_agent("a")
    server.spawn_agent("b")
    result = server.sm("clear", "b", env=server.agent_env("a"))
    assert result.returncode == 1 and "may not clear b" in result.stderr


def test_what_falls_back_to_a_summary_when_the_summarizer_is_missing(server: Server) -> None:
    server.spawn_agent("eng", "describe the plan")
    server.wait_turn_done("eng", "describe the plan")
    out = server.json("what", "eng")
    assert out["source"] == "fallback"
    assert "eng is idle" in out["summary"]
    assert "Last message: ok: [from owner] describe the plan" in out["summary"]


def test_what_uses_the_summarizer_command(server_factory, tmp_path: Path) -> None:
    script = tmp_path / "summarize.py"
    script.write_text("import sys\ndata = sys.stdin.read()\nprint('SUMMARY of', len(data), 'chars')\n")
    server = server_factory(SM_SUMMARIZER_COMMAND=f"{sys.executable} {script}")
    server.spawn_agent("eng")
    out = server.json("what", "eng")
    assert out["source"] == "summarizer" and out["summary"].startswith("SUMMARY of")


def test_what_never_hangs_on_a_stuck_summarizer(server_factory) -> None:
    server = server_factory(SM_SUMMARIZER_COMMAND="sleep 60", SM_SUMMARIZER_TIMEOUT="1")
    server.spawn_agent("eng")
    started = time.monotonic()
    out = server.json("what", "eng")
    assert out["source"] == "fallback"
    assert time.monotonic() - started < 10


def test_output_shows_the_screen_and_the_transcript(server: Server) -> None:
    server.spawn_agent("eng", "say something")
    server.wait_turn_done("eng", "say something")
    assert "ok: [from owner] say something" in server.ok("output", "eng", "-n", "30")
    assert server.ok("output", "eng", "--transcript").strip() == "ok: [from owner] say something"


def test_output_shows_the_work_and_raw_shows_the_screen(server: Server) -> None:
    server.spawn_agent("eng", "say something")
    server.wait_turn_done("eng", "say something")
    out = server.ok("output", "eng", "-n", "5").rstrip("\n")
    assert "ok: [from owner] say something" in out and out.splitlines()[-1].strip()
    assert "? for shortcuts" not in out and "────" not in out  # no input box, no footer
    raw = server.ok("output", "eng", "--raw", "-n", "5")
    assert "? for shortcuts" in raw and "────" in raw


def _hook(server: Server, name: str, event: str, payload: dict) -> None:
    env = {**server.env, **server.agent_env(name)}
    subprocess.run([str(Path(sys.executable).parent / "sm"), "hook", event],
                   input=json.dumps(payload).encode(), env=env, check=True, timeout=30)


def test_api_error_marks_the_agent_errored_with_its_reason(server: Server) -> None:
    server.spawn_agent("eng")
    _hook(server, "eng", "StopFailure", {"hook_event_name": "StopFailure", "error": "overloaded"})
    s = server.wait_state("eng", "errored")
    assert s["state_reason"] == "api error: overloaded"  # a rate limit is `limited` (tests/test_limits.py)
    # An API error leaves the agent at its prompt: it can still take input.
    server.ok("send", "eng", "try again")
    server.wait_prompt(lambda p: "try again" in p)


def test_permission_prompt_means_waiting_until_answered(server: Server) -> None:
    import threading

    server.spawn_agent("eng")
    asking = threading.Thread(target=_hook, args=(server, "eng", "PermissionRequest", {
        "hook_event_name": "PermissionRequest", "tool_name": "Bash", "tool_input": {"command": "rm x"}}))
    asking.start()  # it waits for an answer (no phone here: the terminal's)
    assert server.wait_state("eng", "waiting")["state_reason"] == "permission: Bash"
    _hook(server, "eng", "PostToolUse", {"hook_event_name": "PostToolUse", "tool_name": "Bash"})
    asking.join(10)
    assert not asking.is_alive(), "the answer at the terminal did not release the hook"
    server.wait_state("eng", "busy")


def test_hook_outside_a_managed_session_does_nothing(server: Server) -> None:
    env = {k: v for k, v in server.env.items() if k not in ("SM_TOKEN", "SM_SESSION_ID")}
    result = subprocess.run([str(Path(sys.executable).parent / "sm"), "hook", "Stop"],
                            input=b'{"hook_event_name": "Stop"}', env=env, capture_output=True, timeout=30)
    assert result.returncode == 0 and result.stdout == b""
    assert not (server.state_dir / "spool").exists() or not list((server.state_dir / "spool").iterdir())


def test_idle_reminders_are_off_unless_asked_for(server_factory) -> None:
    server = server_factory(SM_MONITOR_IDLE_TIMEOUT="1")
    events = server.events()
    try:
        server.spawn_agent("eng", "a short task")
        server.wait_turn_done("eng", "a short task")
        holds(lambda: not [e for e in events.events if e["type"] == "idle.reminder"], 3,
              "no idle reminder by default")
    finally:
        events.close()


def test_one_idle_reminder_after_the_idle_timeout(server_factory) -> None:
    server = server_factory(SM_MONITOR_IDLE_TIMEOUT="1", SM_MONITOR_IDLE_REMINDER="true")
    events = server.events()
    try:
        server.spawn_agent("eng", "a short task")
        reminder = events.wait(lambda e: e["type"] == "idle.reminder", 15, "an idle reminder")
        assert reminder["name"] == "eng" and reminder["idle_seconds"] >= 1
        # Many monitor ticks (0.2 s each) past the timeout: still only the one.
        holds(lambda: len([e for e in events.events if e["type"] == "idle.reminder"]) == 1, 2.5,
              "a single idle reminder")
    finally:
        events.close()


def test_events_describe_a_message_from_queue_to_delivery(server: Server) -> None:
    server.spawn_agent("eng")
    events = server.events()
    try:
        server.ok("send", "eng", "traced")
        queued = events.wait(lambda e: e["type"] == "message.queued")
        assert queued["text"] == "traced" and queued["sender_label"] == "owner"
        delivered = events.wait(lambda e: e["type"] == "message.delivered")
        assert queued["message"] in delivered["messages"]
        busy = events.wait(lambda e: e["type"] == "state.changed" and e["state"] == "busy")
        turn = events.wait(lambda e: e["type"] == "turn.finished")
        assert turn["text"] == "ok: [from owner] traced"
        assert busy["session"] == turn["session"] == queued["session"]
    finally:
        events.close()
