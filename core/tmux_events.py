"""tmux tells sm what changed: one control-mode client and a few server hooks.

sm keeps one `tmux -C` client attached to a session of its own, `sm-monitor`,
whose only pane runs `cat >/dev/null`. Server hooks type one line into that
pane for each change sm cares about:

    died %5         pane-died: an agent's process exited (remain-on-exit keeps the pane)
    activity @3     alert-activity (monitor-activity on): a window had output
    closed          session-closed: a session went away, ours or behind our back

and when the client itself ends (the server was killed), the listener hears
`exit`, so a lost server is noticed at once.

The pane's echo comes back to the client as `%output`, so an event costs tmux
a few microseconds and forks nothing: no shell, no Python, no tmux client.
The same client runs sm's monitoring queries (`display-message`,
`list-panes`), so those fork nothing either.

Why this and not the alternatives (measured on this machine, tmux 3.3a, 200
idle shells):

* hooks running `run-shell -b 'printf ... >> fifo'`: 1.3 ms of CPU per event
  (a /bin/sh per event) and ~5 ms from a pane's death to the line; a control
  client's event costs 0.03 ms and arrives in ~3 ms. The FIFO also blocks the
  hook's shell whenever sm is not reading it.
* a control client attached to each agent's session for its `%output`: one
  client per agent, and each would count as "attached" to that agent.

Only `sm-monitor` is attached: no agent's session ever counts a control client
as a person (`session_attached` stays 0 for agents). Its window does not
monitor activity, and the activity hook skips it, or each event's echo would
raise another.

An activity alert fires once and then waits until the window's alert flag is
cleared (`kill-session -C`, which clears alerts and kills nothing). `rearm()`
does that when the monitor wants to hear about the next output: a noisy pane
costs one event per look, not one per write.

Hook commands that fail would print into some pane's view mode, so every hook
first checks that `sm-monitor` exists (a format loop over sessions, no fork).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections import deque
from pathlib import Path
from typing import Callable

from core.errors import Unavailable

log = logging.getLogger(__name__)

MONITOR_SESSION = "sm-monitor"

_EXISTS = "#{S:#{?#{==:#{session_name}," + MONITOR_SESSION + "},1,}}"
_TYPE = "run-shell -C \"send-keys -t =" + MONITOR_SESSION + ": '{line}' Enter\""
HOOKS_CONFIG = f"""\
set -g monitor-activity on
set -g activity-action any
set -g visual-activity off
set-hook -g pane-died {{ if-shell -F "{_EXISTS}" {{ {_TYPE.format(line='died #{hook_pane}')} }} }}
set-hook -g session-closed {{ if-shell -F "{_EXISTS}" {{ {_TYPE.format(line='closed')} }} }}
set-hook -g alert-activity {{ if-shell -F "#{{&&:#{{!=:#{{hook_session_name}},{MONITOR_SESSION}}},{_EXISTS}}}" {{ {_TYPE.format(line='activity #{hook_window}')} }} }}
"""

_BLOCK_RE = re.compile(r"^%(begin|end|error) (\d+) (\d+) (\d+)$")
_OCTAL_RE = re.compile(r"\\([0-7]{3})")

Listener = Callable[[str, str], None]


class Refused(Unavailable):
    """tmux answered a command with an error (a pane that is gone, say)."""


def _unescape(value: str) -> str:
    return _OCTAL_RE.sub(lambda m: chr(int(m.group(1), 8)), value)


def quote(arg: str) -> str:
    """One argument in tmux's command syntax (single quotes take everything literally)."""
    if "'" in arg or "\n" in arg:
        raise ValueError(f"cannot pass {arg!r} to tmux control mode")
    return f"'{arg}'"


class TmuxEvents:
    """The control-mode client: `events` of changes, and `command` for queries."""

    def __init__(self, socket_name: str, config_file: Path, on_event: Listener) -> None:
        self.socket_name = socket_name
        self._config = config_file
        self._on_event = on_event
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._pending: deque[asyncio.Future[list[str]]] = deque()
        self._typed = ""  # the monitor pane's echo, up to the next line end

    @property
    def connected(self) -> bool:
        return self._proc is not None and self._proc.returncode is None \
            and self._reader is not None and not self._reader.done()

    async def connect(self) -> None:
        """Attach (starting the server and sm-monitor if needed) and install the hooks."""
        await self.close()
        self._proc = await asyncio.create_subprocess_exec(
            "tmux", "-L", self.socket_name, "-f", str(self._config), "-C",
            "new-session", "-A", "-s", MONITOR_SESSION, "-x", "80", "-y", "10",
            "exec cat >/dev/null",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL, env={**os.environ, "TMUX": ""},
            limit=1 << 24,
        )
        self._pending.clear()
        self._reader = asyncio.get_running_loop().create_task(self._read(), name="tmux-events")
        try:
            # Its own echo must never raise an activity alert: off before any hook is set.
            await asyncio.wait_for(self.command(
                f"set-option -w -t ={MONITOR_SESSION}: monitor-activity off"), 10)
            # Line by line, not source-file: that answers with a block per command
            # in the file, and replies are matched to commands by their order.
            for line in HOOKS_CONFIG.splitlines():
                await self.command(line)
        except (asyncio.TimeoutError, Unavailable) as exc:
            await self.close()
            raise Unavailable(f"tmux control mode did not start: {exc}") from exc

    async def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            if proc.stdin:
                proc.stdin.close()  # a control client detaches when its input ends
            try:
                await asyncio.wait_for(proc.wait(), 2)
            except asyncio.TimeoutError:
                proc.kill()
                await proc.wait()
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
            self._reader = None
        self._fail_pending("tmux control client closed")

    async def command(self, line: str) -> list[str]:
        """Run one tmux command through the client; its output lines, or Unavailable."""
        if not self.connected or self._proc is None or self._proc.stdin is None:
            raise Unavailable("tmux control client is not connected")
        future: asyncio.Future[list[str]] = asyncio.get_running_loop().create_future()
        # tmux answers a client's commands in the order it sent them.
        self._pending.append(future)
        self._proc.stdin.write(line.encode() + b"\n")
        return await future

    async def rearm(self, session_id: str) -> None:
        """Clear the alert flags of a session's windows: its next output raises an event."""
        await self.command(f"kill-session -C -t {quote(session_id)}")

    async def clear_typed(self) -> None:
        """Drop the events already typed into sm-monitor's history: they were read."""
        await self.command(f"clear-history -t ={MONITOR_SESSION}:")

    # -- reading --------------------------------------------------------------------------

    async def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        stdout = self._proc.stdout
        block: list[str] | None = None
        opened: tuple[str, str, str] | None = None
        try:
            while True:
                raw = await stdout.readline()
                if not raw:
                    break
                line = raw.decode("utf-8", "replace").rstrip("\n")
                marker = _BLOCK_RE.match(line) if line.startswith("%") else None
                if block is not None:
                    # Inside a reply only its own %end/%error (same time, number and
                    # flags) closes it: a pane's text can never end it early.
                    if marker and marker.group(1) != "begin" and marker.groups()[1:] == opened:
                        # Flags 1: a command of this client's; others are the attach
                        # itself and the hooks' commands.
                        if opened[2] == "1":
                            self._reply(block, marker.group(1) == "end")
                        block, opened = None, None
                    else:
                        block.append(line)
                elif marker and marker.group(1) == "begin":
                    block, opened = [], marker.groups()[1:]
                elif line.startswith("%output "):
                    self._typed_text(_unescape(line.split(" ", 2)[2] if line.count(" ") >= 2 else ""))
                elif line.startswith("%exit"):
                    break
        finally:
            self._fail_pending("tmux control client exited")
            # The server may be gone (a kill-server, a reboot): look now, not at the
            # next safety-net poll.
            try:
                self._on_event("exit", "")
            except Exception:
                log.exception("tmux exit event failed")

    def _reply(self, lines: list[str], ok: bool) -> None:
        if not self._pending:
            return
        future = self._pending.popleft()
        if future.done():
            return
        if ok:
            future.set_result(lines)
        else:
            future.set_exception(Refused("tmux: " + " ".join(lines).strip()))

    def _typed_text(self, text: str) -> None:
        self._typed += text
        *lines, self._typed = self._typed.replace("\r", "").split("\n")
        for line in lines:
            log.debug("tmux event %r", line)
            kind, _, arg = line.strip().partition(" ")
            if kind in ("died", "activity", "closed"):
                try:
                    self._on_event(kind, arg.strip())
                except Exception:
                    log.exception("tmux event %r failed", line)

    def _fail_pending(self, why: str) -> None:
        while self._pending:
            future = self._pending.popleft()
            if not future.done():
                future.set_exception(Unavailable(why))
