"""A permission prompt under saturated chatter: how long until Telegram has it.

Ten fake Claude agents finish turns as fast as they can (the owner keeps
sending each of them short messages), so the mirrored lines, answers and card
edits spend the group's budget, at Telegram's real limit of 20 sends a minute
(on both sides: sm's limiter and the strict fake Bot API). At random moments
(one every 15 s or so: prompts are
rare next to chatter, and 5 a minute is the reserve) one agent raises a real permission prompt (its `PermissionRequest` hook,
through `sm hook`); measured from the engine's permission.needed event to the
moment the fake Bot API accepted the message with its buttons. The actionable
lane overtakes what is queued and has its own reserve of the budget
(SM_TELEGRAM_ACTIONABLE_RESERVE, 5 of the 20), so it never waits for the window.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
from _harness import (SM, BenchServer, EventStream, install_guards, print_table, record,  # noqa: E402
                      row, stats_ms, wait_for)
from telegram_harness import ThreadedTelegram  # noqa: E402

AGENTS = 10
PROMPTS = 10


def main() -> None:
    install_guards(600)
    tg = ThreadedTelegram()
    accepted: dict[str, float] = {}
    original = tg.fake._methods["sendMessage"]

    def timed_send(params, request):  # type: ignore[no-untyped-def]
        result = original(params, request)
        text = str(params.get("text", ""))
        if "needs permission" in text and "prompt-" in text:
            accepted.setdefault(text[text.index("prompt-"):].split("<")[0].split()[0], time.time())
        return result

    tg.fake._methods["sendMessage"] = timed_send
    hooks: list[subprocess.Popen[bytes]] = []
    try:
        with BenchServer(extra_env=tg.env(SM_TELEGRAM_ALLOWED_ROOTS="/tmp")) as srv:
            for i in range(AGENTS):
                srv.spawn(f"a{i}", provider="claude")
            wait_for(lambda: len(tg.topics()) == AGENTS, 120, message="the topics")
            def api_calls() -> int:
                return tg.do(lambda: len([c for c in tg.fake.calls if c[0] != "getUpdates"]))

            def quiet() -> bool:
                before = api_calls()
                time.sleep(3)
                return api_calls() == before

            wait_for(quiet, 180, 0.1, "the set-up traffic (topics, cards, pins) to drain")
            envs = {f"a{i}": {**srv.env, **srv.agent_env(f"a{i}")} for i in range(AGENTS)}
            events = EventStream(srv.sock_path, srv.owner_token())
            client = srv.client()
            rng = random.Random(7)
            started = time.time()
            sent = 0
            moments = [5 + 15 * k + rng.uniform(0, 10) for k in range(PROMPTS)]
            n = 0
            while n < PROMPTS:
                # Chatter: every agent gets another short job, so its turn ends and begins again.
                for i in range(AGENTS):
                    client.request("POST", f"/sessions/a{i}/input", {"text": f"job {sent} sleep 0.2"})
                    sent += 1
                while n < PROMPTS and time.time() - started >= moments[n]:
                    agent = f"a{rng.randrange(AGENTS)}"
                    payload = {"hook_event_name": "PermissionRequest", "tool_name": "Bash",
                               "tool_input": {"command": f"echo prompt-{n:02d}"}}
                    hook = subprocess.Popen([SM, "hook", "PermissionRequest"], env=envs[agent],
                                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                            stderr=subprocess.DEVNULL)
                    assert hook.stdin is not None
                    hook.stdin.write(json.dumps(payload).encode())
                    hook.stdin.close()
                    hooks.append(hook)
                    n += 1
                time.sleep(1.0)
            wait_for(lambda: len(accepted) == PROMPTS, 120, 0.1, "every prompt on Telegram")
            raised = {str(e["input"]["command"]).split()[-1]: e["at"] for e in events.snapshot()
                      if e["type"] == "permission.needed" and isinstance(e.get("input"), dict)}
            events.close()
            latencies = [accepted[p] - raised[p] for p in raised if p in accepted]
            lat = stats_ms(latencies)
            refused = tg.do(lambda: [r for r in tg.fake.rejected if r[2] in (400, 429)])
            db = srv.db()
            failed = db.execute("SELECT count(*) FROM outbox WHERE status = 'failed'").fetchone()[0]
            folded = db.execute("SELECT count(*) FROM outbox WHERE status = 'folded'").fetchone()[0]
            pending = db.execute("SELECT count(*) FROM outbox WHERE status = 'pending'").fetchone()[0]
            # Where the time goes: the event → the prompt's outbox row (the mirror), and
            # the row → Telegram's acceptance (the outbox's lanes and limiter).
            queued_at = {}
            for r in db.execute("SELECT payload, created_at FROM outbox WHERE lane = 0"):
                text = json.loads(r["payload"]).get("html", "")
                if "prompt-" in text:
                    queued_at[text[text.index("prompt-"):].split("<")[0].split()[0]] = r["created_at"]
            mirror_lat = stats_ms([queued_at[p] - raised[p] for p in raised if p in queued_at])
            outbox_lat = stats_ms([accepted[p] - queued_at[p] for p in raised if p in queued_at and p in accepted])
            calls = tg.do(lambda: len([c for c in tg.fake.calls if c[0] != "getUpdates"]))
            print_table("A permission prompt under saturated chatter (20 sends a minute)", [
                {"what": "chatter", "value": f"{sent} messages to {AGENTS} agents in {time.time() - started:.0f}s"},
                {"what": "prompt raised → accepted p50 / p99",
                 "value": f"{lat['p50']} / {lat['p99']} ms (n={lat['n']})"},
                {"what": "  of which event → outbox row (the mirror) p50 / p99",
                 "value": f"{mirror_lat['p50']} / {mirror_lat['p99']} ms"},
                {"what": "  of which outbox row → accepted p50 / p99",
                 "value": f"{outbox_lat['p50']} / {outbox_lat['p99']} ms"},
                {"what": "Bot API calls", "value": calls},
                {"what": "refused calls (400/429)", "value": len(refused)},
                {"what": "outbox failed / folded / still pending", "value": f"{failed} / {folded} / {pending}"},
            ], ["what", "value"])
            record("telegram_prompt", {"latency_ms": lat, "mirror_ms": mirror_lat, "outbox_ms": outbox_lat,
                                       "chatter_messages": sent, "refused": len(refused),
                                       "failed": failed, "folded": folded, "pending": pending}, [
                row("Telegram: permission prompt under saturated chatter → accepted (p50 / p99)",
                    "≤ 1 s / ≤ 3 s", f"{lat['p50']:.0f} / {lat['p99']:.0f} ms (20 sends a minute)",
                    lat["p50"] <= 1000 and lat["p99"] <= 3000),
                row("Telegram: calls refused, messages lost under saturated chatter", "0, 0",
                    f"{len(refused)}, {failed}", not refused and failed == 0),
            ])
    finally:
        for hook in hooks:
            hook.kill()
            hook.wait()
        tg.close()


if __name__ == "__main__":
    main()
