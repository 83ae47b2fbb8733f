"""Telegram unreachable at boot, or refusing the token: sm works regardless, and says so once.

sm-bot runs against the strict fake Bot API (tests/fake_telegram.py) with its
outage controls; the retry cap is 1 s (SM_TELEGRAM_RETRY_MAX) so the outage
can last many attempts without the test waiting for minutes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from conftest import Server, holds, wait_for
from telegram_harness import ThreadedTelegram


def link(server: Server) -> dict[str, Any]:
    return server.json("status").get("links", {}).get("telegram", {})


def health(server: Server) -> dict[str, Any]:
    return server.client().request("GET", "/health")


def test_telegram_down_for_sm_bots_first_attempts_then_every_mirrored_message_arrives_in_order(
        server_factory: Callable[..., Server], tmp_path: Path) -> None:
    tg = ThreadedTelegram()
    try:
        tg.do(lambda: tg.fake.outage(True, mode="drop"))  # connections closed: a network error
        server = server_factory(**tg.env(SM_TELEGRAM_ALLOWED_ROOTS=str(tmp_path), SM_TELEGRAM_RETRY_MAX="1"))
        # The engine and the API run without Telegram, and say the link is down.
        wait_for(lambda: link(server).get("state") == "down", 20, message="status to show telegram down")
        assert health(server)["links"]["telegram"]["state"] == "down"
        assert "telegram: down" in server.ok("status")
        agents = [server.spawn_agent(f"agent{i}", "", dir=str(server.workdir)) for i in range(2)]
        client = server.client()
        for n in range(6):
            for i in range(2):
                client.request("POST", f"/sessions/agent{i}/input", {"text": f"m{i}-{n:02d} during the outage"})
        server.wait_prompt(lambda p: "m1-05" in p, 20, "the last message to reach its agent")
        # Many attempts (getMe, polling, the outbox) fail before Telegram comes back.
        hits = tg.do(lambda: tg.fake.outage_hits)
        wait_for(lambda: tg.do(lambda: tg.fake.outage_hits) >= hits + 8, 30, message="more failed attempts")
        assert not tg.texts()
        tg.do(lambda: tg.fake.outage(False))

        threads = {s["id"]: tg.topic_of(s, 60) for s in agents}

        def in_order(t: ThreadedTelegram) -> bool:
            for i, s in enumerate(agents):
                text = "\n".join(t.texts(threads[s["id"]]))
                found = [text.find(f"m{i}-{n:02d} ") for n in range(6)]
                if -1 in found or found != sorted(found):
                    return False
            return True

        tg.wait(in_order, 60, message="every message of the outage, in order in each topic")
        wait_for(lambda: link(server).get("state") == "up", 20, message="status to show telegram up")
        assert "telegram:" not in server.ok("status")  # an up link is not news
        # The bot really came back: it hears the phone again.
        tg.say("hello after the outage", thread_id=threads[agents[0]["id"]])
        server.wait_prompt(lambda p: "hello after the outage" in p, 30, "the phone's message to reach the agent")
        log = (server.state_dir / "sm-bot.log").read_text()
        # One line when it went, one when it came back, whatever the number of attempts.
        assert log.count("Telegram is not reachable") == 1, log
        assert log.count("Telegram reachable again") == 1, log
        assert "Failed to fetch updates" not in log and "Traceback" not in log
    finally:
        tg.close()


def test_a_refused_token_shows_in_status_and_is_asked_again_only_slowly(
        server_factory: Callable[..., Server], tmp_path: Path) -> None:
    tg = ThreadedTelegram()
    try:
        server = server_factory(**tg.env(SM_TELEGRAM_TOKEN="123456:revoked-token-xxxxxxxxxxxxxxxxxxxxxx",
                                         SM_TELEGRAM_ALLOWED_ROOTS=str(tmp_path)))
        state = wait_for(lambda: link(server).get("state") == "refused" and link(server), 20,
                         message="status to show the token refused")
        assert "@BotFather" in state["detail"]
        assert "telegram: refused" in server.ok("status")
        assert json.loads(json.dumps(health(server)))["links"]["telegram"]["state"] == "refused"
        # The CLI and the agents work; the mirror has things to send, and still only
        # one request per SM_TELEGRAM_REFUSED_RETRY (600 s) reaches Telegram.
        server.spawn_agent("worker", "", dir=str(server.workdir))
        server.ok("send", "worker", "hello while refused")
        server.wait_prompt(lambda p: "hello while refused" in p, 20, "the message to reach the agent")
        asked = tg.do(lambda: tg.fake.unauthorized_hits)
        assert asked >= 1
        holds(lambda: tg.do(lambda: tg.fake.unauthorized_hits) == asked, 3, "no more requests with the bad token")
        log = (server.state_dir / "sm-bot.log").read_text()
        assert log.count("the token was refused") == 1, log
    finally:
        tg.close()
