"""Spawn latency, and API responsiveness while spawning.

1. `sm spawn "" --provider shell` (a cold CLI process) until the session is
   `idle`, polling GET /sessions/<id> every 10 ms; median over 10 spawns (each
   killed before the next, so every spawn sees the same server).
2. /health latency from a tight loop in a thread (Client over the socket),
   first with nothing going on (baseline), then while 5 sessions are spawned
   concurrently (5 `sm spawn` processes at once) until all are idle.
   Target: /health answers within 50 ms (max).

The monitor's poll interval is the product default (0.5 s): a shell session
leaves `starting` only when the screen reader sees its prompt, so the spawn
time includes up to one poll interval by design.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import (SM, BenchServer, install_guards, print_table, record,  # noqa: E402
                      row, stats_ms, wait_for)

N_SPAWN = 10
N_CONCURRENT = 5


class HealthProbe:
    def __init__(self, srv: BenchServer) -> None:
        self.client = srv.client(timeout=10)
        self.samples: list[float] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            t0 = time.perf_counter()
            self.client.request("GET", "/health")
            self.samples.append(time.perf_counter() - t0)

    def __enter__(self) -> "HealthProbe":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(15)


def main() -> None:
    install_guards(150)
    with BenchServer() as srv:
        client = srv.client()
        cli_part: list[float] = []
        to_idle: list[float] = []
        rng = random.Random(1)
        for i in range(N_SPAWN):
            # A random pause, so spawns do not fall into step with the monitor's
            # ticks (the idle poll below ends right after a tick otherwise, and
            # every spawn would wait a whole interval).
            time.sleep(rng.uniform(0, 0.5))
            t0 = time.perf_counter()
            out = srv.sm("spawn", "", "--provider", "shell", "--name", f"sp{i}", "--json")
            t_cli = time.perf_counter()
            assert out.returncode == 0, out.stderr
            sid = json.loads(out.stdout)["id"]
            while client.request("GET", f"/sessions/{sid}")["state"] != "idle":
                if time.perf_counter() - t0 > 20:
                    raise TimeoutError(f"sp{i} never became idle")
                time.sleep(0.01)
            t_idle = time.perf_counter()
            cli_part.append(t_cli - t0)
            to_idle.append(t_idle - t0)
            client.request("DELETE", f"/sessions/{sid}")

        time.sleep(1.0)
        with HealthProbe(srv) as base:
            time.sleep(3.0)

        with HealthProbe(srv) as probe:
            time.sleep(0.3)
            t0 = time.perf_counter()
            procs = [subprocess.Popen([SM, "spawn", "", "--provider", "shell", "--name", f"cc{i}",
                                       "--json"], env=srv.env, cwd=srv.workdir,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                     for i in range(N_CONCURRENT)]
            ids = []
            for p in procs:
                stdout, stderr = p.communicate(30)
                assert p.returncode == 0, stderr
                ids.append(json.loads(stdout)["id"])
            t_cli = time.perf_counter() - t0
            wait_for(lambda: all(s["state"] == "idle" for s in srv.sessions() if s["id"] in ids),
                     30, 0.01, "concurrent spawns to be idle")
            t_all_idle = time.perf_counter() - t0
            time.sleep(0.3)

    spawn_rows = [{"what": "sm spawn: CLI returns", **stats_ms(cli_part)},
                  {"what": "sm spawn: until idle", **stats_ms(to_idle)}]
    print_table(f"Spawn a shell session, ms (n={N_SPAWN}, sequential, monitor poll 0.5 s default)",
                spawn_rows, ["what", "n", "p50", "p90", "min", "max"])
    health_rows = [{"what": "/health, nothing else running", **stats_ms(base.samples)},
                   {"what": f"/health during {N_CONCURRENT} concurrent spawns", **stats_ms(probe.samples)}]
    print_table("/health latency from a tight loop, ms", health_rows,
                ["what", "n", "p50", "p90", "p99", "max"])
    print(f"\n{N_CONCURRENT} concurrent spawns: all CLIs returned after {t_cli*1000:.0f} ms, "
          f"all idle after {t_all_idle*1000:.0f} ms")

    idle = spawn_rows[1]
    h = health_rows[1]
    summary = [
        row("`sm spawn --provider shell` → idle (p50 / max)", "-",
            f"{idle['p50']:.0f} / {idle['max']:.0f} ms (n={N_SPAWN}; includes ≤ 1 monitor poll of 0.5 s)", None),
        row(f"/health while {N_CONCURRENT} sessions spawn (max / p50)", "≤ 50 ms",
            f"{h['max']:.0f} / {h['p50']:.1f} ms (n={h['n']})", h["max"] <= 50),
    ]
    record("spawn", {"spawn": spawn_rows, "health": health_rows,
                     "concurrent_cli_ms": round(t_cli * 1000), "concurrent_all_idle_ms": round(t_all_idle * 1000),
                     "health_during_spawn_over_50ms": sum(1 for s in probe.samples if s > 0.05)},
           summary)


if __name__ == "__main__":
    main()
