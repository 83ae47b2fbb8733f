"""Where sm keeps its files, resolved without importing anything heavy.

The `sm` CLI and the hook entry point run on every agent action, so they use
this module (plain `os.path` strings, not even pathlib) instead of the full
settings object, which costs ~40 ms to import. Both honour the same variables
as the server: `SM_STATE_DIR` and `SM_SOCKET`. Agents spawned by sm get both.
"""

from __future__ import annotations

import os

DEFAULT_STATE_DIR = "~/.local/state/sm"


def state_dir() -> str:
    return os.path.expanduser(os.environ.get("SM_STATE_DIR") or DEFAULT_STATE_DIR)


def socket_path(base: str | None = None) -> str:
    explicit = os.environ.get("SM_SOCKET")
    if explicit:
        return os.path.expanduser(explicit)
    return os.path.join(base or state_dir(), "sm.sock")


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
