"""The `sm` CLI's HTTP client against servers that answer in awkward but legal ways, and broken ones.

Most tests serve one scripted answer from a real Unix socket (a thread with a
plain `socket`), so the bytes, and how they are split across the client's
reads, are exact. The last ones use real aiohttp: a tiny app that streams a
chunked body and raises an unhandled error, and sm-bot itself.

Where it matters, the check is what a user sees: `sm status` run as a real
process, its one line on stderr and its exit code.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import termios
import threading
import time
from typing import Callable, Iterator

import pytest

from cli.client import ApiError, Client, ServerDown
from conftest import SM, Server, wait_for

Answer = Callable[[socket.socket], None]


# -- a scripted server -------------------------------------------------------------------


def read_request(conn: socket.socket) -> tuple[bytes, dict[str, str], bytes]:
    """The request line, headers and body (exactly Content-Length bytes) the client sent."""
    raw = b""
    while b"\r\n\r\n" not in raw:
        chunk = conn.recv(65536)
        assert chunk, f"the client closed before finishing its request: {raw!r}"
        raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    line, *lines = head.split(b"\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (x.decode().partition(":") for x in lines)}
    length = int(headers["content-length"])
    while len(body) < length:
        chunk = conn.recv(65536)
        assert chunk, "the client closed before sending its whole body"
        body += chunk
    assert len(body) == length, f"the client sent more than its Content-Length: {body!r}"
    return line, headers, body


def unread(conn: socket.socket) -> int:
    """Bytes sent on `conn` that the peer has not read yet (SIOCOUTQ on a Unix socket)."""
    return struct.unpack("i", fcntl.ioctl(conn.fileno(), termios.TIOCOUTQ, b"\0" * 4))[0]


def send_in_pieces(conn: socket.socket, data: bytes, size: int) -> None:
    """Send `data` `size` bytes at a time, each piece only once the client has read
    the one before, so every piece reaches the client in a recv() of its own."""
    for i in range(0, len(data), size):
        conn.sendall(data[i:i + size])
        wait_for(lambda: unread(conn) == 0, 5, 0.0002, "the client to read a piece")


def hold_open(conn: socket.socket) -> None:
    """Keep the connection open until the client closes it, as a keep-alive server may.

    A client that reads to EOF instead of honouring the framing hangs here
    until its own timeout."""
    conn.settimeout(30)
    try:
        while conn.recv(65536):
            pass
    except ConnectionResetError:
        pass


class Scripted:
    """A Unix socket server: each connection's request is read, then `answer(conn)` runs."""

    def __init__(self, path: str, answer: Answer) -> None:
        self.path = path
        self.answer = answer
        self.requests: list[tuple[bytes, dict[str, str], bytes]] = []
        self.errors: list[BaseException] = []
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(8)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return  # closed: the test is over
            with conn:
                try:
                    conn.settimeout(30)
                    self.requests.append(read_request(conn))
                    self.answer(conn)
                except BaseException as exc:  # reported by the fixture
                    self.errors.append(exc)

    def close(self) -> None:
        self.listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        self.listener.close()
        self.thread.join(10)


@pytest.fixture
def tmpdir_short() -> Iterator[str]:
    path = tempfile.mkdtemp(prefix="smc-")  # short: a socket path must fit in 108 bytes
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def serve(tmpdir_short: str) -> Iterator[Callable[[Answer], Scripted]]:
    made: list[Scripted] = []

    def start(answer: Answer) -> Scripted:
        server = Scripted(os.path.join(tmpdir_short, f"s{len(made)}.sock"), answer)
        made.append(server)
        return server

    yield start
    for server in made:
        server.close()
    errors = [e for server in made for e in server.errors]
    assert not errors, f"the scripted server failed: {errors!r}"


def client(server: Scripted, timeout: float = 5) -> Client:
    return Client(server.path, timeout=timeout, token="tok")


def sm_status(server: Scripted, state_dir: str) -> subprocess.CompletedProcess[str]:
    """`sm status` as a user runs it, against the scripted server."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SM_")}
    env.update(SM_SOCKET=server.path, SM_STATE_DIR=state_dir, SM_TOKEN="tok")
    return subprocess.run([SM, "status"], env=env, capture_output=True, text=True, timeout=30)


def response(status: str, body: bytes, *headers: str) -> bytes:
    head = "".join(f"{h}\r\n" for h in headers)
    return f"HTTP/1.1 {status}\r\n{head}\r\n".encode() + body


STATUS = {"you": {"name": "owner"}, "sessions": [], "locks": [], "undelivered": []}
STATUS_JSON = json.dumps(STATUS).encode()


def chunked(body: bytes, sizes: list[int]) -> bytes:
    """`body` as chunks of `sizes` (the rest in the last), with extensions and
    mixed-case hex, a last chunk with an extension, and a trailer."""
    out, i = b"", 0
    for n, size in enumerate([*sizes, len(body) - sum(sizes)]):
        ext = [b"", b";name=value", b' ; quoted="a;b"'][n % 3]
        out += f"{size:X}".encode() + ext + b"\r\n" + body[i:i + size] + b"\r\n"
        i += size
    return out + b"0;done\r\nX-Checksum: none\r\n\r\n"


# -- the request -------------------------------------------------------------------------


def test_a_request_carries_its_token_and_a_content_length_in_bytes(serve) -> None:
    server = serve(lambda conn: conn.sendall(response(
        "201 Created", b'{"id": "s1"}', "Content-Type: application/json", "Content-Length: 12")))
    text = "héllo ✓ " * 1000  # non-ASCII: the length must count bytes, not characters

    assert client(server).request("POST", "/sessions/eng/input", {"text": text}) == {"id": "s1"}
    assert client(server).request("GET", "/status?scope=children") == {"id": "s1"}

    (line, headers, body), (get_line, get_headers, get_body) = server.requests
    assert line == b"POST /sessions/eng/input HTTP/1.1"
    assert headers["authorization"] == "Bearer tok"
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == {"text": text}  # read_request took exactly Content-Length bytes
    assert get_line == b"GET /status?scope=children HTTP/1.1"
    assert get_headers["content-length"] == "0" and get_body == b""


# -- framing -----------------------------------------------------------------------------


def test_status_line_and_headers_split_byte_by_byte(serve) -> None:
    raw = response("200 OK", STATUS_JSON, "Content-Type: application/json; charset=utf-8",
                   "X-Padding: " + "p" * 300, f"Content-Length: {len(STATUS_JSON)}")

    def answer(conn: socket.socket) -> None:
        send_in_pieces(conn, raw, 1)
        hold_open(conn)

    assert client(server := serve(answer)).request("GET", "/status") == STATUS
    assert len(server.requests) == 1


def test_content_length_is_honoured_when_more_bytes_follow_on_the_connection(serve) -> None:
    def answer(conn: socket.socket) -> None:
        # The body, then bytes that are not part of it, in one write; the
        # connection stays open, so only Content-Length says where the body ends.
        conn.sendall(response("200 OK", b'{"a": 1}', "Content-Length: 8") + b'{"b": 2} and more garbage')
        hold_open(conn)

    assert client(serve(answer)).request("GET", "/status") == {"a": 1}


def test_content_length_body_arriving_in_many_reads_is_read_whole(serve) -> None:
    body = json.dumps({"output": "line\n" * 40_000}).encode()  # ~240 KB

    def answer(conn: socket.socket) -> None:
        conn.sendall(response("200 OK", b"", f"Content-Length: {len(body)}"))
        send_in_pieces(conn, body[:1000], 7)
        conn.sendall(body[1000:])
        hold_open(conn)

    assert client(serve(answer)).request("GET", "/sessions/eng/output") == json.loads(body)


@pytest.mark.parametrize("piece", [1, 2, 5])
def test_chunked_body_with_extensions_and_trailers_split_anywhere(serve, piece: int) -> None:
    raw = response("200 OK", chunked(STATUS_JSON, [7, 1, 26]),
                   "Content-Type: application/json", "Transfer-Encoding: chunked")

    def answer(conn: socket.socket) -> None:
        send_in_pieces(conn, raw, piece)  # cuts inside sizes, extensions and CRLFs
        hold_open(conn)

    assert client(serve(answer)).request("GET", "/status") == STATUS


def test_body_with_neither_length_nor_chunks_is_read_to_the_close(serve) -> None:
    def answer(conn: socket.socket) -> None:
        send_in_pieces(conn, response("200 OK", STATUS_JSON, "Content-Type: application/json"), 9)
        # returning closes the connection: that is the end of the body

    assert client(serve(answer)).request("GET", "/status") == STATUS


def test_an_interim_100_continue_is_skipped(serve) -> None:
    server = serve(lambda conn: conn.sendall(
        b"HTTP/1.1 100 Continue\r\n\r\n" + response("200 OK", b"[]", "Content-Length: 2")))
    assert client(server).request("GET", "/sessions") == []


# -- failures, as the user sees them -------------------------------------------------------


CLOSES = {
    "without answering": (lambda conn: None,
                          "without answering"),
    "in the headers": (lambda conn: conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Le"),
                       "in the middle of the headers"),
    "short of Content-Length": (lambda conn: conn.sendall(response("200 OK", b'{"sessions": ', "Content-Length: 100")),
                                "after 13 of the 100 bytes of its answer"),
    "inside a chunk": (lambda conn: conn.sendall(response("200 OK", b"10\r\n{\"a\"", "Transfer-Encoding: chunked")),
                       "after 4 of the 16 bytes of a chunk"),
    "before the last chunk": (lambda conn: conn.sendall(response("200 OK", b"2\r\n{}\r\n", "Transfer-Encoding: chunked")),
                              "in the middle of a chunk size line"),
}


@pytest.mark.parametrize("case", list(CLOSES))
def test_a_server_closing_early_is_a_clear_error_not_a_hang(serve, case: str) -> None:
    answer, how = CLOSES[case]
    t0 = time.monotonic()
    with pytest.raises(ApiError) as caught:
        client(serve(answer), timeout=20).request("GET", "/status")
    assert time.monotonic() - t0 < 10, "it waited for the timeout instead of noticing the close"
    assert caught.value.status == 502
    assert str(caught.value) == f"the server closed the connection {how} (GET /status); see the sm-bot log"


def test_sm_status_reports_an_early_close_in_one_line(serve, tmpdir_short: str) -> None:
    result = sm_status(serve(CLOSES["short of Content-Length"][0]), tmpdir_short)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == ("sm: the server closed the connection after 13 of the 100 bytes of its answer "
                             "(GET /status); see the sm-bot log\n")


AIOHTTP_500_PAGE = (b"<html><head><title>500 Internal Server Error</title></head><body>"
                    b"<h1>500 Internal Server Error</h1>Server got itself in trouble</body></html>")


def test_sm_status_turns_an_html_500_page_into_one_line(serve, tmpdir_short: str) -> None:
    server = serve(lambda conn: conn.sendall(response(
        "500 Internal Server Error", AIOHTTP_500_PAGE, "Content-Type: text/html; charset=utf-8",
        f"Content-Length: {len(AIOHTTP_500_PAGE)}")))
    result = sm_status(server, tmpdir_short)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == ("sm: the server answered 500 Internal Server Error to GET /status: "
                             "Server got itself in trouble; see the sm-bot log\n")


def test_sm_status_shows_the_servers_own_401_message(serve, tmpdir_short: str) -> None:
    body = b'{"error": "invalid token", "status": 401}'
    server = serve(lambda conn: conn.sendall(response(
        "401 Unauthorized", body, "Content-Type: application/json", f"Content-Length: {len(body)}")))
    result = sm_status(server, tmpdir_short)
    assert (result.returncode, result.stdout, result.stderr) == (1, "", "sm: invalid token\n")
    with pytest.raises(ApiError) as caught:
        client(server).request("GET", "/status")
    assert caught.value.status == 401  # hooks decide on it: below 500, no retry


def test_a_401_without_a_json_body_says_what_happened(serve, tmpdir_short: str) -> None:
    server = serve(lambda conn: conn.sendall(response(
        "401 Unauthorized", b"401: Unauthorized", "Content-Type: text/plain", "Content-Length: 17")))
    result = sm_status(server, tmpdir_short)
    assert (result.returncode, result.stderr) == (1, "sm: the server answered 401 Unauthorized to GET /status\n")


def test_a_success_that_is_not_json_is_an_error_not_a_crash(serve, tmpdir_short: str) -> None:
    page = b"<html><body><p>It works!</p></body></html>"
    server = serve(lambda conn: conn.sendall(response(
        "200 OK", page, "Content-Type: text/html", f"Content-Length: {len(page)}")))
    result = sm_status(server, tmpdir_short)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == "sm: the server answered GET /status with something that is not JSON (text/html): 'It works!'\n"


MALFORMED = {
    "not HTTP": (b"SSH-2.0-OpenSSH_9.6\r\n", "not an HTTP status line: b'SSH-2.0-OpenSSH_9.6'"),
    "a signed length": (response("200 OK", b"{}", "Content-Length: +2"), "bad Content-Length '+2'"),
    "two lengths": (response("200 OK", b"{}", "Content-Length: 2", "Content-Length: 3"),
                    "bad Content-Length '2, 3'"),
    "a chunk size int() would take": (response("200 OK", b"1_0\r\n", "Transfer-Encoding: chunked"),
                                      "bad chunk size line b'1_0'"),
    "a chunk longer than its size": (response("200 OK", b"1\r\n{}\r\n0\r\n\r\n", "Transfer-Encoding: chunked"),
                                     "a chunk is longer than its size says"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_malformed_answer_is_named_as_such(serve, case: str) -> None:
    raw, why = MALFORMED[case]
    with pytest.raises(ApiError) as caught:
        client(serve(lambda conn: conn.sendall(raw))).request("GET", "/status")
    assert (caught.value.status, str(caught.value)) == (502, f"the server sent a malformed answer to GET /status: {why}")


def test_a_silent_server_times_out(serve) -> None:
    with pytest.raises(ApiError) as caught:
        client(serve(hold_open), timeout=0.3).request("GET", "/status")
    assert (caught.value.status, str(caught.value)) == (504, "the server did not answer GET /status in time")


def test_the_timeout_bounds_the_whole_answer_not_each_read(serve) -> None:
    """A server that trickles a byte every 50 ms never lets one read time out."""
    stop = threading.Event()

    def trickle(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
        end = time.monotonic() + 10  # then it ends, so a client without a deadline fails, not hangs
        try:
            while not stop.wait(0.05) and time.monotonic() < end:
                conn.sendall(b"z")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up, as it should

    server = serve(trickle)
    t0 = time.monotonic()
    try:
        with pytest.raises(ApiError) as caught:
            client(server, timeout=0.5).request("GET", "/status")
    finally:
        stop.set()
    assert caught.value.status == 504
    assert time.monotonic() - t0 < 3


def test_no_socket_is_server_down(tmpdir_short: str) -> None:
    with pytest.raises(ServerDown):
        Client(os.path.join(tmpdir_short, "nobody.sock"), token="tok").request("GET", "/status")


# -- real aiohttp ------------------------------------------------------------------------


@pytest.fixture
def aiohttp_app(tmpdir_short: str) -> Iterator[str]:
    """A tiny aiohttp app on a Unix socket, run in its own thread's event loop."""
    from aiohttp import web

    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)  # no length given: aiohttp sends it chunked
        body = json.dumps({"lines": [f"line {n}" for n in range(20_000)]}).encode()
        for i in range(0, len(body), 70_000):
            await response.write(body[i:i + 70_000])
        await response.write_eof()
        return response

    async def boom(request: web.Request) -> web.Response:
        raise RuntimeError("a bug in a handler")

    app = web.Application()
    app.router.add_get("/stream", stream)
    app.router.add_get("/boom", boom)
    path = os.path.join(tmpdir_short, "aiohttp.sock")
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app, access_log=None)
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.UnixSite(runner, path).start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield path
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.run_until_complete(runner.cleanup())
    loop.close()


def test_aiohttp_chunked_stream_is_decoded(aiohttp_app: str) -> None:
    got = Client(aiohttp_app, timeout=10, token="tok").request("GET", "/stream")
    assert got == {"lines": [f"line {n}" for n in range(20_000)]}


def test_aiohttp_unhandled_error_page_is_one_clear_line(aiohttp_app: str) -> None:
    with pytest.raises(ApiError) as caught:
        Client(aiohttp_app, timeout=10, token="tok").request("GET", "/boom")
    assert caught.value.status == 500
    assert str(caught.value) == ("the server answered 500 Internal Server Error to GET /boom: "
                                 "Server got itself in trouble; see the sm-bot log")


def test_sm_bot_answers_status_and_rejects_a_wrong_token(server: Server) -> None:
    assert server.client().request("GET", "/status")["you"] == {"name": "owner"}
    result = server.sm("status", env={"SM_TOKEN": "not-a-token"})
    assert (result.returncode, result.stdout, result.stderr) == (1, "", "sm: invalid token\n")
