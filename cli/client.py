"""A small HTTP/1.1 client over the API's Unix socket.

Deliberately stdlib `socket` + `json` only: `sm` runs on every agent action
and `http.client` alone costs more to import than this whole module.
"""

from __future__ import annotations

import json
import os
import socket

from core import paths


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
        payload = b"" if body is None else json.dumps(body).encode()
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: sm\r\nConnection: close\r\n"
            f"Authorization: Bearer {self.token if self.token is not None else token()}\r\nContent-Length: {len(payload)}\r\n"
        )
        if body is not None:
            head += "Content-Type: application/json\r\n"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout or self.timeout)
        try:
            try:
                sock.connect(self.socket_path)
            except (FileNotFoundError, ConnectionRefusedError) as exc:
                raise ServerDown(str(self.socket_path)) from exc
            sock.sendall(head.encode() + b"\r\n" + payload)
            chunks = []
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        except socket.timeout:
            raise ApiError(504, f"the server did not answer {method} {path} in time") from None
        finally:
            sock.close()
        status, data = _parse(b"".join(chunks))
        try:
            decoded = json.loads(data) if data else None
        except ValueError:
            decoded = data.decode("utf-8", "replace")
        if status >= 400:
            message = decoded.get("error") if isinstance(decoded, dict) else str(decoded)
            raise ApiError(status, message or f"HTTP {status}")
        return decoded


def _parse(raw: bytes) -> tuple[int, bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    if not lines or not lines[0].startswith(b"HTTP/"):
        raise ApiError(502, "the server sent a malformed response")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        key, _, value = line.partition(b":")
        headers[key.strip().lower()] = value.strip()
    if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        body = _dechunk(body)
    return status, body


def _dechunk(data: bytes) -> bytes:
    out = bytearray()
    while data:
        size_line, _, rest = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out += rest[:size]
        data = rest[size + 2 :]
    return bytes(out)
