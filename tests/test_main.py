"""The sm-bot process: how it starts, refuses to start twice, stops, and what it logs."""

from __future__ import annotations

import signal
import subprocess
import time

import pytest

from conftest import SM_BOT, Server, wait_for
from test_api import OWNER, UnixHTTPConnection, auth_headers, call

FAKE_TELEGRAM_TOKEN = "123456789:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"


def has_session(server: Server, tmux_session: str) -> bool:
    return subprocess.run(["tmux", "-L", server.socket, "has-session", "-t", tmux_session],
                          capture_output=True).returncode == 0


def test_without_a_telegram_token_it_says_it_runs_headless_and_how_to_use_the_cli(server: Server) -> None:
    out = wait_for(lambda: (text := server.log.read_text()) and "headless" in text and text,
                   message="the headless banner")
    assert "SM_TELEGRAM_TOKEN" in out
    assert str(server.sock_path) in out and str(server.state_dir) in out
    assert "sm spawn" in out and "sm status" in out


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_stops_it_cleanly_and_the_agents_keep_running(server: Server, sig: int) -> None:
    server.ok("spawn", "", "--provider", "shell", "--name", "survivor")
    survivor = server.wait_state("survivor", "idle")

    started = time.monotonic()
    assert server.stop(sig) == 0
    assert time.monotonic() - started < 10

    assert has_session(server, survivor["tmux_session"]), "stopping sm-bot killed an agent"
    log = server.log.read_text()
    assert "Traceback" not in log and "KeyboardInterrupt" not in log
    assert "agents keep running" in log
    assert server.sm("status").returncode == 2  # the CLI now says the server is down

    server.start()  # and the next start picks the agent up again
    assert server.state("survivor") == "idle"


def test_stopping_with_an_events_stream_open_is_prompt_and_clean(server: Server) -> None:
    conn = UnixHTTPConnection(server.sock_path, timeout=10)
    try:
        conn.request("GET", "/events", headers=auth_headers(server, OWNER))
        response = conn.getresponse()
        assert response.status == 200
        assert response.readline() == b": connected\n" and response.readline() == b"\n"
        started = time.monotonic()
        assert server.stop() == 0
        # Not held until aiohttp's shutdown timeout (2 s) cancels the stream.
        assert time.monotonic() - started < 1.9
        assert response.read() == b""  # the stream was ended, not cut
    finally:
        conn.close()
    assert "Traceback" not in server.log.read_text()


def test_second_sm_bot_on_the_same_state_dir_refuses_to_start(server: Server) -> None:
    server.ok("spawn", "", "--provider", "shell", "--name", "first")
    second = subprocess.run([SM_BOT], env=server.env, cwd=server.tmp, capture_output=True,
                            text=True, timeout=30)
    assert second.returncode == 1
    assert "already running" in second.stderr and str(server.sock_path) in second.stderr
    assert "Traceback" not in second.stderr
    # The first one is untouched: same socket, same sessions.
    assert [s["name"] for s in server.json("status")["sessions"]] == ["first"]


def test_secrets_never_appear_in_logs(server_factory) -> None:
    server = server_factory(SM_TELEGRAM_TOKEN=FAKE_TELEGRAM_TOKEN, SM_LOG_LEVEL="DEBUG")
    owner = server.owner_token()

    server.ok("spawn", "echo hello", "--provider", "shell", "--name", "talker")
    server.wait_state("talker", "idle")
    agent = server.agent_env("talker")["SM_TOKEN"]
    server.ok("send", "talker", "echo again")
    server.sm("status", env={"SM_TOKEN": agent})
    call(server, "GET", "/sessions", token="wrong-" + owner)  # a rejected token near the real one
    call(server, "GET", "/sessions/nosuch")
    call(server, "POST", "/sessions", b"not json")
    call(server, "GET", "/openapi.json")
    wait_for(lambda: "echo again" in server.screen("talker") and "again\n" in server.screen("talker"),
             message="the message to run")
    server.ok("kill", "talker")
    assert server.stop() == 0

    logs = {path.name: path.read_text() for path in (server.log, server.state_dir / "sm-bot.log")}
    assert "headless" in logs[server.log.name]  # with a token but no Telegram part yet: headless
    assert "talker" in logs["sm-bot.log"]  # the log did record the session's life
    for name, text in logs.items():
        assert FAKE_TELEGRAM_TOKEN not in text, f"the Telegram token is in {name}"
        assert FAKE_TELEGRAM_TOKEN.split(":")[1] not in text, f"the token's secret half is in {name}"
        assert owner not in text, f"the owner token is in {name}"
        assert agent not in text, f"an agent's token is in {name}"
