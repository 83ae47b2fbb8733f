"""Stop hook → the waiting parent's wake-up message submitted.

Fake Claude agents `boss` (spawned by the owner) and `worker` (spawned by boss).
Each round:

1. the owner sends worker "job sleep 0.5" (`sm send`);
2. boss's env runs `sm wait worker 60` (as boss, with its SM_TOKEN).
   The wait is registered after the send on purpose: a wait on an idle target
   with nothing queued fires at once ("[sm] worker is idle (after 0s)"), so
   `sm send X; sm wait X` is the documented pattern (core/waits.py);
3. worker takes the job, works 0.5 s, and its Stop hook makes it idle; the wait
   fires and queues "[sm] worker is idle" for boss, which gets it as a prompt.

Measured from the `at` of worker's state.changed→idle event (GET /events, the
server's own clock at the moment it applied the Stop hook) to the "t" at which
boss's fake agent logged the "[sm] worker is idle" prompt. Also broken down by
the wake-up message's message.queued and message.delivered events.
Target: p50 <= 500 ms.
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import (BenchServer, EventStream, install_guards, print_table, record,  # noqa: E402
                      row, stats_ms, wait_for)

N = 10
WAKE = "[sm] worker is idle"


def main() -> None:
    install_guards(150)
    rng = random.Random(3)
    samples: list[dict[str, float]] = []
    with BenchServer() as srv:
        boss = srv.spawn("boss", "claude")
        boss_env = srv.agent_env("boss")
        worker = srv.spawn("worker", "claude", token=boss_env["SM_TOKEN"])
        assert srv.session("worker")["parent_id"] == boss["id"]
        events = EventStream(srv.sock_path, srv.owner_token())
        client = srv.client()
        try:
            for i in range(N):
                for name in ("boss", "worker"):
                    wait_for(lambda: (s := client.request("GET", f"/sessions/{name}"))["state"] == "idle"
                             and s["queued"] == 0, 20, 0.01, f"{name} to be idle")
                time.sleep(rng.uniform(0, 0.2))
                t_round = time.time()
                out = srv.sm("send", "worker", f"job sleep 0.5 (round {i})")
                assert out.returncode == 0, out.stderr
                out = srv.sm("wait", "worker", "60", env=boss_env)
                assert out.returncode == 0, out.stderr
                entry = wait_for(lambda: next((e for e in srv.prompt_log()
                                               if WAKE in e["prompt"] and e["t"] > t_round), None),
                                 15, 0.005, "boss to get the wake-up")

                def find() -> dict | None:
                    evs = [e for e in events.snapshot() if e["at"] >= t_round]
                    idle = [e for e in evs if e["type"] == "state.changed" and e["session"] == worker["id"]
                            and e["state"] == "idle" and e.get("source") == "hook Stop"]
                    queued = [e for e in evs if e["type"] == "message.queued" and e["session"] == boss["id"]
                              and WAKE in (e.get("text") or "")]
                    if not idle or not queued:
                        return None
                    delivered = [e for e in evs if e["type"] == "message.delivered"
                                 and queued[-1]["message"] in e["messages"]]
                    if not delivered:
                        return None
                    return {"idle": idle[-1], "queued": queued[-1], "delivered": delivered[-1]}

                found = wait_for(find, 10, 0.01, "the round's events")
                t_idle = found["idle"]["at"]
                samples.append({
                    "stop_to_queued": found["queued"]["at"] - t_idle,
                    "queued_to_prompt": entry["t"] - found["queued"]["at"],
                    "prompt_to_delivered": found["delivered"]["at"] - entry["t"],
                    "stop_to_prompt": entry["t"] - t_idle,
                    "stop_to_delivered": found["delivered"]["at"] - t_idle,
                    "event_lag": found["idle"]["_recv"] - t_idle,
                })
                if entry["prompt"].strip() != entry["prompt"].strip().split("\n")[0]:
                    print(f"note: round {i}: wake-up came batched: {entry['prompt']!r}")
        finally:
            events.close()

    labels = [
        ("stop_to_queued", "worker idle (Stop) → wake-up queued for boss"),
        ("queued_to_prompt", "wake-up queued → boss got the prompt"),
        ("stop_to_prompt", "worker idle (Stop) → boss got the prompt"),
        ("prompt_to_delivered", "boss got prompt → row 'delivered' (hook)"),
        ("stop_to_delivered", "worker idle (Stop) → wake-up 'delivered'"),
        ("event_lag", "event 'at' → SSE client received it"),
    ]
    rows = [{"step": label, **stats_ms([s[k] for s in samples])} for k, label in labels]
    print_table(f"Stop hook → waiting parent woken, ms (n={N})", rows,
                ["step", "n", "p50", "p90", "max"])
    res = {k: stats_ms([s[k] for s in samples]) for k, _ in labels}
    w = res["stop_to_prompt"]
    summary = [row("Stop hook → parent's wake-up submitted (p50 / max)", "≤ 500 ms",
                   f"{w['p50']:.0f} / {w['max']:.0f} ms (n={N})", w["p50"] <= 500)]
    record("wake", {"n": N, "steps": res}, summary)


if __name__ == "__main__":
    main()
