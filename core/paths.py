"""Where sm keeps its files, resolved without importing anything heavy.

The `sm` CLI and the hook entry point run on every agent action, so they use
this module instead of the full settings object (pydantic costs ~40 ms to
import). Both honour the same two variables as the server: `SM_STATE_DIR` and
`SM_SOCKET`. Agents spawned by sm get both in their environment.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_STATE_DIR = "~/.local/state/sm"


def state_dir() -> Path:
    return Path(os.environ.get("SM_STATE_DIR") or DEFAULT_STATE_DIR).expanduser()


def socket_path(base: Path | None = None) -> Path:
    explicit = os.environ.get("SM_SOCKET")
    if explicit:
        return Path(explicit).expanduser()
    return (base or state_dir()) / "sm.sock"


def owner_token_path(base: Path | None = None) -> Path:
    return (base or state_dir()) / "owner.token"


def spool_dir(base: Path | None = None) -> Path:
    return (base or state_dir()) / "spool"
