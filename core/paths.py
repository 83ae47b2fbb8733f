"""Where sm keeps its files, resolved without importing anything heavy.

The `sm` CLI and the hook entry point run on every agent action, so they use
this module (plain `os.path` strings, not even pathlib) instead of the full
settings object, which costs ~40 ms to import. They resolve the state dir and
the socket in the server's order:

1. the environment (`SM_SOCKET`, `SM_STATE_DIR`; agents spawned by sm get both);
2. `SM_STATE_DIR` in a `.env` file in the working directory;
3. the YAML config, read through the server: reading it here would cost
   PyYAML's import on every call, so the server records where it listens
   (`server_record_path()`, written when its own environment named neither)
   and the CLI reads that small JSON file;
4. the default, `~/.local/state/sm`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

DEFAULT_STATE_DIR = "~/.local/state/sm"
# The file name settings read from the working directory (core/config.py).
DOTENV = ".env"


def _dotenv(key: str) -> str | None:
    """`key`'s value in ./.env, read as python-dotenv (pydantic-settings) reads it."""
    try:
        with open(DOTENV, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except (FileNotFoundError, NotADirectoryError, PermissionError, UnicodeDecodeError):
        return None
    found = None
    for line in lines:
        line = line.strip()
        if line.startswith("export "):
            line = line[7:].lstrip()
        name, eq, value = line.partition("=")
        if not eq or name.strip() != key:
            continue
        value = value.strip()
        if value[:1] in ("'", '"') and value[-1:] == value[:1] and len(value) >= 2:
            value = value[1:-1]
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        found = value
    return found


def configured(key: str) -> str | None:
    """A setting from the environment, else from ./.env; empty means unset."""
    return os.environ.get(key) or _dotenv(key) or None


def server_record_path() -> str:
    """Where the server records its socket: a fixed place, whatever the config says."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
    return os.path.join(base, "sm", "server.json")


def server_record() -> dict | None:
    try:
        with open(server_record_path(), encoding="utf-8") as fh:
            record = json.load(fh)
    except (OSError, ValueError):
        return None
    if isinstance(record, dict) and isinstance(record.get("socket"), str) \
            and isinstance(record.get("state_dir"), str):
        return record
    return None


def record_server(state_dir: str, socket: str, version: str) -> str:
    """Written by the server at start: where it listens, for CLIs that lack its config."""
    path = server_record_path()
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w", encoding="utf-8") as fh:
        json.dump({"state_dir": os.path.abspath(state_dir), "socket": os.path.abspath(socket),
                   "pid": os.getpid(), "version": version}, fh)
    os.replace(tmp, path)
    return path


def state_dir() -> str:
    explicit = configured("SM_STATE_DIR")
    if explicit:
        return os.path.expanduser(explicit)
    record = None if os.environ.get("SM_SOCKET") else server_record()
    return record["state_dir"] if record else os.path.expanduser(DEFAULT_STATE_DIR)


def socket_path(base: str | None = None) -> str:
    # SM_SOCKET is read from the environment only, as the server reads it.
    explicit = os.environ.get("SM_SOCKET")
    if explicit:
        return os.path.expanduser(explicit)
    if base:
        return os.path.join(base, "sm.sock")
    configured_dir = configured("SM_STATE_DIR")
    if configured_dir:
        return os.path.join(os.path.expanduser(configured_dir), "sm.sock")
    record = server_record()
    if record:
        return record["socket"]
    return os.path.join(os.path.expanduser(DEFAULT_STATE_DIR), "sm.sock")


def owner_token_path(base: str | None = None) -> str:
    return os.path.join(base or state_dir(), "owner.token")


def spool_dir(base: str | None = None) -> str:
    return os.path.join(base or state_dir(), "spool")


def secure_tree(root: str) -> None:
    """Make `root` and every directory below it 0700 and every file 0600.

    Raises OSError (with the path) when that cannot be done: sm refuses to run
    on a state dir another local user could read.
    """
    os.makedirs(root, mode=0o700, exist_ok=True)
    os.chmod(root, 0o700)
    for here, dirs, files in os.walk(root):
        for name in dirs:
            os.chmod(os.path.join(here, name), 0o700)
        for name in files:
            path = os.path.join(here, name)
            if not os.path.islink(path):
                os.chmod(path, 0o600)


def allowed_dir(path: str, roots: list[Path]) -> Path | None:
    """`path` as an existing directory under one of `roots` (resolved: no way out by `..` or a
    link), or None. Where a person may start an agent from the phone (/new)."""
    candidate = Path(os.path.expanduser(path)).resolve()
    if not candidate.is_dir():
        return None
    return candidate if any(candidate == r or r in candidate.parents for r in roots) else None
