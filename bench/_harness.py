"""Shared plumbing for the benchmarks in bench/: a real sm-bot on a private tmux
socket and state dir (like tests/conftest.py's Server, but self-contained so the
benchmarks do not depend on pytest or on test fixtures), timing statistics, and
the results file.

Every benchmark is a plain script: `.venv/bin/python bench/<name>.py`. It prints
a small table and appends one JSON line to bench/results.jsonl:

    {"bench": name, "ts": ISO time, "nproc": N, "run_id": ..., "results": {...},
     "summary": [{"what", "target", "measured", "ok"}, ...]}

`summary` rows are what bench/run_all.py turns into the README table.

Cleanup is guaranteed: `with BenchServer() as srv:` kills sm-bot and the private
tmux server and removes the temp dir on any exit, including SIGTERM/SIGINT and
the per-script watchdog (SIGALRM).
"""

from __future__ import annotations

import datetime
import json
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
BIN = Path(sys.executable).parent
SM = str(BIN / "sm")
SM_BOT = str(BIN / "sm-bot")
FAKE_AGENT = ROOT / "tests" / "fake_agent.py"
RESULTS = BENCH / "results.jsonl"

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from cli.client import Client  # noqa: E402


# -- process hygiene -------------------------------------------------------------------


class Watchdog(Exception):
    pass


def install_guards(limit_seconds: int) -> None:
    """SIGTERM/SIGINT/SIGALRM raise, so `with BenchServer()` always cleans up."""

    def on_signal(signum: int, frame: object) -> None:
        raise SystemExit(f"benchmark stopped by signal {signum}")

    def on_alarm(signum: int, frame: object) -> None:
        raise Watchdog(f"benchmark exceeded its {limit_seconds}s budget")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(limit_seconds)


def nproc() -> int:
    try:
        return int(subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip())
    except Exception:
        return len(os.sched_getaffinity(0))


# -- waiting and statistics --------------------------------------------------------------


def wait_for(condition: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02,
             message: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {message} (last: {last!r})")


def pct(values: Iterable[float], q: float) -> float:
    """The q-th percentile (0..100), linear between closest ranks."""
    xs = sorted(values)
    if not xs:
        return float("nan")
    if len(xs) == 1:
        return xs[0]
    k = (len(xs) - 1) * q / 100.0
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def stats_ms(seconds: list[float]) -> dict[str, float]:
    ms = [s * 1000.0 for s in seconds]
    return {
        "n": len(ms),
        "p50": round(pct(ms, 50), 1),
        "p90": round(pct(ms, 90), 1),
        "p99": round(pct(ms, 99), 1),
        "min": round(min(ms), 1) if ms else float("nan"),
        "max": round(max(ms), 1) if ms else float("nan"),
    }


def print_table(title: str, rows: list[dict[str, Any]], columns: list[str]) -> None:
    print(f"\n{title}")
    widths = [max(len(c), *(len(_fmt(r.get(c))) for r in rows)) for c in columns]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(_fmt(r.get(c)).ljust(w) for c, w in zip(columns, widths)))


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def record(bench: str, results: dict[str, Any], summary: list[dict[str, Any]]) -> None:
    signal.alarm(0)  # the work is done: the watchdog must not cut the results line
    line = {
        "bench": bench,
        "ts": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "nproc": nproc(),
        "loadavg": os.getloadavg()[0],
        "run_id": os.environ.get("BENCH_RUN_ID", ""),
        "results": results,
        "summary": summary,
    }
    with open(RESULTS, "a") as fh:
        fh.write(json.dumps(line) + "\n")
    print(f"\nappended to {RESULTS.relative_to(ROOT)}")


def row(what: str, target: str, measured: str, ok: bool | None) -> dict[str, Any]:
    return {"what": what, "target": target, "measured": measured, "ok": ok}


# -- the server ---------------------------------------------------------------------------


class BenchServer:
    """One sm-bot process on a private tmux socket and state dir.

    `poll_interval=None` keeps the product default for the monitor
    (SM_MONITOR_POLL_INTERVAL), so figures describe what users get.
    """

    def __init__(self, poll_interval: float | None = None, extra_env: dict[str, str] | None = None):
        self.tmp = Path(tempfile.mkdtemp(prefix="smb-", dir="/tmp"))
        self.state_dir = self.tmp / "state"
        self.socket = f"sm-bench-{secrets.token_hex(4)}"
        self.workdir = self.tmp / "work"
        self.workdir.mkdir()
        self.agent_log = self.tmp / "agent-prompts.jsonl"
        env = {
            **os.environ,
            "SM_STATE_DIR": str(self.state_dir),
            "SM_TMUX_SOCKET": self.socket,
            "SM_CONFIG": "/dev/null",
            "SM_SUMMARIZER_COMMAND": "sm-no-such-summarizer",
            "SM_CLAUDE_COMMAND": f"{sys.executable} {FAKE_AGENT} --log {self.agent_log}",
            "FAKE_AGENT_DIR": str(self.tmp),
        }
        if poll_interval is not None:
            env["SM_MONITOR_POLL_INTERVAL"] = str(poll_interval)
        env.update(extra_env or {})
        for key in ("SM_TOKEN", "SM_SESSION_ID", "SM_SOCKET", "TMUX"):
            env.pop(key, None)
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = self.tmp / "sm-bot.out"

    # lifecycle
    def __enter__(self) -> "BenchServer":
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def sock_path(self) -> Path:
        return self.state_dir / "sm.sock"

    @property
    def db_path(self) -> Path:
        return self.state_dir / "sm.db"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> "BenchServer":
        self.proc = subprocess.Popen([SM_BOT], env=self.env, cwd=self.tmp,
                                     stdout=open(self.log, "ab"), stderr=subprocess.STDOUT)
        wait_for(lambda: self._answers() or self.proc.poll() is not None, 30, 0.05,
                 "sm-bot to answer")
        if self.proc.poll() is not None:
            raise RuntimeError(f"sm-bot exited:\n{self.log.read_text()[-3000:]}")
        return self

    def _answers(self) -> bool:
        try:
            self.client().request("GET", "/health", timeout=2)
            return True
        except Exception:
            return False

    def close(self) -> None:
        # The watchdog must not interrupt the cleanup itself; re-armed after it.
        remaining = signal.alarm(0)
        try:
            # tmux first, so no agent starts a hook against a server that is
            # gone (`sm hook` would then spool into the state dir, recreating it).
            subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True)
            if self.proc and self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(15)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
        finally:
            subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True)
            base = os.environ.get("TMUX_TMPDIR", "/tmp")
            Path(base, f"tmux-{os.getuid()}", self.socket).unlink(missing_ok=True)
            if os.environ.get("BENCH_KEEP"):
                print(f"(kept {self.tmp})")
            else:
                # A hook process already running when its agent died may still
                # spool into the state dir: sweep once more after it is done.
                shutil.rmtree(self.tmp, ignore_errors=True)
                time.sleep(0.5)
                shutil.rmtree(self.tmp, ignore_errors=True)
            if remaining:
                signal.alarm(remaining)

    # driving it
    def owner_token(self) -> str:
        return (self.state_dir / "owner.token").read_text().strip()

    def client(self, token: str | None = None, timeout: float = 30) -> Client:
        return Client(self.sock_path, timeout=timeout, token=token or self.owner_token())

    def sm(self, *args: str, env: dict[str, str] | None = None, input: bytes | None = None,
           timeout: float = 30) -> subprocess.CompletedProcess[bytes]:
        run_env = dict(self.env)
        if env:
            run_env.update(env)
        return subprocess.run([SM, *args], env=run_env, cwd=self.workdir, input=input,
                              capture_output=True, timeout=timeout)

    def sessions(self) -> list[dict[str, Any]]:
        return self.client().request("GET", "/sessions")  # type: ignore[return-value]

    def session(self, ref: str) -> dict[str, Any]:
        return self.client().request("GET", f"/sessions/{ref}")  # type: ignore[return-value]

    def wait_state(self, ref: str, state: str, timeout: float = 20) -> dict[str, Any]:
        return wait_for(lambda: (s := self.session(ref))["state"] == state and s, timeout, 0.02,
                        f"{ref} to be {state}")

    def spawn(self, name: str, provider: str = "shell", token: str | None = None,
              wait_idle: bool = True) -> dict[str, Any]:
        session = self.client(token).request(
            "POST", "/sessions",
            {"name": name, "prompt": "", "provider": provider, "dir": str(self.workdir)})
        if wait_idle:
            self.wait_state(name, "idle", 30)
        return session  # type: ignore[return-value]

    def agent_env(self, ref: str) -> dict[str, str]:
        """SM_TOKEN/SM_SESSION_ID/SM_SOCKET of a session, read from its tmux environment."""
        s = self.session(ref)
        out = subprocess.run(["tmux", "-L", self.socket, "show-environment", "-t", s["tmux_session"]],
                             capture_output=True, text=True, check=True).stdout
        env = dict(line.split("=", 1) for line in out.splitlines()
                   if "=" in line and not line.startswith("-"))
        out = {k: env[k] for k in ("SM_SESSION_ID", "SM_SOCKET") if k in env}
        # The token is not in tmux's environment (nor on any command line): the
        # agent's wrapper reads it from this 0600 file.
        out["SM_TOKEN"] = Path(env["SM_TOKEN_FILE"]).read_text()
        return out

    def prompt_log(self) -> list[dict[str, Any]]:
        """[{prompt, t}] in the order the fake agents submitted them."""
        if not self.agent_log.exists():
            return []
        out = []
        for line in self.agent_log.read_text().splitlines():
            if line:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass  # a line being written right now
        return out

    def db(self) -> sqlite3.Connection:
        """A read-only connection to the server's SQLite file (WAL: reads don't block it)."""
        conn = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=5,
                               isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        return conn

    def tmux_server_pid(self) -> int | None:
        out = subprocess.run(["tmux", "-L", self.socket, "display-message", "-p", "#{pid}"],
                             capture_output=True, text=True).stdout.strip()
        return int(out) if out.isdigit() else None


# -- the real Claude Code CLI against a scripted model -----------------------------------------


class ScriptedModel:
    """bench/_model.py as a process: the Messages API the real CLI talks to.

    `requests()` is every main request as {"t", "text"}, `t` taken on arrival.
    """

    def __init__(self, tmp: Path) -> None:
        self.log = tmp / "model-requests.jsonl"
        self.proc = subprocess.Popen([sys.executable, str(BENCH / "_model.py"), str(self.log)],
                                     stdout=subprocess.PIPE, text=True)
        self.url = self.proc.stdout.readline().strip() if self.proc.stdout else ""
        if not self.url.startswith("http://127.0.0.1:"):
            self.close()
            raise RuntimeError(f"the scripted model did not start: {self.url!r}")

    def requests(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        out = []
        for line in self.log.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                pass  # a line being written right now
        return out

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


def real_claude_env(srv: "BenchServer", model_url: str) -> dict[str, str]:
    """What sm-bot needs to run the pinned real Claude Code in srv's workdir."""
    sys.path.insert(0, str(ROOT / "tests"))
    from claude_home import CLAUDE_BIN, claude_available, make_claude_home

    if not claude_available():
        raise SystemExit(f"the real Claude Code CLI is not installed at {CLAUDE_BIN}")
    env = make_claude_home(srv.tmp / "home", srv.workdir, allow_bash=True, base_url=model_url)
    return {"SM_CLAUDE_COMMAND": str(CLAUDE_BIN), **env}


# -- server-sent events -----------------------------------------------------------------------


class EventStream:
    """GET /events over the Unix socket, parsed in a thread into `self.events`
    (each event dict gets `_recv`, the local time.time() it arrived)."""

    def __init__(self, sock_path: Path, token: str) -> None:
        self.events: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.connected = threading.Event()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.connect(str(sock_path))
        self._sock.sendall(
            f"GET /events HTTP/1.1\r\nHost: sm\r\nAuthorization: Bearer {token}\r\n\r\n".encode())
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self.connected.wait(5):
            raise RuntimeError("GET /events did not connect")

    def _run(self) -> None:
        buf = b""
        try:
            while True:
                chunk = self._sock.recv(65536)
                if not chunk:
                    return
                buf += chunk
                # Chunked transfer framing lines are not "data:" lines, so a
                # line-based scan of the raw stream is enough here.
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    line = line.rstrip(b"\r")
                    if line.startswith(b": connected"):
                        self.connected.set()
                    elif line.startswith(b"data: "):
                        try:
                            event = json.loads(line[6:])
                        except ValueError:
                            continue
                        event["_recv"] = time.time()
                        with self.lock:
                            self.events.append(event)
        except OSError:
            return

    def snapshot(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.events)

    def close(self) -> None:
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()
