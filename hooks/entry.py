"""`sm hook <Event>`: the command Claude Code runs for each hook event.

It reads the event's JSON on stdin and posts it to the server as the agent
(`SM_TOKEN`). Outside a session sm started (no `SM_TOKEN`/`SM_SESSION_ID`) it
does nothing, so installed hooks never disturb other Claude sessions.
Delivery is retried; if the server is unreachable, the event goes to the
spool, and from then on later events queue behind it there, so the server
replays them in order. It never blocks Claude for long and always exits 0 (a
hook that fails must fail open).

`sm hook CodexTurnEnd JSON` is Codex's `notify` program in the sessions sm
starts: the JSON (Codex's payload, its last argument) gains the path of the
thread's rollout, found in the agent's CODEX_HOME, and the person's own
`notify` of config.toml runs too.
"""

from __future__ import annotations

import json
import os
import sys
import time

from cli.client import ApiError, Client, ServerDown
from core import paths

RETRY_DELAYS = (0.05, 0.2, 0.5)


def _spool(event: str, payload: dict, token: str) -> None:
    from pathlib import Path

    from core import spool

    spool.write(Path(paths.spool_dir()), token, event, payload)


def codex_rollout(codex_home: str, thread_id: str) -> str | None:
    """The rollout file of a Codex thread (sessions/YYYY/MM/DD/rollout-<time>-<thread id>.jsonl).

    The newest days are looked at first: a thread's file is in the folder of the day it began."""
    if not thread_id or not all(ch.isalnum() or ch == "-" for ch in thread_id):
        return None  # a thread id is a UUID: nothing a glob would read as a pattern
    from pathlib import Path

    root = Path(codex_home) / "sessions"
    try:
        days = sorted(root.glob("*/*/*"), reverse=True)
    except OSError:
        return None
    for day in days:
        found = sorted(day.glob(f"rollout-*-{thread_id}.jsonl"))
        if found:
            return str(found[-1])
    return None


def run_own_codex_notify(argument: str) -> None:
    """Run the `notify` program of the person's own Codex config.toml, which sm's
    `-c notify=…` replaced for this session, as Codex would have: the JSON as its
    last argument, not waited for."""
    import subprocess
    import tomllib

    home = os.environ.get("CODEX_HOME") or os.path.join(os.path.expanduser("~"), ".codex")
    try:
        with open(os.path.join(home, "config.toml"), "rb") as fh:
            notify = tomllib.load(fh).get("notify")
    except (OSError, ValueError):
        return
    if not notify or not isinstance(notify, list) or not all(isinstance(a, str) for a in notify):
        return
    if "CodexTurnEnd" in notify:
        return  # sm's own, written into the config by hand: not run twice
    try:
        subprocess.Popen([*notify, argument], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True)
    except OSError:
        pass


def codex_turn_end(argument: str) -> dict | None:
    """Codex's `notify` payload (its last argument, not stdin, which may be the agent's
    terminal), with the path of the thread's rollout added; None for a thread with no
    rollout (the side thread in which Codex asks for a title)."""
    try:
        payload = json.loads(argument)
    except ValueError:
        return None
    if not isinstance(payload, dict) or payload.get("type") != "agent-turn-complete":
        return None
    home = os.environ.get("CODEX_HOME") or os.path.join(os.path.expanduser("~"), ".codex")
    path = codex_rollout(home, str(payload.get("thread-id") or ""))
    return {**payload, "transcript_path": path} if path else None


def main(argv: list[str]) -> int:
    event = argv[0] if argv else ""
    token = os.environ.get("SM_TOKEN", "")
    if event == "CodexTurnEnd":
        if len(argv) > 1:
            run_own_codex_notify(argv[-1])
        found = codex_turn_end(argv[-1]) if len(argv) > 1 else None
        if found is None or not token or not os.environ.get("SM_SESSION_ID"):
            return 0
        payload = found
    else:
        raw = sys.stdin.buffer.read()
        if not event or not token or not os.environ.get("SM_SESSION_ID"):
            return 0
        try:
            payload = json.loads(raw or b"{}")
            if not isinstance(payload, dict):
                payload = {"value": payload}
        except ValueError:
            payload = {"unparsed": raw.decode("utf-8", "replace")[:2000]}

    if event == "PermissionRequest":
        return _ask(payload)
    spool_dir = paths.spool_dir()
    try:
        backlog = any(name.endswith(".json") and not name.startswith(".") for name in os.listdir(spool_dir))
    except OSError:
        backlog = False
    client = Client(timeout=8)
    if backlog:
        # Keep order: queue behind what is already spooled, then ask for a replay.
        _spool(event, payload, token)
        try:
            client.request("POST", "/spool/drain", {}, timeout=8)
        except (ServerDown, ApiError, OSError):
            pass
        return 0

    for delay in (*RETRY_DELAYS, None):
        try:
            answer = client.request("POST", f"/hooks/{event}", payload)
        except ServerDown:
            break
        except ApiError as exc:
            if exc.status < 500:
                return 0  # not a session the server knows: nothing to do
        except OSError:
            pass
        else:
            if answer:
                sys.stdout.write(json.dumps(answer))
            return 0
        if delay is None:
            break
        time.sleep(delay)
    _spool(event, payload, token)
    return 0


def _ask(payload: dict) -> int:
    """Wait for the server's decision (a tap on the phone) and print it.

    One attempt only: retrying could ask the phone twice. If the server is
    down or has no decision, print nothing; the dialog stays for the terminal.
    """
    return _post_and_print("/hooks/PermissionRequest", payload, timeout=3500)


def _post_and_print(path: str, payload: dict, timeout: float) -> int:
    """One request; print the server's answer for Claude Code. Fail open: always 0."""
    try:
        answer = Client(timeout=timeout).request("POST", path, payload)
    except (ServerDown, ApiError, OSError):
        return 0
    if answer:
        sys.stdout.write(json.dumps(answer))
    return 0


def auto_lock() -> int:
    """`sm auto-lock`: the PreToolUse hook for file writes (Write, Edit, MultiEdit, NotebookEdit).

    Takes the workspace lock for this agent, waiting (server side, up to
    SM_LOCK_WAIT) while another agent holds it; if it is still held, prints a
    deny decision that Claude shows the agent. Outside a managed session, or
    with the server down, it allows the write (a hook must fail open).
    """
    raw = sys.stdin.buffer.read()
    if not os.environ.get("SM_TOKEN") or not os.environ.get("SM_SESSION_ID"):
        return 0
    try:
        payload = json.loads(raw or b"{}")
    except ValueError:
        return 0
    return _post_and_print("/locks/auto", payload, timeout=600)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
