"""Permission prompts answered from afar (the phone), racing the terminal.

When a managed Claude session reaches a permission dialog, its
`PermissionRequest` hook asks the server and waits. The dialog is on the
screen all the while (FIELD-NOTES, checked with the real CLI), so two answers
race:

* a decision from the phone: the hook prints it and the dialog closes;
* an answer at the terminal: the command runs (or not) at once, and the
  session's next hook event (PostToolUse, Stop, a new prompt, another tool)
  shows it; the waiting hook is then released with no decision;
* no answer within `SM_PERMISSION_TIMEOUT`: the hook prints nothing and the
  dialog simply stays.

Each request is announced as `permission.needed` (with its `request` id) and
ends with `permission.resolved` (`outcome`: allowed, allowed always, denied,
answered at the terminal, expired; `by`: who).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from core.errors import NotFound
from core.events import EventBus, PermissionNeeded, PermissionResolved
from core.types import ReasonKind
from core.sessions import Session

# Hook events that prove a pending dialog was answered at the terminal.
ANSWERED_BY = frozenset({"PostToolUse", "PostToolUseFailure", "Stop", "UserPromptSubmit",
                         "PreToolUse", "SessionEnd", "StopFailure"})
DECISIONS = ("allow", "always", "deny")


@dataclass
class Request:
    id: int
    session_id: str
    tool: str
    tool_input: Any
    suggestions: Any
    created_at: float
    answer: asyncio.Future[tuple[str, str]] = field(repr=False)


class Permissions:
    def __init__(self, bus: EventBus, timeout: float, clock: Callable[[], float] = time.time) -> None:
        self._bus = bus
        self.timeout = timeout
        self._clock = clock
        self.pending: dict[int, Request] = {}

    async def ask(self, session: Session, payload: dict[str, Any]) -> dict[str, Any]:
        """The PermissionRequest hook's call: wait for a decision; the hook prints what this returns."""
        # A random id, not a counter: a button left from before a restart must
        # never answer a new request that happens to get the same number.
        request = Request(secrets.randbelow(2**31 - 1) + 1, session.id, str(payload.get("tool_name", "")),
                          payload.get("tool_input"), payload.get("permission_suggestions"),
                          self._clock(), asyncio.get_running_loop().create_future())
        self.pending[request.id] = request
        self._bus.publish(PermissionNeeded(session=session.id, name=session.name, request=request.id,
                                           tool=request.tool, input=request.tool_input,
                                           kind=ReasonKind.PERMISSION))
        try:
            decision, by = await asyncio.wait_for(asyncio.shield(request.answer), self.timeout)
        except asyncio.TimeoutError:
            self._resolve(request, "expired", "")
            return {}
        finally:
            self.pending.pop(request.id, None)
        if decision == "deny":
            return _output({"behavior": "deny", "message": f"Denied by {by} (from sm)."})
        if decision == "allow":
            return _output({"behavior": "allow"})
        if decision == "always":
            out: dict[str, Any] = {"behavior": "allow"}
            if request.suggestions:
                out["updatedPermissions"] = request.suggestions
            return _output(out)
        return {}  # answered at the terminal: whatever the hook prints now is ignored

    def decide(self, request_id: int, decision: str, by: str) -> Request:
        """A decision from the phone (or any front end)."""
        request = self.pending.get(request_id)
        if request is None or request.answer.done():
            raise NotFound("this permission request was already answered, or has expired")
        if decision not in DECISIONS:
            raise NotFound(f"unknown decision {decision!r}")
        outcome = {"allow": "allowed", "always": "allowed always", "deny": "denied"}[decision]
        self._resolve(request, outcome, by)
        request.answer.set_result((decision, by))
        return request

    def saw_event(self, session_id: str, event: str, payload: dict[str, Any]) -> None:
        """A hook event from the session: a pending dialog of its was answered at the terminal."""
        if event not in ANSWERED_BY:
            return
        for request in list(self.pending.values()):
            if request.session_id == session_id and not request.answer.done():
                self._resolve(request, "answered at the terminal", "terminal")
                request.answer.set_result(("terminal", "terminal"))

    def _resolve(self, request: Request, outcome: str, by: str) -> None:
        self._bus.publish(PermissionResolved(session=request.session_id, request=request.id,
                                             tool=request.tool, outcome=outcome, by=by))


def _output(decision: dict[str, Any]) -> dict[str, Any]:
    return {"hookSpecificOutput": {"hookEventName": "PermissionRequest", "decision": decision}}
