"""Server cost at rest: CPU and memory of sm-bot with idle sessions, and how
soon a dead pane is noticed.

    .venv/bin/python bench/idle_load.py [--sessions 200] [--window 30] [--trials 10]

Scenario A: SESSIONS idle shell agents (`--provider shell`). Scenario B (a
fresh server, if the time budget allows): 10 idle fake Claude agents
(tests/fake_agent.py). After the sessions are idle and a 3 s settle, a
WINDOW-second window is measured from /proc:

* sm-bot CPU: utime+stime of its own process, as % of one core
* children:   cutime+cstime (the `tmux` clients libtmux forks, reaped by sm-bot)
* tmux server CPU, its own and its reaped children's (hook shells, if any)
* total: the three together  (target ≤ 0.2% of a core with 200 idle shells)
* sm-bot RSS: VmRSS at the end of the window, and the max sampled each second
  (target ≤ 80 MB)

Then, in scenario A, TRIALS times: kill one agent's shell (SIGKILL) and time
until `GET /events` reports that session errored (target ≤ 300 ms).

The monitor's settings are the product defaults. To measure another tree's
server (say, main before a change), run this script with PYTHONPATH=<tree>.
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import (BenchServer, EventStream, install_guards, print_table,  # noqa: E402
                      record, row, stats_ms, wait_for)

BUDGET = 175
TICK = os.sysconf("SC_CLK_TCK")


def raise_fd_limit() -> None:
    """sm-bot starts the tmux server, which inherits this: 200 panes need fds."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY
                                                   else max(soft, 65536), hard))


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
    tmux0 = sum(cpu_ticks(tmux_pid)) if tmux_pid else 0
    t0 = time.monotonic()
    rss_max = 0.0
    while time.monotonic() - t0 < window:
        time.sleep(1.0)
        rss_max = max(rss_max, rss_mb(pid))
    elapsed = time.monotonic() - t0
    own1, kids1 = cpu_ticks(pid)
    tmux1 = sum(cpu_ticks(tmux_pid)) if tmux_pid else 0
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
        "total_cpu_pct": round(pct(own1 - own0 + kids1 - kids0 + tmux1 - tmux0), 2),
        "rss_mb": round(rss_end, 1),
        "rss_max_mb": round(rss_max, 1),
        "states": states,
    }


def shell_pid(srv: BenchServer, pane_id: str) -> int:
    """The agent's shell: the one child of the pane's wrapper (sh -c)."""
    import subprocess
    wrapper = int(subprocess.run(["tmux", "-L", srv.socket, "display-message", "-p", "-t",
                                  pane_id, "#{pane_pid}"], capture_output=True, text=True).stdout)
    with open(f"/proc/{wrapper}/task/{wrapper}/children") as fh:
        return int(fh.read().split()[0])


def dead_pane_latency(srv: BenchServer, sessions: list[dict], trials: int) -> list[float]:
    """Kill a shell; seconds until /events says its session is errored."""
    stream = EventStream(srv.sock_path, srv.owner_token())
    out = []
    try:
        for victim in sessions[:trials]:
            pid = shell_pid(srv, victim["pane_id"])
            t0 = time.time()
            os.kill(pid, signal.SIGKILL)
            event = wait_for(lambda: next((e for e in stream.snapshot()
                                           if e.get("session") == victim["id"]
                                           and e.get("state") == "errored"), None),
                             10, 0.005, f"{victim['name']} to be errored")
            out.append(event["_recv"] - t0)
            time.sleep(0.3)
    finally:
        stream.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--window", type=float, default=30.0)
    parser.add_argument("--trials", type=int, default=10)
    args = parser.parse_args()
    install_guards(BUDGET)
    raise_fd_limit()
    t_start = time.monotonic()
    results = []
    latency: list[float] = []
    with BenchServer() as srv:
        client = srv.client()
        for i in range(args.sessions):
            client.request("POST", "/sessions", {"name": f"idle{i}", "prompt": "",
                                                 "provider": "shell", "dir": str(srv.workdir)})
        wait_for(lambda: all(s["state"] == "idle" for s in srv.sessions()), 90, 0.2,
                 f"{args.sessions} shells to be idle")
        spawned = round(time.monotonic() - t_start, 1)
        results.append(measure(srv, f"{args.sessions} idle shell sessions", args.window))
        results[-1]["spawn_s"] = spawned
        latency = dead_pane_latency(srv, srv.sessions(), args.trials)
    # 10 fake Claude agents, on a fresh server, if the budget allows it.
    if time.monotonic() - t_start < BUDGET - (args.window + 40):
        with BenchServer() as srv:
            client = srv.client()
            for i in range(10):
                client.request("POST", "/sessions", {"name": f"claude{i}", "prompt": "",
                                                     "provider": "claude", "dir": str(srv.workdir)})
            wait_for(lambda: all(s["state"] == "idle" for s in srv.sessions()), 60, 0.1,
                     "10 fake agents to be idle")
            results.append(measure(srv, "10 idle fake Claude agents", args.window))
    else:
        print("skipped the 10 fake Claude agents scenario: out of time budget")

    print_table(f"sm-bot at rest, {args.window:.0f} s window (CPU % of one core)",
                results, ["scenario", "window_s", "cpu_pct", "children_cpu_pct",
                          "tmux_server_cpu_pct", "total_cpu_pct", "rss_mb", "rss_max_mb", "states"])
    dead = stats_ms(latency)
    print(f"\ndead pane noticed (kill -> errored event), {dead['n']} trials: "
          f"p50 {dead['p50']:.0f} ms, max {dead['max']:.0f} ms")
    summary = []
    for r in results:
        many = r["scenario"].startswith(f"{args.sessions} idle shell")
        summary.append(row(f"sm-bot + children + tmux CPU, {r['scenario']}",
                           "≤ 0.2% of a core" if many else "",
                           f"{r['total_cpu_pct']:.2f}% (sm-bot {r['cpu_pct']:.2f}%, tmux clients "
                           f"{r['children_cpu_pct']:.2f}%, tmux server {r['tmux_server_cpu_pct']:.2f}%;"
                           f" {r['window_s']:.0f} s)",
                           r["total_cpu_pct"] <= 0.2 if many else None))
        summary.append(row(f"sm-bot RSS, {r['scenario']}", "≤ 80 MB",
                           f"{r['rss_max_mb']:.0f} MB", r["rss_max_mb"] <= 80))
    summary.append(row(f"dead pane noticed, {args.sessions} idle shells", "≤ 300 ms",
                       f"p50 {dead['p50']:.0f} ms, max {dead['max']:.0f} ms ({dead['n']} kills)",
                       dead["max"] <= 300))
    record("idle_load", {"window_s": args.window, "scenarios": results,
                         "dead_pane_ms": dead}, summary)


if __name__ == "__main__":
    main()
