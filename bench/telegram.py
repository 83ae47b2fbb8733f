"""Telegram under a burst: engine event → Bot API accepted, and the coalescing ratio.

Five fake Claude agents, each with its topic in a forum group on the strict
fake Bot API (tests/fake_telegram.py, real aiogram client in sm-bot). After the
set-up traffic has drained, the owner sends 100 messages to them as fast as
the API takes them (a burst). Each becomes a `message.queued` engine event that
the mirror puts into the recipient's topic; the agents' answers, idle
transitions and status-card edits add more events.

* latency: from each message.queued event's `at` (the server's clock) to the
  moment the fake Bot API accepted the sendMessage carrying its text;
* calls per 100 events: Bot API calls (everything but getUpdates) per 100
  engine events during the burst, until the outbox is empty.

Telegram's group limit (20 sends a minute) is scaled to 20 per 6 s on both
sides (SM_TELEGRAM_RATE_WINDOW=6 and the fake's window_scale=0.1), so the run
takes seconds; at the real window, latency scales with it, which is why
coalescing matters.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
from _harness import (BenchServer, EventStream, install_guards, print_table, record,  # noqa: E402
                      row, stats_ms, wait_for)
from telegram_harness import ThreadedTelegram  # noqa: E402

AGENTS = 5
BURST = 100


def main() -> None:
    install_guards(170)
    tg = ThreadedTelegram(window_scale=0.1)
    accepted: dict[str, float] = {}

    original = tg.fake._methods["sendMessage"]

    def timed_send(params, request):  # type: ignore[no-untyped-def]
        result = original(params, request)
        text = str(params.get("text", ""))
        now = time.time()
        for line in text.split("\n"):
            if "burst-" in line:
                marker = line[line.index("burst-"):].split()[0]
                accepted.setdefault(marker, now)
        return result

    tg.fake._methods["sendMessage"] = timed_send
    try:
        with BenchServer(extra_env=tg.env(SM_TELEGRAM_ALLOWED_ROOTS="/tmp",
                                          SM_TELEGRAM_RATE_WINDOW="6")) as srv:
            for i in range(AGENTS):
                srv.spawn(f"a{i}", provider="claude")
            wait_for(lambda: len(tg.topics()) == AGENTS, 60, message="the topics")

            def api_calls() -> int:
                return tg.do(lambda: len([c for c in tg.fake.calls if c[0] != "getUpdates"]))

            def quiet() -> bool:
                before = api_calls()
                time.sleep(1.5)
                return api_calls() == before

            wait_for(quiet, 60, 0.1, "the set-up traffic to drain")
            events = EventStream(srv.sock_path, srv.owner_token())
            calls_before = api_calls()
            client = srv.client()
            started = time.time()
            for n in range(BURST):
                client.request("POST", f"/sessions/a{n % AGENTS}/input",
                               {"text": f"burst-{n:03d} please look at module {n}"})
            sent_in = time.time() - started
            wait_for(lambda: len(accepted) == BURST, 120, 0.1, "all burst messages on Telegram")
            wait_for(quiet, 60, 0.1, "the outbox to drain")
            calls = api_calls() - calls_before
            snapshot = [e for e in events.snapshot() if e["at"] >= started]
            events.close()
            queued = {e["text"].split()[0]: e["at"] for e in snapshot
                      if e["type"] == "message.queued" and str(e.get("text", "")).startswith("burst-")}
            latencies = [accepted[m] - queued[m] for m in queued if m in accepted]
            lat = stats_ms(latencies)
            ratio = 100.0 * calls / max(1, len(snapshot))
            print_table("Telegram under a burst", [
                {"what": "burst", "value": f"{BURST} sends to {AGENTS} topics in {sent_in:.2f}s"},
                {"what": "engine events during the burst", "value": len(snapshot)},
                {"what": "Bot API calls", "value": calls},
                {"what": "calls per 100 events", "value": f"{ratio:.1f}"},
                {"what": "event → accepted p50 / p99", "value": f"{lat['p50']} / {lat['p99']} ms (n={lat['n']})"},
                {"what": "429s received", "value": tg.do(lambda: len([r for r in tg.fake.rejected if r[2] == 429]))},
            ], ["what", "value"])
            record("telegram", {"latency_ms": lat, "events": len(snapshot), "calls": calls,
                                "calls_per_100_events": round(ratio, 1), "burst_seconds": round(sent_in, 2)}, [
                row("Telegram: engine event → accepted, burst of 100 (p50 / p99)", "-",
                    f"{lat['p50']:.0f} / {lat['p99']:.0f} ms (20 sends per 6 s window)", None),
                row("Telegram: Bot API calls per 100 engine events", "-",
                    f"{ratio:.1f} ({calls} calls, {len(snapshot)} events)", None),
            ])
    finally:
        tg.close()


if __name__ == "__main__":
    main()
