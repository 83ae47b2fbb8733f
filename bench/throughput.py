"""1,000 sends from 10 concurrent agents, then every one delivered exactly once.

10 fake Claude agents (s0..s9) are the senders: 10 threads, each with its own
agent's SM_TOKEN (Client(token=...)), each POSTing 100 messages to 2 target
fake agents (t0, t1, alternating). Every body carries a unique marker
`m-<nonce>-<sender>-<seq>`. Then wait until all 1,000 rows are 'delivered' and
count the markers in the fake agents' prompts log: lost = expected markers not
seen, duplicated = markers seen more than once.

Reported: messages/s accepted (first POST → last 202) and delivered (first
POST → last delivered_at), and the per-POST latency under that load.
The deliverer batches: every pending message for an idle target goes in as
one input (up to 8 KiB), so delivery throughput is per-turn, not per-message.
"""

from __future__ import annotations

import re
import secrets
import sys
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import (BenchServer, install_guards, print_table, record, row,  # noqa: E402
                      stats_ms, wait_for)

SENDERS = 10
PER_SENDER = 100
TARGETS = ("t0", "t1")


def main() -> None:
    install_guards(170)
    nonce = secrets.token_hex(3)
    total = SENDERS * PER_SENDER
    with BenchServer() as srv:
        client = srv.client()
        names = [f"s{i}" for i in range(SENDERS)] + list(TARGETS)
        for name in names:  # start them all, then wait: fake agents start in parallel
            client.request("POST", "/sessions", {"name": name, "prompt": "", "provider": "claude",
                                                 "dir": str(srv.workdir)})
        wait_for(lambda: all(s["state"] == "idle" for s in srv.sessions()), 60, 0.1,
                 "the fake agents to be idle")
        tokens = {f"s{i}": srv.agent_env(f"s{i}")["SM_TOKEN"] for i in range(SENDERS)}

        ids: list[int] = []
        post_latency: list[float] = []
        errors: list[str] = []
        lock = threading.Lock()
        start = threading.Barrier(SENDERS + 1)

        def sender(name: str) -> None:
            c = srv.client(token=tokens[name])
            mine, lat = [], []
            start.wait()
            for seq in range(PER_SENDER):
                target = TARGETS[seq % len(TARGETS)]
                t0 = time.perf_counter()
                try:
                    out = c.request("POST", f"/sessions/{target}/input",
                                    {"text": f"m-{nonce}-{name}-{seq:03d} please note", "mode": "sequential"})
                except Exception as exc:  # counted, not fatal: lost messages show below
                    with lock:
                        errors.append(f"{name}#{seq}: {exc}")
                    continue
                lat.append(time.perf_counter() - t0)
                mine.append(out["message"])
            with lock:
                ids.extend(mine)
                post_latency.extend(lat)

        threads = [threading.Thread(target=sender, args=(f"s{i}",)) for i in range(SENDERS)]
        for t in threads:
            t.start()
        start.wait()
        t_start = time.time()
        for t in threads:
            t.join(120)
        t_accepted = time.time()

        db = srv.db()

        def delivered_count() -> int:
            return db.execute("SELECT COUNT(*) FROM messages WHERE status = 'delivered' AND body LIKE ?",
                              (f"m-{nonce}-%",)).fetchone()[0]

        try:
            wait_for(lambda: delivered_count() >= len(ids), 90, 0.05, "all messages delivered")
        except TimeoutError as exc:
            print(f"WARNING: {exc}")
        by_status = dict(db.execute("SELECT status, COUNT(*) FROM messages WHERE body LIKE ? GROUP BY status",
                                    (f"m-{nonce}-%",)).fetchall())
        last_delivered = db.execute("SELECT MAX(delivered_at) FROM messages WHERE body LIKE ?",
                                    (f"m-{nonce}-%",)).fetchone()[0] or time.time()
        batches = db.execute("SELECT COUNT(DISTINCT delivered_at) FROM messages WHERE body LIKE ?"
                             " AND status = 'delivered'", (f"m-{nonce}-%",)).fetchone()[0]
        db.close()
        # The agents log each prompt just before its hook; give the log a moment.
        marker_re = re.compile(rf"m-{nonce}-s\d+-\d{{3}}")

        def seen() -> Counter:
            return Counter(m for e in srv.prompt_log() for m in marker_re.findall(e["prompt"]))

        try:
            wait_for(lambda: len(seen()) >= total, 10, 0.1, "all markers in the prompts log")
        except TimeoutError:
            pass
        counts = seen()
        prompts = sum(1 for e in srv.prompt_log() if marker_re.search(e["prompt"]))

    expected = {f"m-{nonce}-s{i}-{seq:03d}" for i in range(SENDERS) for seq in range(PER_SENDER)}
    lost = sorted(expected - set(counts))
    dup = {m: c for m, c in counts.items() if c > 1}
    accept_s = t_accepted - t_start
    deliver_s = last_delivered - t_start
    res = {
        "messages": total, "accepted": len(ids), "post_errors": len(errors),
        "accept_seconds": round(accept_s, 2), "accepted_per_s": round(len(ids) / accept_s, 1),
        "deliver_seconds": round(deliver_s, 2), "delivered_per_s": round(len(ids) / deliver_s, 1),
        "status_counts": by_status, "lost": len(lost), "duplicated": len(dup),
        "prompts_carrying_markers": prompts, "delivery_batches": batches,
        "post_latency_ms": stats_ms(post_latency),
    }
    print_table(f"{total} sends from {SENDERS} agents to {len(TARGETS)} fake agents",
                [{"metric": k, "value": v} for k, v in res.items()], ["metric", "value"])
    if errors:
        print("first POST errors:", errors[:5])
    if lost:
        print("first lost:", lost[:10])
    if dup:
        print("first duplicated:", list(dup.items())[:10])
    ok = not lost and not dup and not errors
    summary = [
        row(f"{total} sends from {SENDERS} agents: lost / duplicated", "0 / 0",
            f"{len(lost)} / {len(dup)}", ok),
        row("Send throughput, accepted / delivered", "-",
            f"{res['accepted_per_s']:.0f} / {res['delivered_per_s']:.0f} msg/s "
            f"({batches} delivery batches; POST p50 {res['post_latency_ms']['p50']:.0f} ms)", None),
    ]
    record("throughput", res, summary)
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
