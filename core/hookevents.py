"""Claude Code hook events, turned into state.

| Event                                   | Effect                                        |
| --------------------------------------- | --------------------------------------------- |
| SessionStart                            | bind Claude's session id and transcript; idle |
| SessionStart source=clear               | the clear in flight is confirmed              |
| UserPromptSubmit                        | busy; tells the deliverer the prompt          |
| PreToolUse, PostToolUse                 | busy (AskUserQuestion/ExitPlanMode: waiting)  |
| PermissionRequest                       | waiting; asks the phone (core.permissions)    |
| Notification(permission_prompt)         | waiting on a human                            |
| Stop                                    | idle (ignored while a clear is in flight)     |
| StopFailure                             | errored: an API error or rate limit           |
| SessionEnd (not for /clear)             | errored: the agent exited                     |
"""

from __future__ import annotations

import json
import logging
from typing import Any

from core.delivery import Delivery
from core.events import EventBus
from core.permissions import Permissions
from core.sessions import Session, SessionRegistry
from core.state import StateMachine

log = logging.getLogger(__name__)

HOOK_EVENTS = frozenset(
    {
        "SessionStart", "UserPromptSubmit", "PreToolUse", "PostToolUse", "Notification",
        "PermissionRequest", "Stop", "StopFailure", "SessionEnd", "SubagentStop", "PreCompact",
    }
)
HUMAN_TOOLS = {"AskUserQuestion": "question", "ExitPlanMode": "plan"}


def _brief(value: Any, limit: int = 300) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def question_options(tool_input: Any) -> list[list[str]]:
    """AskUserQuestion's options as [digit, label]; the dialog numbers them from 1."""
    try:
        options = tool_input["questions"][0]["options"]
        return [[str(i + 1), str(o.get("label", o))[:60]] for i, o in enumerate(options[:9])]
    except (KeyError, IndexError, TypeError, AttributeError):
        return []


class HookEvents:
    def __init__(
        self, registry: SessionRegistry, states: StateMachine, delivery: Delivery, bus: EventBus,
        permissions: Permissions,
    ) -> None:
        self._permissions = permissions
        self._registry = registry
        self._states = states
        self._delivery = delivery
        self._bus = bus

    async def handle(self, session: Session, event: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Apply one hook event; the returned dict is what the hook prints (usually nothing)."""
        source = f"hook {event}"
        self._registry.touch(session)
        self._permissions.saw_event(session.id, event, payload)
        if event == "SessionStart":
            changes = {}
            if payload.get("session_id"):
                changes["agent_session_id"] = str(payload["session_id"])
            if payload.get("transcript_path"):
                changes["transcript_path"] = str(payload["transcript_path"])
            if changes:
                await self._registry.update(session, **changes)
            if payload.get("source") == "clear":
                self._delivery.note_cleared(session.id)
            if payload.get("source") != "compact":
                await self._states.set(session, "idle", source=source)
        elif event == "UserPromptSubmit":
            # Only a signal: the deliverer matches the prompt to its batch in flight.
            self._delivery.note_submitted(session.id, str(payload.get("prompt") or ""))
            await self._states.set(session, "busy", source=source)
        elif event == "PreToolUse":
            tool = str(payload.get("tool_name", ""))
            if tool in HUMAN_TOOLS:
                await self._states.set(session, "waiting", HUMAN_TOOLS[tool], source=source)
                self._bus.publish("permission.needed", session.id, name=session.name, tool=tool,
                                  input=payload.get("tool_input"), kind=HUMAN_TOOLS[tool],
                                  options=question_options(payload.get("tool_input")))
            else:
                await self._states.set(session, "busy", source=source)
        elif event == "PostToolUse":
            await self._states.set(session, "busy", source=source)
        elif event == "PermissionRequest":
            tool = str(payload.get("tool_name", ""))
            await self._states.set(session, "waiting", f"permission: {tool}", source=source)
            return await self._permissions.ask(session, payload)
        elif event == "Notification":
            kind = payload.get("notification_type")
            if kind in ("permission_prompt", "elicitation_dialog"):
                reason = session.state_reason if session.state == "waiting" else "permission"
                await self._states.set(session, "waiting", reason, source=source)
        elif event == "Stop":
            if self._delivery.is_clearing(session.id):
                log.info("%s: ignoring the old context's Stop during a clear", session.label)
            else:
                text = payload.get("last_assistant_message")
                if text:
                    self._bus.publish("turn.finished", session.id, name=session.name, text=str(text))
                await self._states.set(session, "idle", source=source)
        elif event == "StopFailure":
            error = payload.get("error") or payload.get("message") or "unknown error"
            await self._states.set(session, "errored", f"api error: {_brief(error)}", source=source)
        elif event == "SessionEnd":
            reason = payload.get("reason", "")
            if reason != "clear":
                await self._states.set(session, "errored", f"agent exited ({reason or 'ended'})",
                                       source=source)
        return {}
