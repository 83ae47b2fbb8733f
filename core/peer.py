"""Who is on the other end of the API's Unix socket, from the kernel.

A token proves what a process holds; the kernel says who the process is.
`SO_PEERCRED` gives the connecting process's pid and uid, and its ancestry in
/proc says whether it runs inside a managed pane: then it *is* that agent,
whatever token it sends (or none), so an agent cannot become the owner by
dropping its variables.
"""

from __future__ import annotations

import socket
import struct
from pathlib import Path
from typing import Iterator

_UCRED = struct.Struct("3i")  # pid, uid, gid
PROC = Path("/proc")


def peer_credentials(sock: socket.socket | None) -> tuple[int, int] | None:
    """(pid, uid) of a Unix socket's peer; None for TCP or where the kernel can't say."""
    if sock is None or sock.family != socket.AF_UNIX or not hasattr(socket, "SO_PEERCRED"):
        return None
    try:
        pid, uid, _gid = _UCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size))
    except OSError:
        return None
    return (pid, uid) if pid > 0 else None


def parent_of(pid: int, proc: Path = PROC) -> int:
    """The parent pid, or 0 when the process is gone."""
    try:
        stat = (proc / str(pid) / "stat").read_bytes()
    except OSError:
        return 0
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
    fields = stat[stat.rfind(b")") + 2:].split()
    return int(fields[1]) if len(fields) > 1 else 0


def alive(pid: int, proc: Path = PROC) -> bool:
    return (proc / str(pid)).exists()


def ancestry(pid: int, proc: Path = PROC, limit: int = 128) -> Iterator[int]:
    """`pid`, its parent, and so on up to (not including) init."""
    seen: set[int] = set()
    while pid > 1 and pid not in seen and len(seen) < limit:
        seen.add(pid)
        yield pid
        pid = parent_of(pid, proc)


def pane_of(pid: int, pane_pids: dict[int, str], proc: Path = PROC) -> str | None:
    """The value for the nearest ancestor of `pid` (itself included) that is a pane's process."""
    for ancestor in ancestry(pid, proc):
        if ancestor in pane_pids:
            return pane_pids[ancestor]
    return None
