"""tmux, through libtmux, on sm's own socket.

libtmux is synchronous (it forks `tmux` per command), so every call runs in a
worker thread: a spawn never stalls the event loop. Panes are always targeted
by pane id (`%N`), never by session name.
"""

from __future__ import annotations

import asyncio
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import libtmux
from libtmux.exc import LibTmuxException

from core.errors import Unavailable
from core.types import PaneScreen

# CSI/OSC/other escape sequences, for screens captured with colours by mistake
# and for text that must not reach a pane as control input.
ANSI_RE = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|[@-Z\\-_])")

# Options for every session sm starts: keep a dead pane (so its exit status and
# last words can be read) and enough history for `sm output`.
_SERVER_CONFIG = """\
set -g remain-on-exit on
set -g history-limit 10000
set -g status-left-length 40
set -g allow-rename off
"""

PANE_FORMAT = "\t".join(
    [
        "#{pane_id}",
        "#{session_name}",
        "#{pane_dead}",
        "#{pane_dead_status}",
        "#{pane_current_command}",
        "#{window_activity}",
        "#{pane_pid}",
        "#{window_id}",
        "#{session_id}",
    ]
)


def strip_ansi(text: str) -> str:
    return ANSI_RE.sub("", text)


@dataclass(frozen=True)
class PaneInfo:
    pane_id: str
    session_name: str
    dead: bool
    dead_status: int | None
    current_command: str
    activity: int
    pid: int | None
    window_id: str = ""
    session_id: str = ""


def parse_pane(line: str) -> PaneInfo | None:
    """One line of PANE_FORMAT, or None when it is not one."""
    parts = line.split("\t")
    if len(parts) != 9 or not parts[0].startswith("%"):
        return None
    pane_id, session, dead, status, command, activity, pid, window_id, session_id = parts
    return PaneInfo(
        pane_id=pane_id,
        session_name=session,
        dead=dead == "1",
        dead_status=int(status) if status.lstrip("-").isdigit() else None,
        current_command=command,
        activity=int(activity) if activity.isdigit() else 0,
        pid=int(pid) if pid.isdigit() else None,
        window_id=window_id,
        session_id=session_id,
    )


class Tmux:
    """The manager's tmux server, named by `socket_name` (tmux -L)."""

    def __init__(self, socket_name: str, config_dir: Path, width: int = 200, height: int = 50):
        self.socket_name = socket_name
        config_dir.mkdir(parents=True, exist_ok=True)
        self._config = config_dir / "tmux.conf"
        self._config.write_text(_SERVER_CONFIG)
        self._buffer_dir = config_dir
        self.width = width
        self.height = height
        self.server = libtmux.Server(socket_name=socket_name, config_file=str(self._config))

    @property
    def config_file(self) -> Path:
        return self._config

    def attach_command(self, tmux_session: str) -> list[str]:
        return ["tmux", "-L", self.socket_name, "attach-session", "-t", tmux_session]

    # -- synchronous core, run in threads -------------------------------------------

    def _cmd(self, *args: Any) -> list[str]:
        try:
            result = self.server.cmd(*args)
        except (LibTmuxException, OSError) as exc:
            raise Unavailable(f"tmux failed: {exc}") from exc
        if result.stderr:
            raise Unavailable(f"tmux {args[0]} failed: {' '.join(result.stderr)}")
        return list(result.stdout)

    def _new_session(
        self, name: str, command: str, cwd: str, env: dict[str, str]
    ) -> str:
        try:
            session = self.server.new_session(
                session_name=name,
                window_command=command,
                start_directory=cwd,
                environment=env,
                x=self.width,
                y=self.height,
                attach=False,
            )
        except (LibTmuxException, OSError) as exc:
            raise Unavailable(f"tmux could not start session {name}: {exc}") from exc
        pane = session.active_pane
        if pane is None or pane.pane_id is None:
            raise Unavailable(f"tmux started {name} without a pane")
        return pane.pane_id

    def _list_panes(self) -> list[PaneInfo]:
        try:
            result = self.server.cmd("list-panes", "-a", "-F", PANE_FORMAT)
        except (LibTmuxException, OSError) as exc:
            raise Unavailable(f"tmux failed: {exc}") from exc
        if result.stderr:
            text = " ".join(result.stderr)
            # No server yet (nothing spawned, or it is gone) is an empty list. Any
            # other failure to connect is an error: treating it as "no panes"
            # would bury every live session.
            if "no server running" in text or "No such file or directory" in text \
                    or "Connection refused" in text:
                return []
            raise Unavailable(f"tmux list-panes failed: {text}")
        return [p for p in map(parse_pane, result.stdout) if p is not None]

    def _capture(self, pane_id: str, lines: int | None) -> str:
        args = ["capture-pane", "-p", "-J", "-t", pane_id]
        if lines:
            args += ["-S", f"-{lines}"]
        out = self._cmd(*args)
        return strip_ansi("\n".join(out)).rstrip("\n")

    def _paste(self, pane_id: str, text: str) -> None:
        # A named buffer per paste, deleted by paste-buffer -d: concurrent
        # deliveries to different panes never see each other's text.
        fd, path = tempfile.mkstemp(prefix="sm-paste-", dir=self._buffer_dir)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
            buffer = f"sm{os.path.basename(path)[9:]}"
            self._cmd("load-buffer", "-b", buffer, path)
            self._cmd("paste-buffer", "-p", "-d", "-r", "-b", buffer, "-t", pane_id)
        finally:
            os.unlink(path)

    # -- async API -------------------------------------------------------------------

    async def new_session(self, name: str, command: str, cwd: str, env: dict[str, str]) -> str:
        """Start `command` in a new detached session; returns its pane id."""
        return await asyncio.to_thread(self._new_session, name, command, cwd, env)

    async def list_panes(self) -> list[PaneInfo]:
        """Every pane on sm's server, in one tmux call."""
        return await asyncio.to_thread(self._list_panes)

    async def capture(self, pane_id: str, lines: int | None = None) -> str:
        """The visible screen (or `lines` of history too), without ANSI codes."""
        return await asyncio.to_thread(self._capture, pane_id, lines)

    def _screen(self, pane_id: str) -> tuple[str, list[str]]:
        shape = self._cmd("display-message", "-p", "-t", pane_id,
                          "#{pane_width}\t#{pane_height}\t#{cursor_x}\t#{cursor_y}\t#{cursor_flag}")
        return "\n".join(self._cmd("capture-pane", "-e", "-p", "-t", pane_id)), (shape[0] if shape else "").split("\t")

    async def screen(self, pane_id: str) -> PaneScreen:
        """The visible screen with its escapes (capture-pane -e), its size and the cursor."""
        ansi, shape = await asyncio.to_thread(self._screen, pane_id)
        numbers = [int(part) if part.isdigit() else 0 for part in shape + ["0"] * (5 - len(shape))]
        cols, rows, x, y, shown = numbers[:5]
        return PaneScreen(ansi, cols or self.width, rows or self.height, (x, y) if shown else None)

    async def current_command(self, pane_id: str) -> str:
        """The pane's foreground program: one small tmux call, not a list of every pane."""
        out = await asyncio.to_thread(self._cmd, "display-message", "-p", "-t", pane_id,
                                      "#{pane_current_command}")
        return out[0] if out else ""

    async def type_text(self, pane_id: str, text: str) -> None:
        """Type text literally (send-keys -l): key names in it stay words."""
        await asyncio.to_thread(self._cmd, "send-keys", "-t", pane_id, "-l", "--", text)

    async def paste(self, pane_id: str, text: str) -> None:
        """Bracketed paste: newlines arrive as part of one input."""
        await asyncio.to_thread(self._paste, pane_id, text)

    async def press(self, pane_id: str, *keys: str) -> None:
        """Send named keys (Enter, Escape, C-c) as their own call."""
        await asyncio.to_thread(self._cmd, "send-keys", "-t", pane_id, *keys)

    async def terminal_clients(self, tmux_session: str) -> int:
        """How many terminals are attached to a session: control-mode clients (sm's own
        monitor, `tmux -C`) are not people at a terminal and are not counted."""
        try:
            out = await asyncio.to_thread(self._cmd, "list-clients", "-t", tmux_session,
                                          "-F", "#{client_control_mode}")
        except Unavailable:
            return 0  # no such session (any more), or no server
        return sum(1 for line in out if line.strip() == "0")

    async def server_pid(self) -> int | None:
        """The pid of sm's tmux server; None when it is not running."""
        try:
            out = await asyncio.to_thread(self._cmd, "display-message", "-p", "#{pid}")
        except Unavailable:
            return None
        return int(out[0]) if out and out[0].isdigit() else None

    async def forget_global_env(self, is_secret: Callable[[str], bool]) -> list[str]:
        """Remove from the server's global environment (which every new pane inherits)
        the variables `is_secret` names; for a server started before sm kept them out."""
        try:
            lines = await asyncio.to_thread(self._cmd, "show-environment", "-g")
        except Unavailable:
            return []  # no server: the next one starts from sm's own, clean, environment
        names = [line.split("=", 1)[0] for line in lines if "=" in line and not line.startswith("-")]
        found = [name for name in names if is_secret(name)]
        for name in found:
            await asyncio.to_thread(self._cmd, "set-environment", "-g", "-u", name)
        return found

    async def kill_session(self, name: str) -> None:
        def kill() -> None:
            try:
                self._cmd("kill-session", "-t", f"={name}")
            except Unavailable as exc:
                if "can't find session" not in str(exc) and "no server" not in str(exc):
                    raise

        await asyncio.to_thread(kill)

    async def rename_window(self, pane_id: str, title: str) -> None:
        await asyncio.to_thread(self._cmd, "rename-window", "-t", pane_id, title)
