"""A small HTTP/1.1 client over the API's Unix socket.

Deliberately stdlib `socket` + `json` only: `sm` runs on every agent action
and `http.client` alone costs more to import than this whole module.

It speaks just enough of RFC 9112 to read any answer aiohttp can give: the
body is framed by `Transfer-Encoding: chunked`, else by `Content-Length`, else
by the server closing the connection, and never read past its end. Every way
a response can go wrong (a timeout, an early close, a malformed or non-JSON
answer) becomes an `ApiError` with a sentence a user can act on.
"""

from __future__ import annotations

import json
import os
import re  # already imported by json: free
import socket
import time

from core import paths

MAX_HEAD = 64 * 1024  # status line and headers together; aiohttp's own limit is 8 KB a line


class ServerDown(Exception):
    """Nobody is listening on the socket."""


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def token() -> str:
    explicit = os.environ.get("SM_TOKEN")
    if explicit:
        return explicit
    if os.environ.get("SM_SESSION_ID"):
        # Inside an agent, never act as the owner because SM_TOKEN was scrubbed.
        raise ApiError(401, "SM_SESSION_ID is set but SM_TOKEN is not: an agent acts only as itself")
    path = paths.owner_token_path()
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read().strip()
    except FileNotFoundError:
        return ""
    except PermissionError:
        raise ApiError(401, f"cannot read the owner token {path}") from None


_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def segment(value: str) -> str:
    """Percent-encode one URL path segment (urllib.parse costs 3 ms to import)."""
    return "".join(chr(b) if b in _SAFE else f"%{b:02X}" for b in value.encode("utf-8"))


class Client:
    def __init__(self, socket_path: object = None, timeout: float = 30.0,
                 token: str | None = None) -> None:
        self.socket_path = str(socket_path or paths.socket_path())
        self.timeout = timeout
        self.token = token

    def request(self, method: str, path: str, body: dict | None = None,
                timeout: float | None = None) -> object:
        """One request; the decoded JSON answer, or ServerDown / ApiError.

        `timeout` bounds the whole exchange, not each read, so a server that
        trickles bytes cannot hold the caller past it.
        """
        what = f"{method} {path}"
        if any(c in path for c in " \r\n\t") or not path.startswith("/"):
            raise ValueError(f"not a request path: {path!r}")
        payload = b"" if body is None else json.dumps(body).encode()
        auth = self.token if self.token is not None else token()
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: sm\r\nConnection: close\r\n"
            f"Authorization: Bearer {auth}\r\nContent-Length: {len(payload)}\r\n"
        )
        if body is not None:
            head += "Content-Type: application/json\r\n"
        deadline = time.monotonic() + (timeout or self.timeout)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
            try:
                sock.connect(self.socket_path)
            except (FileNotFoundError, ConnectionRefusedError) as exc:
                raise ServerDown(self.socket_path) from exc
            try:
                sock.sendall(head.encode("utf-8") + b"\r\n" + payload)
            except (BrokenPipeError, ConnectionResetError):
                pass  # it may have answered before closing (say, 413); read what it sent
            status, reason, headers, data = _Response(sock, deadline).read(method)
        except TimeoutError:
            raise ApiError(504, f"the server did not answer {what} in time") from None
        except _Closed as exc:
            raise ApiError(502, f"the server closed the connection {exc} ({what}); see the sm-bot log") from None
        except _Malformed as exc:
            raise ApiError(502, f"the server sent a malformed answer to {what}: {exc}") from None
        finally:
            sock.close()
        return _decode(status, reason, headers, data, what)


class _Closed(Exception):
    """The peer closed (or reset) the connection before the response was complete."""


class _Malformed(Exception):
    """Bytes that are not an HTTP/1.x response."""


class _Response:
    """Reads one response from a socket, each read bounded by the overall deadline."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock = sock
        self.deadline = deadline
        self.buf = bytearray()
        self.received = 0

    def _fill(self) -> bool:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            return False
        self.buf += chunk
        self.received += len(chunk)
        return bool(chunk)

    def _line(self, limit: int, where: str) -> bytes:
        scanned = 0
        while (end := self.buf.find(b"\n", scanned)) < 0:
            scanned = len(self.buf)
            if scanned > limit:
                raise _Malformed(f"{where}: more than {limit} bytes without a line end")
            if not self._fill():
                raise _Closed("without answering" if not self.received else f"in the middle of {where}")
        line = bytes(self.buf[:end]).rstrip(b"\r")
        del self.buf[: end + 1]
        return line

    def _exact(self, n: int, where: str) -> bytes:
        while len(self.buf) < n:
            if not self._fill():
                raise _Closed(f"after {len(self.buf)} of the {n} bytes of {where}")
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    def _to_eof(self) -> bytes:
        while self._fill():
            pass
        return bytes(self.buf)

    def _head(self) -> tuple[int, str, dict[str, str]]:
        line = self._line(MAX_HEAD, "the status line")
        version, _, rest = line.partition(b" ")
        code, _, reason = rest.partition(b" ")
        if not version.startswith(b"HTTP/1.") or len(code) != 3 or not code.isdigit():
            raise _Malformed(f"not an HTTP status line: {line[:80]!r}")
        headers: dict[str, str] = {}
        budget = MAX_HEAD - len(line)
        while header := self._line(budget, "the headers"):
            budget -= len(header) + 2
            if budget < 0:
                raise _Malformed(f"the headers are longer than {MAX_HEAD} bytes")
            name, colon, value = header.decode("latin-1").partition(":")
            if not colon or not name or name != name.strip():
                raise _Malformed(f"not a header: {header[:80]!r}")
            name = name.lower()
            value = value.strip()
            if name in headers:  # a repeated header is a comma-separated list
                value = headers[name] + ", " + value
            headers[name] = value
        return int(code), reason.decode("latin-1").strip(), headers

    def read(self, method: str) -> tuple[int, str, dict[str, str], bytes]:
        status, reason, headers = self._head()
        while 100 <= status < 200:  # interim answers (100 Continue): the real one follows
            status, reason, headers = self._head()
        if method == "HEAD" or status in (204, 304):
            return status, reason, headers, b""
        codings = headers.get("transfer-encoding", "")
        if codings:
            # Chunked framing wins over any Content-Length (RFC 9112 6.3).
            if codings.rsplit(",", 1)[-1].strip().lower() == "chunked":
                return status, reason, headers, self._chunked()
            return status, reason, headers, self._to_eof()
        length = headers.get("content-length")
        if length is not None:
            values = {v.strip() for v in length.split(",")}
            if len(values) != 1 or not ((n := values.pop()).isascii() and n.isdigit()):
                raise _Malformed(f"bad Content-Length {length!r}")
            return status, reason, headers, self._exact(int(n), "its answer")
        return status, reason, headers, self._to_eof()

    def _chunked(self) -> bytes:
        body = bytearray()
        where = "a chunk"
        while True:
            line = self._line(4096, "a chunk size line")
            size = line.split(b";", 1)[0].strip()  # drop chunk extensions
            if not size or size.strip(b"0123456789abcdefABCDEF"):  # int() would take "+a", "1_0"
                raise _Malformed(f"bad chunk size line {line[:80]!r}")
            n = int(size, 16)
            if n == 0:
                while self._line(MAX_HEAD, "the trailers"):  # trailers, up to a blank line
                    pass
                return bytes(body)
            body += self._exact(n, where)
            if self._exact(2, where) != b"\r\n":
                raise _Malformed("a chunk is longer than its size says")


def _gist(data: bytes, said: str) -> str:
    """The readable text of an error page, on one line, less the status it repeats."""
    # Compiled here, not at import: only a failing call pays for it.
    tags = re.compile(r"<head\b.*?</head>|<[^>]*>", re.S | re.I)
    text = " ".join(tags.sub(" ", data.decode("utf-8", "replace")).split())
    words = re.compile(r"\w+")
    if said and words.findall(text.lower())[:len(words.findall(said))] == words.findall(said.lower()):
        # "500 Internal Server Error ..." or "401: Unauthorized": drop the repeat.
        for word in words.findall(said):
            text = text[text.lower().index(word.lower()) + len(word):]
        text = text.lstrip(" :.-")
    return text if len(text) <= 200 else text[:199] + "…"


def _decode(status: int, reason: str, headers: dict[str, str], data: bytes, what: str) -> object:
    try:
        decoded = json.loads(data) if data else None
        is_json = True
    except ValueError:  # UnicodeDecodeError included
        decoded, is_json = None, False
    if not 200 <= status < 300:
        message = decoded.get("error") if isinstance(decoded, dict) else None
        if not isinstance(message, str) or not message:
            said = f"{status} {reason}".strip()
            gist = _gist(data, said) if data else ""
            message = f"the server answered {said} to {what}" + (f": {gist}" if gist else "")
            if status >= 500:
                message += "; see the sm-bot log"
        raise ApiError(status, message)
    if not is_json:
        kind = headers.get("content-type", "").split(";")[0].strip() or "no Content-Type"
        # The status is the server's own: the request was handled, so a hook must not retry it.
        raise ApiError(status, f"the server answered {what} with something that is not JSON ({kind}): "
                               f"{_gist(data, '')!r}")
    return decoded
