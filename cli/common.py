"""What every `sm` command shares: calling the API, failing, printing.

Click-free on purpose: `sm status` and `sm children` run through here without
importing click at all (see cli/entry.py), which keeps their cold start low.
"""

from __future__ import annotations

import json
import sys
from typing import NoReturn

from cli.client import ApiError, Client, ServerDown
from core.humanize import ago, cost_cell

START_HINT = "sm: the sm server is not running; start it with: sm-bot"


def fail(message: str, code: int = 1) -> NoReturn:
    sys.stderr.write(f"sm: {message}\n")
    sys.exit(code)


def call(method: str, path: str, body: dict | None = None, timeout: float | None = None) -> object:
    """One API call; on failure, one line on stderr and exit 1 (or 2: server down)."""
    try:
        return Client().request(method, path, body, timeout=timeout)
    except ServerDown:
        sys.stderr.write(START_HINT + "\n")
        sys.exit(2)
    except ApiError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot talk to the server: {exc}")


def emit_json(data: object) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


def state_text(s: dict) -> str:
    return s["state"] + (f" ({s['state_reason']})" if s.get("state_reason") else "")


def table(sessions: list) -> str:
    if not sessions:
        return "(no sessions)"
    # Several hosts: a NODE column (sessions then carry their node).
    nodes = any(s.get("node") for s in sessions)
    node = (lambda s: f"{(s.get('node') or '')[:12]:<12} ") if nodes else (lambda s: "")
    lines = [f"{'ID':<7} {'NAME':<20} " + (f"{'NODE':<12} " if nodes else "")
             + f"{'PROVIDER':<8} {'AGE':>6} {'QUEUED':>6} {'COST':>9}  STATE"]
    for s in sessions:
        lines.append(
            f"{s['id']:<7} {s['name'][:20]:<20} {node(s)}{s['provider']:<8} {ago(s['created_at']):>6} "
            f"{s.get('queued', ''):>6} {cost_cell(s.get('usage')):>9}  {state_text(s)}"
            + (f"  [{s['branch']}]" if s.get("worktree") else "")
        )
    return "\n".join(lines)


def human_bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"


def options_text(options: list) -> str:
    """A dialog's options, each with the keys that choose it."""
    return "\n".join(f"  {label}  [{keys}]" for keys, label in options)


def status_text(out: dict) -> str:
    you = out["you"]
    lines = ["you: " + you["name"] + (f" ({you['id']}), {state_text(you)}" if "id" in you else "")]
    lines.append(table(out["sessions"]))
    for s in out["sessions"]:
        if s.get("options"):
            lines.append(f"\n{s['name']} waits for an answer:\n" + options_text(s["options"]))
    if out.get("locks"):
        lines.append("\nlocks:")
        for lock in out["locks"]:
            who = lock["holder_name"] or lock["holder"]
            kind = "auto" if lock["auto"] else "manual"
            lines.append(f"  {lock['workspace']}: {who} ({lock['holder']}), {ago(lock['since'])}, {kind}: {lock['reason']}")
    inbox = out.get("inbox")
    if inbox and inbox.get("files"):
        lines.append(f"\ninbox: {inbox['files']} file(s), {human_bytes(inbox['bytes'])}")
    window = out.get("undelivered_window")
    for name, node in (out.get("nodes") or {}).items():
        if not node.get("up"):
            lines.append(f"\nnode {name}: unreachable, last heard {ago(node['seen'])}")
    for name, link in (out.get("links") or {}).items():
        if link["state"] != "up":
            detail = f": {link['detail']}" if link.get("detail") else ""
            lines.append(f"\n{name}: {link['state']} for {ago(link['since'])}{detail}")
    if out.get("worktrees"):
        lines.append("\nworktrees kept (their sessions ended):")
        for w in out["worktrees"]:
            lines.append(f"  {w['path']} [{w['branch']}]: {worktree_state(w)}")
            if w.get("merge"):
                lines.append(f"    merge:  {w['merge']}")
            lines.append(f"    remove: {w['remove']}")
    if out.get("undelivered"):
        lines.append("\nundelivered" + (f" (the last {_span(window)}):" if window else ":"))
        for m in out["undelivered"]:
            lines.append(f"  #{m['id']} to {m['target']} from {m['from']} [{m['status']}]: {m['error']}")
    if out.get("undelivered_older"):
        lines.append(f"\n{out['undelivered_older']} older undelivered message(s): sm status --all")
    return "\n".join(lines)


def worktree_state(w: dict) -> str:
    parts = ["dirty" if w.get("dirty") else "clean"]
    if w.get("ahead") is not None:
        parts.append(f"{w['ahead']} ahead, {w['behind']} behind {w['base']}")
    parts.append("merged" if w.get("merged") else "not merged")
    return ", ".join(parts)


def _span(seconds: float) -> str:
    hours = seconds / 3600
    return f"{hours:g} h" if hours >= 1 else f"{seconds:g} s"


def status(as_json: bool, everything: bool = False) -> None:
    out = call("GET", "/status?all=1" if everything else "/status")
    emit_json(out) if as_json else print(status_text(out))  # type: ignore[arg-type]


def children(as_json: bool) -> None:
    sessions = call("GET", "/sessions?scope=children")
    emit_json(sessions) if as_json else print(table(sessions))  # type: ignore[arg-type]
