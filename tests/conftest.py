"""Fixtures: a real sm-bot process on a private tmux socket and a real SQLite file.

Every test gets its own state dir and tmux server (`tmux -L sm-test-<random>`),
so tests never see each other's agents or the user's tmux. The CLI is run as
a real subprocess against the server's real Unix socket.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SM = str(BIN / "sm")
SM_BOT = str(BIN / "sm-bot")
FAKE_AGENT = ROOT / "tests" / "fake_agent.py"

sys.path.insert(0, str(ROOT))

from cli.client import Client  # noqa: E402


def wait_for(condition: Callable[[], Any], timeout: float = 30.0, interval: float = 0.05,
             message: str = "condition") -> Any:
    """Poll `condition` until it returns something truthy, or fail after `timeout`."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message} (last: {last!r})")


def holds(condition: Callable[[], Any], seconds: float, message: str = "condition") -> None:
    """Check that `condition` stays true for `seconds`, failing the moment it does not.

    For negative checks ("nothing was pasted", "the hook is still waiting"):
    the duration is the window in which a wrong behaviour would show, and
    every moment of it is checked.
    """
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert condition(), f"{message} stopped holding"
        time.sleep(0.05)
    assert condition(), f"{message} stopped holding"


def scripted_model(script: str, log: Path) -> Iterator[str]:
    """A scripted model API (tests/fake_anthropic.py or tests/fake_openai.py) as its own
    process on loopback, logging each request to `log`; yields its URL."""
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / script), "--port", "0",
                             "--log-requests", str(log)], stdout=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().strip() if proc.stdout else ""
        assert url.startswith("http://127.0.0.1:"), url
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


class EventStream:
    """GET /events over the real socket, read by a thread into a list."""

    def __init__(self, sock_path: Path, token: str) -> None:
        import socket
        import threading

        self.events: list[dict[str, Any]] = []
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.connect(str(sock_path))
        self._sock.sendall(f"GET /events HTTP/1.1\r\nHost: sm\r\nAuthorization: Bearer {token}\r\n\r\n".encode())
        self._connected = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        wait_for(self._connected.is_set, 30, message="the event stream to open")

    def _read(self) -> None:
        buffer = b""
        while True:
            try:
                chunk = self._sock.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            buffer += chunk
            if b": connected" in buffer:
                self._connected.set()
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                line = line.strip()
                # chunked transfer: data lines are intact inside chunks for our small events
                if line.startswith(b"data: "):
                    self.events.append(json.loads(line[6:]))

    def wait(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 30,
             message: str = "an event") -> dict[str, Any]:
        return wait_for(lambda: next((e for e in self.events if predicate(e)), None), timeout,
                        0.05, message)

    def close(self) -> None:
        self._sock.close()


class Server:
    """One sm-bot process and everything it owns, for one test."""

    def __init__(self, tmp: Path, extra_env: dict[str, str] | None = None, program: str = SM_BOT) -> None:
        self.tmp = tmp
        self.program = program  # sm-bot, or sm-node (tests/test_cluster.py)
        self.state_dir = tmp / "state"
        self.socket = f"sm-test-{secrets.token_hex(4)}"
        self.workdir = tmp / "work"
        self.workdir.mkdir(exist_ok=True)
        self.agent_log = tmp / "agent-prompts.jsonl"
        self.env = {
            **os.environ,
            "SM_STATE_DIR": str(self.state_dir),
            "SM_TMUX_SOCKET": self.socket,
            "SM_CONFIG": "/dev/null",
            "SM_MONITOR_POLL_INTERVAL": "0.2",
            "SM_SUMMARIZER_COMMAND": "sm-no-such-summarizer",
            "SM_CLAUDE_COMMAND": f"{sys.executable} {FAKE_AGENT} --log {self.agent_log}",
            "FAKE_AGENT_DIR": str(tmp),
            **(extra_env or {}),
        }
        for key in ("SM_TOKEN", "SM_SESSION_ID", "SM_SOCKET", "TMUX"):
            self.env.pop(key, None)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = tmp / "sm-bot.out"

    @property
    def sock_path(self) -> Path:
        return self.state_dir / "sm.sock"

    def start(self) -> "Server":
        self.proc = subprocess.Popen(
            [self.program], env=self.env, cwd=self.tmp,
            stdout=open(self.log, "ab"), stderr=subprocess.STDOUT,
        )
        # Generous: on a loaded 2-core machine a cold start has taken over 20 s.
        wait_for(lambda: self.sm("status").returncode == 0 or self._died(), 60,
                 message="sm-bot to answer")
        assert self.proc.poll() is None, self.log.read_text()
        return self

    def _died(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode if self.proc else None

    def restart(self) -> "Server":
        self.stop()
        return self.start()

    def close(self) -> None:
        self.stop()
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True)
        uid = os.getuid()
        for base in (os.environ.get("TMUX_TMPDIR", "/tmp"),):
            Path(base, f"tmux-{uid}", self.socket).unlink(missing_ok=True)

    # -- driving it ------------------------------------------------------------------

    def sm(self, *args: str, env: dict[str, str] | None = None, input: bytes | None = None,
           timeout: float = 30) -> subprocess.CompletedProcess[str]:
        run_env = dict(self.env)
        if env:
            run_env.update(env)
        return subprocess.run([SM, *args], env=run_env, cwd=self.workdir, input=input,
                              capture_output=True, timeout=timeout,
                              text=input is None)

    def ok(self, *args: str, **kwargs: Any) -> str:
        result = self.sm(*args, **kwargs)
        assert result.returncode == 0, f"sm {' '.join(args)}: {result.stderr}"
        return result.stdout

    def json(self, *args: str, **kwargs: Any) -> Any:
        return json.loads(self.ok(*args, "--json", **kwargs))

    def session(self, ref: str) -> dict[str, Any]:
        for s in self.json("status")["sessions"]:
            if ref in (s["id"], s["name"]):
                return s
        raise AssertionError(f"no live session {ref}")

    def state(self, ref: str) -> str:
        return self.session(ref)["state"]

    def wait_state(self, ref: str, state: str, timeout: float = 30) -> dict[str, Any]:
        return wait_for(lambda: (s := self.session(ref))["state"] == state and s,
                        timeout, 0.1, f"{ref} to be {state}")

    def wait_turn_done(self, ref: str, answer: str, timeout: float = 30) -> dict[str, Any]:
        """Wait until the agent's answer is in its transcript and it is idle again.

        A prompt shows on the agent's screen a moment before its hook makes the
        session busy, so "prompt seen, then idle" can see the idle from before
        the turn; the answer is written after that hook, and idle comes after it.
        """
        def done() -> Any:
            said = self.sm("output", ref, "--transcript")
            return answer in said.stdout and (s := self.session(ref))["state"] == "idle" and s
        return wait_for(done, timeout, 0.1, f"{ref} to answer {answer!r} and be idle")

    def agent_env(self, ref: str) -> dict[str, str]:
        """The environment an agent gets (its own SM_TOKEN), read from its tmux session."""
        s = self.session(ref)
        out = subprocess.run(["tmux", "-L", self.socket, "show-environment", "-t", s["tmux_session"]],
                             capture_output=True, text=True, check=True).stdout
        env = dict(line.split("=", 1) for line in out.splitlines() if "=" in line and not line.startswith("-"))
        out = {k: env[k] for k in ("SM_SESSION_ID", "SM_SOCKET") if k in env}
        # The token is not in tmux's environment (nor on any command line): the
        # agent's wrapper reads it from this 0600 file.
        out["SM_TOKEN"] = Path(env["SM_TOKEN_FILE"]).read_text()
        return out

    def kill_agent_process(self, ref: str) -> None:
        """SIGKILL the agent running in a session's pane, as a crash would (the pane stays)."""
        pane_pid = subprocess.run(["tmux", "-L", self.socket, "display", "-p", "-t",
                                   self.session(ref)["pane_id"], "#{pane_pid}"],
                                  capture_output=True, text=True, check=True).stdout.strip()
        subprocess.run(["pkill", "-KILL", "-P", pane_pid], check=True)

    def screen(self, ref: str) -> str:
        pane = self.session(ref)["pane_id"]
        return subprocess.run(["tmux", "-L", self.socket, "capture-pane", "-p", "-t", pane],
                              capture_output=True, text=True).stdout

    def prompts(self) -> list[str]:
        """What the fake agents saw submitted, in order."""
        if not self.agent_log.exists():
            return []
        return [json.loads(line)["prompt"] for line in self.agent_log.read_text().splitlines() if line]

    def owner_token(self) -> str:
        return (self.state_dir / "owner.token").read_text().strip()

    def events(self) -> EventStream:
        return EventStream(self.sock_path, self.owner_token())

    def client(self, token: str | None = None) -> Client:
        """An API client over the real socket, as the owner unless given an agent's token."""
        return Client(self.sock_path, token=token or self.owner_token())

    def spawn_agent(self, name: str, prompt: str = "", **extra: Any) -> dict[str, Any]:
        """A fake Claude agent (tests/fake_agent.py, real hooks), ready for input."""
        session = self.client().request("POST", "/sessions", {"name": name, "prompt": prompt,
                                                               "provider": "claude", **extra})
        if not prompt:
            self.wait_state(name, "idle")
        return session

    def wait_prompt(self, predicate: Callable[[str], bool], timeout: float = 30,
                    message: str = "a prompt") -> str:
        """The first prompt any fake agent received that matches `predicate`."""
        return wait_for(lambda: next((p for p in self.prompts() if predicate(p)), None),
                        timeout, 0.05, message)


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    made: list[Server] = []

    def make(**extra_env: str) -> Server:
        server = Server(tmp_path, extra_env)
        made.append(server)
        return server.start()

    yield make
    for server in made:
        server.close()


@pytest.fixture
def server(server_factory: Callable[..., Server]) -> Server:
    return server_factory()
