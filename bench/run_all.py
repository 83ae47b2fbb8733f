"""Run every benchmark in sequence and print a Markdown table for the README.

    .venv/bin/python bench/run_all.py [name ...]     # default: all, in the order below

Each benchmark appends its own JSON line to bench/results.jsonl; this script
tags them with one BENCH_RUN_ID and builds the table from those lines only.
A benchmark that fails or overruns is reported in the table, not fatal.
"""

from __future__ import annotations

import datetime
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _harness import RESULTS, nproc  # noqa: E402

BENCHES = ["cli_cold", "spawn", "delivery", "wake", "idle_load", "throughput", "cluster", "telegram", "usage"]
LIMIT = 180  # seconds per benchmark


def run(name: str, run_id: str) -> tuple[int, float]:
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, str(HERE / f"{name}.py")],
                            env={**os.environ, "BENCH_RUN_ID": run_id})
    try:
        code = proc.wait(LIMIT)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)  # the script cleans up its server on SIGTERM
        try:
            code = proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
        code = code or -1
    return code, time.monotonic() - t0


def main() -> None:
    names = sys.argv[1:] or BENCHES
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        sys.exit(f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(BENCHES)}")
    run_id = f"{datetime.datetime.now():%Y%m%dT%H%M%S}-{secrets.token_hex(2)}"
    outcomes = {}
    load_before = os.getloadavg()[0]
    for name in names:
        print(f"\n===== {name} =====", flush=True)
        code, took = run(name, run_id)
        outcomes[name] = (code, took)
        print(f"===== {name}: exit {code}, {took:.0f} s =====", flush=True)

    lines = []
    if RESULTS.exists():
        for text in RESULTS.read_text().splitlines():
            try:
                line = json.loads(text)
            except ValueError:
                continue
            if line.get("run_id") == run_id:
                lines.append(line)
    by_bench = {line["bench"]: line for line in lines}

    print(f"\nBenchmarks of {datetime.date.today()} on a {nproc()}-core machine "
          f"(run {run_id}; 1-min load average {load_before:.1f} before, "
          f"{os.getloadavg()[0]:.1f} after; medians unless noted, n in each row):\n")
    print("| What | Target | Measured |")
    print("| --- | --- | --- |")
    missed = []
    for name in names:
        line = by_bench.get(name)
        code, took = outcomes[name]
        if line is None:
            print(f"| `bench/{name}.py` | - | **did not finish** (exit {code} after {took:.0f} s) |")
            missed.append(name)
            continue
        for r in line["summary"]:
            measured = r["measured"]
            if r["ok"] is False:
                measured += " **(missed)**"
                missed.append(r["what"])
            print(f"| {r['what']} | {r['target']} | {measured} |")
    print()
    print("All targets met." if not missed else f"Missed: {'; '.join(missed)}")


if __name__ == "__main__":
    main()
