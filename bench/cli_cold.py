"""Cold-process wall time of the hottest `sm` calls.

Against a running server with 3 shell sessions, each command is run as a fresh
process (subprocess.run) N times, interleaved round-robin so drift hits every
command alike:

* `python -c pass`            the floor: interpreter start-up alone
* `sm status`, `sm children`  as the owner (targets: p50 <= 40 ms)
* `sm hook Stop`              with a realistic payload on stdin and a real
                              agent's env (SM_TOKEN/SM_SESSION_ID/SM_SOCKET):
                              the time a Claude Code hook adds to each tool call
                              (target: p50 <= 50 ms)

For the analysis it also times import-only processes (`import cli.common`,
`import hooks.entry`) and the warm in-process API round trip, so that
start-up, imports and server time can be told apart.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import (SM, BenchServer, install_guards, print_table, record,  # noqa: E402
                      row, stats_ms)

N = 20
PY = sys.executable


def timed(argv: list[str], env: dict[str, str], stdin: bytes | None, cwd: str) -> float:
    t0 = time.perf_counter()
    result = subprocess.run(argv, env=env, input=stdin, cwd=cwd, capture_output=True)
    elapsed = time.perf_counter() - t0
    if result.returncode != 0:
        raise RuntimeError(f"{argv} exited {result.returncode}: {result.stderr.decode()[-500:]}")
    return elapsed


def main() -> None:
    install_guards(150)
    with BenchServer() as srv:
        for i in range(3):
            srv.spawn(f"sh{i}", "shell")
        agent = srv.agent_env("sh0")
        hook_env = {**srv.env, **agent}
        payload = json.dumps({
            "session_id": "5f0e6c2e-7d4b-4a53-9a43-2f1d2b6f9e10",
            "transcript_path": str(srv.tmp / "fake-transcript.jsonl"),
            "cwd": str(srv.workdir),
            "hook_event_name": "Stop",
            "permission_mode": "default",
            "stop_hook_active": False,
            "last_assistant_message": (
                "I've updated the parser to handle the trailing comma case and added a "
                "regression test in tests/test_parser.py; all 214 tests pass. " * 3),
        }).encode()
        cwd = str(srv.workdir)
        commands = {
            "python -c pass": ([PY, "-c", "pass"], srv.env, None),
            "sm status": ([SM, "status"], srv.env, None),
            "sm children": ([SM, "children"], srv.env, None),
            "sm hook Stop": ([SM, "hook", "Stop"], hook_env, payload),
            "import cli.common": ([PY, "-c", "import cli.common"], srv.env, None),
            "import hooks.entry": ([PY, "-c", "import hooks.entry"], srv.env, None),
        }
        # Sanity: the hook really reaches the server as that agent.
        check = srv.sm("hook", "Stop", env=agent, input=payload)
        assert check.returncode == 0, check.stderr
        times: dict[str, list[float]] = {k: [] for k in commands}
        for name, (argv, env, stdin) in commands.items():  # one warm-up each (page cache)
            timed(argv, env, stdin, cwd)
        for _ in range(N):
            for name, (argv, env, stdin) in commands.items():
                times[name].append(timed(argv, env, stdin, cwd))

        # Warm, in-process API round trips: the server's share of the above.
        client = srv.client()
        agent_client = srv.client(token=agent["SM_TOKEN"])
        warm: dict[str, list[float]] = {"GET /status (warm)": [], "GET /sessions?scope=children (warm)": [],
                                        "POST /hooks/Stop (warm)": []}
        body = json.loads(payload)
        for _ in range(100):
            t0 = time.perf_counter()
            client.request("GET", "/status")
            warm["GET /status (warm)"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            client.request("GET", "/sessions?scope=children")
            warm["GET /sessions?scope=children (warm)"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            agent_client.request("POST", "/hooks/Stop", body)
            warm["POST /hooks/Stop (warm)"].append(time.perf_counter() - t0)

    # Paired with the same round's `python -c pass`: what sm adds over bare
    # interpreter start-up, less sensitive to other load on the machine.
    base = times["python -c pass"]
    extra = {f"{k} − python -c pass (paired)": [a - b for a, b in zip(v, base)]
             for k, v in times.items() if k.startswith("sm ")}
    rows = [{"command": k, **stats_ms(v)} for k, v in {**times, **extra, **warm}.items()]
    print_table(f"Cold process wall time, ms (3 shell sessions; n={N} each, interleaved; "
                "warm rows n=100)", rows, ["command", "n", "p50", "p90", "p99", "min", "max"])
    res = {r["command"]: r for r in rows}
    st, ch, hk = res["sm status"], res["sm children"], res["sm hook Stop"]
    summary = [
        row("`sm status` cold process (p50 / p90)", "≤ 40 ms",
            f"{st['p50']:.0f} / {st['p90']:.0f} ms (n={N})", st["p50"] <= 40),
        row("`sm children` cold process (p50 / p90)", "≤ 40 ms",
            f"{ch['p50']:.0f} / {ch['p90']:.0f} ms (n={N})", ch["p50"] <= 40),
        row("`sm hook Stop` per hook call (p50 / p90)", "≤ 50 ms",
            f"{hk['p50']:.0f} / {hk['p90']:.0f} ms (n={N})", hk["p50"] <= 50),
        row("`python -c pass` (reference floor, p50 / p90)", "-",
            f"{res['python -c pass']['p50']:.0f} / {res['python -c pass']['p90']:.0f} ms (n={N}); "
            f"sm status adds {res['sm status − python -c pass (paired)']['p50']:.0f} ms (paired p50)", None),
    ]
    record("cli_cold", {"n": N, "sessions": 3, "rows": res}, summary)


if __name__ == "__main__":
    main()
