"""The sm-bot process: how it starts, refuses to start twice, stops, and what it logs."""

from __future__ import annotations

import http.server
import json
import signal
import socket
import subprocess
import threading
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


class RefusingBotApi:
    """A loopback Bot API that records each request and answers 401, as Telegram does to a bad token."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        api = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _refuse(self) -> None:
                api.paths.append(self.path)
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                body = json.dumps({"ok": False, "error_code": 401, "description": "Unauthorized"}).encode()
                self.send_response(401)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _refuse

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_secrets_never_appear_in_logs(server_factory) -> None:
    bot_api = RefusingBotApi()
    try:
        server = server_factory(SM_TELEGRAM_TOKEN=FAKE_TELEGRAM_TOKEN, SM_TELEGRAM_API_URL=bot_api.url,
                                SM_TELEGRAM_CHAT_ID="-1001", SM_TELEGRAM_ALLOWED_USER_IDS="42",
                                SM_LOG_LEVEL="DEBUG")
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
        wait_for(lambda: "again\n" in server.screen("talker"), message="the message to run")
        # The bot really used the token against the (refusing) Bot API.
        wait_for(lambda: any(FAKE_TELEGRAM_TOKEN in p for p in bot_api.paths),
                 message="sm-bot to call the Bot API")
        server.ok("kill", "talker")
        assert server.stop() == 0
    finally:
        bot_api.close()

    logs = {path.name: path.read_text() for path in (server.log, server.state_dir / "sm-bot.log")}
    assert "talker" in logs["sm-bot.log"]  # the log did record the session's life
    for name, text in logs.items():
        assert FAKE_TELEGRAM_TOKEN not in text, f"the Telegram token is in {name}"
        assert FAKE_TELEGRAM_TOKEN.split(":")[1] not in text, f"the token's secret half is in {name}"
        assert owner not in text, f"the owner token is in {name}"
        assert agent not in text, f"an agent's token is in {name}"


def run_sm_bot(tmp_path, **env: str) -> subprocess.CompletedProcess[str]:
    """sm-bot started the way conftest starts it, expected to exit by itself."""
    server = Server(tmp_path, env)
    try:
        return subprocess.run([SM_BOT], env=server.env, cwd=tmp_path, capture_output=True,
                              text=True, timeout=90)
    finally:
        server.close()


def assert_one_line_refusal(result: subprocess.CompletedProcess[str], *words: str) -> str:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("sm-bot: "), result.stderr
    for word in words:
        assert word in last, (word, last)
    return last


def test_bad_setting_is_refused_in_one_line_naming_the_variable(tmp_path) -> None:
    result = run_sm_bot(tmp_path, SM_SERVER_PORT="eighty")
    assert_one_line_refusal(result, "bad configuration", "SM_SERVER_PORT", "'eighty'")
    assert result.stderr.count("\n") == 1


def test_unknown_log_level_is_refused_in_one_line(tmp_path) -> None:
    result = run_sm_bot(tmp_path, SM_LOG_LEVEL="loud")
    assert_one_line_refusal(result, "SM_LOG_LEVEL", "DEBUG, INFO")


def test_broken_config_yaml_is_refused_in_one_line_naming_the_file(tmp_path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("server:\n  port: [8420\n")
    result = run_sm_bot(tmp_path, SM_CONFIG=str(config))
    assert_one_line_refusal(result, "bad configuration", str(config), "not valid YAML")


def test_state_dir_that_cannot_be_made_is_refused_in_one_line(tmp_path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = run_sm_bot(tmp_path, SM_STATE_DIR=str(blocker / "state"))
    assert_one_line_refusal(result, str(blocker))


def test_tcp_port_in_use_is_refused_in_one_line_and_the_agents_are_left_alone(tmp_path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_sm_bot(tmp_path, SM_SERVER_TCP="true", SM_SERVER_PORT=str(port))
    assert_one_line_refusal(result, "address already in use", str(port))


def test_the_stale_socket_of_a_killed_sm_bot_is_removed_at_the_next_start(server: Server) -> None:
    server.ok("spawn", "", "--provider", "shell", "--name", "survivor")
    server.wait_state("survivor", "idle")
    assert server.stop(signal.SIGKILL) == -signal.SIGKILL  # no cleanup at all
    assert server.sock_path.exists()  # what a SIGKILL leaves behind
    down = server.sm("status")
    assert down.returncode == 2 and "Traceback" not in down.stderr  # "not running", not a hang or a crash
    server.start()  # would refuse "already running", or fail to bind, if the socket were taken as live
    assert server.state("survivor") == "idle"
    server.ok("send", "survivor", "echo after the crash")
    wait_for(lambda: "after the crash\n" in server.screen("survivor"), message="the message to run")
