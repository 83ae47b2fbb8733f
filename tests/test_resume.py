"""A lost tmux server (a reboot, a kill-server): sessions become lost, not dead, and `sm resume` brings them back.

The agents are fake Claude TUIs (tests/fake_agent.py) with real hooks; their
`--resume <id>` continues the same conversation (session id and transcript).
The safety-net poll is set to a minute, so only tmux's own report (the
control client ending with its server) can notice the loss in time.
"""

from __future__ import annotations

import subprocess
from typing import Callable

from conftest import Server, wait_for


def kill_tmux_server(server: Server) -> None:
    subprocess.run(["tmux", "-L", server.socket, "kill-server"], check=True, capture_output=True)


def test_kill_server_under_three_agents_loses_them_fires_the_wait_and_resume_all_brings_them_back(
        server_factory: Callable[..., Server]) -> None:
    server = server_factory(SM_MONITOR_POLL_INTERVAL="60")
    for name in ("boss", "eng", "rev"):
        server.spawn_agent(name)
    before = {name: server.session(name) for name in ("boss", "eng", "rev")}
    boss, rev = server.agent_env("boss"), server.agent_env("rev")
    events = server.events()
    # eng is busy for a while, with two messages queued behind its turn; boss waits on eng;
    # rev holds its workspace lock.
    server.ok("send", "eng", "long job sleep 60")
    server.wait_state("eng", "busy")
    server.ok("send", "eng", "queued one")
    server.ok("send", "eng", "queued two")
    server.ok("wait", "eng", "600", env=boss)
    server.ok("lock", "reviewing", env=rev)
    assert server.json("status")["locks"]

    kill_tmux_server(server)

    lost = wait_for(lambda: all(s["state"] == "lost" for s in server.json("status")["sessions"])
                    and server.json("status")["sessions"], 30, message="every session to be lost")
    assert {s["name"] for s in lost} == {"boss", "eng", "rev"}  # lost, not dead: still listed
    assert all(s["state_kind"] == "vanished" for s in lost)
    assert server.session("eng")["queued"] == 2  # the queue is kept, not failed
    assert not server.json("status")["undelivered"]
    assert server.json("status")["locks"] == []  # a lost agent holds no lock
    wake = events.wait(lambda e: e["type"] == "message.queued" and e["session"] == before["boss"]["id"]
                       and e["text"].startswith("[sm] eng was lost"), 10, "the wait on eng to fire")
    assert "vanished" in wake["text"]
    # A message to a lost session waits for it.
    server.ok("send", "rev", "after the loss")

    out = server.ok("resume", "--all")
    assert out.count("resuming") == 3, out
    for name in ("boss", "eng", "rev"):
        server.wait_state(name, "idle", 20)
    for name, old in before.items():
        now = server.session(name)
        # Same id, name, directory, parent, and the same conversation.
        assert (now["id"], now["name"], now["workdir"], now["parent_id"]) == \
            (old["id"], old["name"], old["workdir"], old["parent_id"])
        assert now["agent_session_id"] == old["agent_session_id"]
        assert f"Resumed conversation {old['agent_session_id']}" in server.screen(name)
    # Everything that waited goes in: eng's queue, boss's wake-up, rev's message.
    server.wait_prompt(lambda p: "queued one" in p and "queued two" in p, 20, "eng's queue to be delivered")
    server.wait_prompt(lambda p: p.startswith("[sm] eng was lost"), 20, "boss's wake-up")
    server.wait_prompt(lambda p: "after the loss" in p, 20, "rev's message")
    assert server.prompts().count("[from owner] long job sleep 60") == 1  # what went in is not sent again
    # After a resume it can be waited on again.
    server.ok("wait", "eng", "600", env=server.agent_env("boss"))
    server.wait_prompt(lambda p: p.startswith("[sm] eng is idle"), 20, "a new wait on eng to fire")
    events.close()


def test_one_tmux_session_gone_is_lost_and_resumes_alone(server_factory: Callable[..., Server]) -> None:
    server = server_factory(SM_MONITOR_POLL_INTERVAL="60")
    server.spawn_agent("keep")
    gone = server.spawn_agent("gone")
    subprocess.run(["tmux", "-L", server.socket, "kill-session", "-t", f"={gone['tmux_session']}"], check=True)
    server.wait_state("gone", "lost", 10)
    assert server.state("keep") == "idle"
    refused = server.sm("resume", "keep")
    assert refused.returncode == 1 and "not lost" in refused.stderr
    assert server.ok("resume", "gone").startswith("resuming gone")
    server.wait_state("gone", "idle", 20)
    server.ok("send", "gone", "hello again")
    server.wait_prompt(lambda p: "hello again" in p, 20, "the message to reach the resumed agent")


def test_a_lost_session_is_lost_after_a_restart_too_and_resume_on_start_all_brings_it_back(
        server_factory: Callable[..., Server]) -> None:
    server = server_factory()
    server.spawn_agent("eng")
    server.stop()
    kill_tmux_server(server)  # a reboot while sm was down
    server.env["SM_RESUME_ON_START"] = "never"
    server.start()
    assert server.state("eng") == "lost"
    assert "1 lost session(s)" in (server.state_dir / "sm-bot.log").read_text()
    server.stop()
    server.env["SM_RESUME_ON_START"] = "all"
    server.start()
    server.wait_state("eng", "idle", 20)
    server.ok("send", "eng", "back after the reboot")
    server.wait_prompt(lambda p: "back after the reboot" in p, 20, "the message to reach it")


def test_the_topic_of_a_lost_session_gets_a_resume_button_that_resumes_it(
        server_factory: Callable[..., Server], tmp_path) -> None:
    from telegram_harness import ThreadedTelegram

    tg = ThreadedTelegram()
    try:
        server = server_factory(**tg.env(SM_TELEGRAM_ALLOWED_ROOTS=str(tmp_path)))
        eng = server.spawn_agent("eng", "", dir=str(server.workdir))
        thread = tg.topic_of(eng)
        subprocess.run(["tmux", "-L", server.socket, "kill-session", "-t", f"={eng['tmux_session']}"], check=True)
        server.wait_state("eng", "lost", 10)
        message_id, data = tg.button(thread, "Resume")
        assert any("lost" in t for t in tg.texts(thread))
        tg.press(message_id, data)
        server.wait_state("eng", "idle", 20)
        tg.wait(lambda t: any("continuing its conversation" in x for x in t.texts(thread)), 20,
                message="the topic to say it resumed")
        tg.say("hello from the phone", thread_id=thread)
        server.wait_prompt(lambda p: "hello from the phone" in p, 20, "the phone's message to reach it")
    finally:
        tg.close()
