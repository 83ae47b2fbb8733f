"""Hook events that could not reach the server, kept on disk until it can take them.

The hook entry point writes one file per event (`<time_ns>-<pid>.json`, written
to a temporary name and renamed, so a reader never sees half a file). The
server replays them in name order when it starts, and again whenever a hook
tells it the spool is not empty. Each file carries the agent's token, checked
on replay like any request, so a spooled event acts only as its own session.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

log = logging.getLogger(__name__)

Handler = Callable[[str, str, dict[str, Any]], Awaitable[None]]


def write(spool: Path, token: str, event: str, payload: dict[str, Any]) -> Path:
    spool.mkdir(mode=0o700, parents=True, exist_ok=True)
    name = f"{time.time_ns():020d}-{os.getpid()}.json"
    tmp = spool / f".{name}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump({"token": token, "event": event, "payload": payload}, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.chmod(tmp, 0o600)
    final = spool / name
    os.rename(tmp, final)
    return final


def pending(spool: Path) -> list[Path]:
    try:
        return sorted(p for p in spool.iterdir() if p.suffix == ".json" and not p.name.startswith("."))
    except FileNotFoundError:
        return []


async def drain(spool: Path, handle: Handler) -> int:
    """Replay spooled events in order through `handle(token, event, payload)`."""
    count = 0
    for path in pending(spool):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            await handle(str(record["token"]), str(record["event"]), dict(record["payload"]))
            count += 1
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("dropping unreadable spooled hook event %s: %s", path.name, exc)
        except Exception:
            log.exception("replaying %s failed; keeping it for the next drain", path.name)
            break
        path.unlink(missing_ok=True)
    if count:
        log.info("replayed %d spooled hook event(s)", count)
    return count
