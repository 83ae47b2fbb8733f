"""`sm send` to confirmed delivery, for an idle fake Claude agent.

For each of N sends to the fake agent `eng` (tests/fake_agent.py, real hooks):

    t0          just before `sm send eng "ping <nonce>-<i>"` (a cold CLI process)
    queued      messages.created_at (server clock = same machine clock)
    cli done    the CLI process returned ("queued message N")
    submitted   the prompt's "t" in the fake agent's prompts log (the agent took it)
    delivered   messages.delivered_at, i.e. the row's status became 'delivered'
                (sm saw the UserPromptSubmit hook)

Targets: t0 -> delivered p50 <= 300 ms, p99 <= 1 s. Before each send the agent
is idle again (its Stop after the previous turn has been processed), plus a
random 0-0.2 s pause so sends do not fall into step with anything periodic.
"""

from __future__ import annotations

import random
import re
import secrets
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import (BenchServer, install_guards, print_table, record, row,  # noqa: E402
                      stats_ms, wait_for)

N = 30


def main() -> None:
    install_guards(150)
    nonce = secrets.token_hex(3)
    rng = random.Random(2)
    samples: list[dict[str, float]] = []
    with BenchServer() as srv:
        srv.spawn("eng", "claude")
        client = srv.client()
        db = srv.db()
        for i in range(N):
            # Idle again after the previous turn, with nothing queued.
            wait_for(lambda: (s := client.request("GET", "/sessions/eng"))["state"] == "idle"
                     and s["queued"] == 0, 20, 0.01, "eng to be idle")
            time.sleep(rng.uniform(0, 0.2))
            marker = f"ping {nonce}-{i}"
            t0 = time.time()
            out = srv.sm("send", "eng", marker)
            t_cli = time.time()
            assert out.returncode == 0, out.stderr
            msg_id = int(re.search(rb"queued message (\d+)", out.stdout).group(1))
            r = wait_for(lambda: db.execute("SELECT status, created_at, delivered_at FROM messages"
                                            " WHERE id = ?", (msg_id,)).fetchone()["status"] == "delivered"
                         and db.execute("SELECT created_at, delivered_at FROM messages WHERE id = ?",
                                        (msg_id,)).fetchone(), 10, 0.005, f"message {msg_id} delivered")
            t_seen_db = time.time()
            entry = wait_for(lambda: next((e for e in srv.prompt_log() if marker in e["prompt"]), None),
                             10, 0.005, f"{marker!r} in the prompts log")
            samples.append({
                "cli": t_cli - t0,
                "queued": r["created_at"] - t0,
                "submitted": entry["t"] - t0,
                "delivered": r["delivered_at"] - t0,
                "delivered_polled": t_seen_db - t0,
                "queued_to_submitted": entry["t"] - r["created_at"],
                "submitted_to_delivered": r["delivered_at"] - entry["t"],
            })
            # Let this turn finish (busy -> Stop -> idle) before the next send.
            wait_for(lambda: (s := client.request("GET", "/sessions/eng"))["state"] == "idle"
                     and s["state_since"] > r["delivered_at"], 20, 0.01, "eng to finish the turn")
        db.close()

    labels = [
        ("queued", "t0 → row inserted (CLI start-up + POST)"),
        ("cli", "t0 → CLI process returned"),
        ("queued_to_submitted", "row inserted → agent got the prompt"),
        ("submitted_to_delivered", "agent got prompt → row 'delivered' (hook)"),
        ("submitted", "t0 → agent got the prompt (prompts log)"),
        ("delivered", "t0 → row 'delivered' (messages.delivered_at)"),
        ("delivered_polled", "t0 → 'delivered' seen by a 5 ms DB poll"),
    ]
    rows = [{"step": label, **stats_ms([s[k] for s in samples])} for k, label in labels]
    print_table(f"sm send → delivery to an idle fake agent, ms (n={N})", rows,
                ["step", "n", "p50", "p90", "p99", "max"])
    res = {k: stats_ms([s[k] for s in samples]) for k, _ in labels}
    d, sub = res["delivered"], res["submitted"]
    summary = [
        row("`sm send` → delivered, idle agent (p50)", "≤ 300 ms",
            f"{d['p50']:.0f} ms (n={N})", d["p50"] <= 300),
        row("`sm send` → delivered, idle agent (p99)", "≤ 1 s",
            f"{d['p99']:.0f} ms (n={N})", d["p99"] <= 1000),
        row("`sm send` → prompt submitted in the agent (p50 / p99)", "-",
            f"{sub['p50']:.0f} / {sub['p99']:.0f} ms (n={N})", None),
    ]
    record("delivery", {"n": N, "steps": res}, summary)


if __name__ == "__main__":
    main()
