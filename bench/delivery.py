"""`sm send` → the model request that carries it, for an idle real Claude Code agent.

The agent is the pinned real Claude Code CLI (tests/claude_home.py) with sm's
hooks, talking to the scripted Messages API (bench/_model.py, which stamps
each request the moment it arrives). Each round takes two samples, in
alternating order, on the same agent:

    sm      t0 just before `sm send eng "ping <nonce>-<i>"` (a cold CLI process)
            → the model request whose text carries it
    floor   t0 just before `tmux send-keys -l "[from owner] ping ..."` then
            `tmux send-keys Enter` (two tmux calls, straight into the pane)
            → the model request whose text carries it

The floor is what any delivery costs: Claude taking the input, its
UserPromptSubmit hook (`sm hook`), and the request. Before each sample the
agent is idle (its Stop after the previous turn is processed) with nothing
queued, plus a random 0-0.2 s pause so samples do not fall into step with
anything periodic.

Targets: sm p50 <= 200 ms, p99 <= 400 ms, p50 <= 2x the floor's p50.
"""

from __future__ import annotations

import random
import re
import secrets
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import (BenchServer, ScriptedModel, install_guards, print_table,  # noqa: E402
                      real_claude_env, record, row, stats_ms, wait_for)

N = 30


def main() -> None:
    install_guards(170)
    nonce = secrets.token_hex(3)
    rng = random.Random(2)
    sm_samples: list[dict[str, float]] = []
    floor: list[float] = []
    srv = BenchServer()
    model = ScriptedModel(srv.tmp)
    try:
        srv.env.update(real_claude_env(srv, model.url))
        with srv:
            srv.spawn("eng", "claude")
            pane = srv.session("eng")["pane_id"]
            client = srv.client()
            db = srv.db()

            def idle_after(t: float) -> None:
                wait_for(lambda: (s := client.request("GET", "/sessions/eng"))["state"] == "idle"
                         and s["queued"] == 0 and s["state_since"] > t, 30, 0.01,
                         "eng to finish its turn")

            def model_saw(marker: str) -> dict:
                return wait_for(lambda: next((r for r in model.requests() if marker in r["text"]),
                                             None), 15, 0.002, f"{marker!r} at the model")

            def via_sm(marker: str) -> None:
                t0 = time.time()
                out = srv.sm("send", "eng", marker)
                t_cli = time.time()
                assert out.returncode == 0, out.stderr
                msg_id = int(re.search(rb"queued message (\d+)", out.stdout).group(1))
                t_model = model_saw(marker)["t"]
                r = wait_for(lambda: (r := db.execute(
                    "SELECT status, created_at, delivered_at FROM messages WHERE id = ?",
                    (msg_id,)).fetchone())["status"] == "delivered" and r, 10, 0.005,
                    f"message {msg_id} delivered")
                sm_samples.append({
                    "cli": t_cli - t0, "queued": r["created_at"] - t0, "model": t_model - t0,
                    "queued_to_model": t_model - r["created_at"],
                    "delivered": r["delivered_at"] - t0,
                })
                idle_after(t_model)

            def typed(marker: str) -> None:
                t0 = time.time()
                tmux = ["tmux", "-L", srv.socket, "send-keys", "-t", pane]
                subprocess.run([*tmux, "-l", "--", f"[from owner] {marker}"], check=True)
                subprocess.run([*tmux, "Enter"], check=True)
                t_model = model_saw(marker)["t"]
                floor.append(t_model - t0)
                idle_after(t_model)

            idle_after(0)
            via_sm(f"warm-up {nonce}")  # the first turn pays one-off start-up costs
            sm_samples.clear()
            for i in range(N):
                order = [via_sm, typed] if i % 2 == 0 else [typed, via_sm]
                for how in order:
                    time.sleep(rng.uniform(0, 0.2))
                    how(f"ping {nonce}-{how.__name__}-{i}")
            retries = srv.log.read_text().count("Enter not taken")
            db.close()
    finally:
        model.close()

    labels = [
        ("queued", "t0 → row inserted (CLI start-up + POST)"),
        ("cli", "t0 → CLI process returned"),
        ("queued_to_model", "row inserted → model request"),
        ("model", "t0 → model request (sm send)"),
        ("delivered", "t0 → row 'delivered' (messages.delivered_at)"),
    ]
    rows = [{"step": label, **stats_ms([s[k] for s in sm_samples])} for k, label in labels]
    rows.append({"step": "floor: tmux send-keys + Enter → model request", **stats_ms(floor)})
    print_table(f"sm send → model request, idle real Claude Code agent, ms (n={N})", rows,
                ["step", "n", "p50", "p90", "p99", "max"])
    res = {k: stats_ms([s[k] for s in sm_samples]) for k, _ in labels}
    res["floor"] = stats_ms(floor)
    m, f = res["model"], res["floor"]
    ratio = m["p50"] / f["p50"] if f["p50"] else float("inf")
    print(f"\nsm send p50 {m['p50']:.0f} ms, p99 {m['p99']:.0f} ms; floor p50 {f['p50']:.0f} ms,"
          f" p99 {f['p99']:.0f} ms; ratio {ratio:.2f}x; Enter retries: {retries}")
    summary = [
        row("`sm send` → model request, real Claude (p50)", "≤ 200 ms",
            f"{m['p50']:.0f} ms (n={N})", m["p50"] <= 200),
        row("`sm send` → model request, real Claude (p99)", "≤ 400 ms",
            f"{m['p99']:.0f} ms (n={N})", m["p99"] <= 400),
        row("… p50 over the floor's (send-keys + Enter → request)", "≤ 2×",
            f"{ratio:.2f}× (floor p50 {f['p50']:.0f} ms)", ratio <= 2),
    ]
    record("delivery", {"n": N, "steps": res, "ratio_p50": round(ratio, 2),
                        "enter_retries": retries}, summary)


if __name__ == "__main__":
    main()
