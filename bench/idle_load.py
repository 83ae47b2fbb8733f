"""Server cost at rest: CPU and memory of sm-bot with idle sessions.

Scenario A: 50 idle shell sessions. Scenario B (a fresh server): 10 idle fake
Claude agents (tests/fake_agent.py). After the sessions are idle and a 3 s
settle, a WINDOW-second window is measured from /proc:

* sm-bot CPU: utime+stime of its own process, as % of one core  (target ≤ 2%)
* children:   cutime+cstime (the `tmux` client processes libtmux forks for the
              monitor's list-panes, reaped by sm-bot), shown separately
* tmux server CPU (the private tmux server the monitor queries)
* sm-bot RSS: VmRSS at the end of the window, and the max sampled each second
  (target ≤ 80 MB)

The monitor's poll interval is the product default (0.5 s).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import (BenchServer, install_guards, print_table, record, row,  # noqa: E402
                      wait_for)

WINDOW = 30.0
TICK = os.sysconf("SC_CLK_TCK")


def cpu_ticks(pid: int) -> tuple[int, int]:
    """(own utime+stime, reaped children's cutime+cstime) in clock ticks."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state); utime..cstime are fields 14..17.
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return utime + stime, cutime + cstime


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def measure(srv: BenchServer, label: str, window: float) -> dict:
    tmux_pid = srv.tmux_server_pid()
    time.sleep(3.0)
    pid = srv.pid
    own0, kids0 = cpu_ticks(pid)
    tmux0 = cpu_ticks(tmux_pid)[0] if tmux_pid else 0
    t0 = time.monotonic()
    rss_max = 0.0
    while time.monotonic() - t0 < window:
        time.sleep(1.0)
        rss_max = max(rss_max, rss_mb(pid))
    elapsed = time.monotonic() - t0
    own1, kids1 = cpu_ticks(pid)
    tmux1 = cpu_ticks(tmux_pid)[0] if tmux_pid else 0
    rss_end = rss_mb(pid)
    pct = lambda ticks: 100.0 * ticks / TICK / elapsed  # noqa: E731
    states = {}
    for s in srv.sessions():
        states[s["state"]] = states.get(s["state"], 0) + 1
    return {
        "scenario": label,
        "window_s": round(elapsed, 1),
        "cpu_pct": round(pct(own1 - own0), 2),
        "children_cpu_pct": round(pct(kids1 - kids0), 2),
        "tmux_server_cpu_pct": round(pct(tmux1 - tmux0), 2),
        "rss_mb": round(rss_end, 1),
        "rss_max_mb": round(rss_max, 1),
        "states": states,
    }


def main() -> None:
    install_guards(170)
    t_start = time.monotonic()
    results = []
    with BenchServer() as srv:
        client = srv.client()
        for i in range(50):
            client.request("POST", "/sessions", {"name": f"idle{i}", "prompt": "",
                                                 "provider": "shell", "dir": str(srv.workdir)})
        wait_for(lambda: all(s["state"] == "idle" for s in srv.sessions()), 60, 0.1,
                 "50 shells to be idle")
        results.append(measure(srv, "50 idle shell sessions", WINDOW))
    # 10 fake Claude agents, on a fresh server, if the budget allows it.
    if time.monotonic() - t_start < 170 - (WINDOW + 40):
        with BenchServer() as srv:
            client = srv.client()
            for i in range(10):
                client.request("POST", "/sessions", {"name": f"claude{i}", "prompt": "",
                                                     "provider": "claude", "dir": str(srv.workdir)})
            wait_for(lambda: all(s["state"] == "idle" for s in srv.sessions()), 60, 0.1,
                     "10 fake agents to be idle")
            results.append(measure(srv, "10 idle fake Claude agents", WINDOW))
    else:
        print("skipped the 10 fake Claude agents scenario: out of time budget")

    print_table(f"sm-bot at rest, {WINDOW:.0f} s window (CPU % of one core; monitor poll 0.5 s)",
                results, ["scenario", "window_s", "cpu_pct", "children_cpu_pct",
                          "tmux_server_cpu_pct", "rss_mb", "rss_max_mb", "states"])
    summary = []
    for r in results:
        summary.append(row(f"sm-bot CPU, {r['scenario']}", "≤ 2% of a core",
                           f"{r['cpu_pct']:.2f}% (+ {r['children_cpu_pct']:.2f}% in tmux client "
                           f"children, {r['tmux_server_cpu_pct']:.2f}% tmux server; {r['window_s']:.0f} s)",
                           r["cpu_pct"] <= 2))
        summary.append(row(f"sm-bot RSS, {r['scenario']}", "≤ 80 MB",
                           f"{r['rss_max_mb']:.0f} MB", r["rss_max_mb"] <= 80))
    record("idle_load", {"window_s": WINDOW, "scenarios": results}, summary)


if __name__ == "__main__":
    main()
