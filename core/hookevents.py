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
| StopFailure                             | limited (a usage/rate limit), else errored    |
| SessionEnd (not /clear, not a hang-up)  | errored: the agent exited (not when lost)     |
| CodexTurnEnd (Codex's `notify`)         | its answer (TurnFinished); usage is read      |
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any, ClassVar

from core.delivery import Delivery
from core.errors import Invalid
from core.events import EventBus, PermissionNeeded, TurnFinished
from core.limits import Limits, is_limit
from core.permissions import Permissions
from core.sessions import Session, SessionRegistry
from core.state import Reason, ReasonKind, State, StateMachine

log = logging.getLogger(__name__)

HUMAN_TOOLS = {"AskUserQuestion": ReasonKind.QUESTION, "ExitPlanMode": ReasonKind.PLAN}


# -- the hook events sm understands, parsed from Claude Code's JSON ----------------


@dataclass(frozen=True)
class Hook:
    name: ClassVar[str] = ""
    payload: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def parse(cls, payload: dict[str, Any]) -> "Hook":
        return cls(payload)


@dataclass(frozen=True)
class SessionStart(Hook):
    name: ClassVar[str] = "SessionStart"
    source: str = ""  # startup | resume | clear | compact
    agent_session_id: str = ""
    transcript_path: str = ""

    @classmethod
    def parse(cls, payload: dict[str, Any]) -> "SessionStart":
        return cls(payload, str(payload.get("source") or ""), str(payload.get("session_id") or ""),
                   str(payload.get("transcript_path") or ""))


@dataclass(frozen=True)
class UserPromptSubmit(Hook):
    name: ClassVar[str] = "UserPromptSubmit"
    prompt: str = ""

    @classmethod
    def parse(cls, payload: dict[str, Any]) -> "UserPromptSubmit":
        return cls(payload, str(payload.get("prompt") or ""))


@dataclass(frozen=True)
class ToolHook(Hook):
    tool: str = ""
    tool_input: Any = None

    @classmethod
    def parse(cls, payload: dict[str, Any]) -> "ToolHook":
        return cls(payload, str(payload.get("tool_name") or ""), payload.get("tool_input"))


@dataclass(frozen=True)
class PreToolUse(ToolHook):
    name: ClassVar[str] = "PreToolUse"


@dataclass(frozen=True)
class PostToolUse(ToolHook):
    name: ClassVar[str] = "PostToolUse"


@dataclass(frozen=True)
class PermissionRequest(ToolHook):
    name: ClassVar[str] = "PermissionRequest"


@dataclass(frozen=True)
class Notification(Hook):
    name: ClassVar[str] = "Notification"
    kind: str = ""  # permission_prompt | idle_prompt | elicitation_dialog | ...

    @classmethod
    def parse(cls, payload: dict[str, Any]) -> "Notification":
        return cls(payload, str(payload.get("notification_type") or ""))


@dataclass(frozen=True)
class Stop(Hook):
    name: ClassVar[str] = "Stop"
    last_message: str = ""

    @classmethod
    def parse(cls, payload: dict[str, Any]) -> "Stop":
        return cls(payload, str(payload.get("last_assistant_message") or ""))


@dataclass(frozen=True)
class StopFailure(Hook):
    name: ClassVar[str] = "StopFailure"
    error: str = ""
    details: str = ""  # 2.1.330: error_details, the text it shows ("You've hit your limit · resets 3pm")

    @classmethod
    def parse(cls, payload: dict[str, Any]) -> "StopFailure":
        details = payload.get("error_details") or payload.get("last_assistant_message") or ""
        return cls(payload, _brief(payload.get("error") or payload.get("message") or "unknown error"),
                   _brief(details) if details else "")


@dataclass(frozen=True)
class SessionEnd(Hook):
    name: ClassVar[str] = "SessionEnd"
    reason: str = ""

    @classmethod
    def parse(cls, payload: dict[str, Any]) -> "SessionEnd":
        return cls(payload, str(payload.get("reason") or ""))


@dataclass(frozen=True)
class CodexTurnEnd(Hook):
    """Not Claude's: Codex's `notify` at the end of a turn (hooks/entry.py adds the rollout's path)."""

    name: ClassVar[str] = "CodexTurnEnd"
    thread_id: str = ""
    transcript_path: str = ""
    last_message: str = ""

    @classmethod
    def parse(cls, payload: dict[str, Any]) -> "CodexTurnEnd":
        return cls(payload, str(payload.get("thread-id") or ""), str(payload.get("transcript_path") or ""),
                   str(payload.get("last-assistant-message") or ""))


@dataclass(frozen=True)
class SubagentStop(Hook):
    name: ClassVar[str] = "SubagentStop"


@dataclass(frozen=True)
class PreCompact(Hook):
    name: ClassVar[str] = "PreCompact"


HOOKS: dict[str, type[Hook]] = {cls.name: cls for cls in (
    SessionStart, UserPromptSubmit, PreToolUse, PostToolUse, PermissionRequest, Notification,
    Stop, StopFailure, SessionEnd, SubagentStop, PreCompact, CodexTurnEnd,
)}
HOOK_EVENTS = frozenset(HOOKS)


def parse_hook(event: str, payload: dict[str, Any]) -> Hook:
    cls = HOOKS.get(event)
    if cls is None:
        raise Invalid(f"unknown hook event {event!r}")
    return cls.parse(payload if isinstance(payload, dict) else {})


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
        permissions: Permissions, limits: Limits,
    ) -> None:
        self._permissions = permissions
        self._limits = limits
        self._registry = registry
        self._states = states
        self._delivery = delivery
        self._bus = bus

    async def handle(self, session: Session, hook: Hook) -> dict[str, Any]:
        """Apply one hook event; the returned dict is what the hook prints (usually nothing)."""
        source = f"hook {hook.name}"
        self._registry.touch(session)
        self._permissions.saw_event(session.id, hook.name, hook.payload)
        match hook:
            case SessionStart(source=start_source):
                changes = {}
                if hook.agent_session_id:
                    changes["agent_session_id"] = hook.agent_session_id
                if hook.transcript_path:
                    changes["transcript_path"] = hook.transcript_path
                if changes:
                    await self._registry.update(session, **changes)
                if start_source == "clear":
                    self._delivery.note_cleared(session.id)
                # At a (re)start the hook fires before the TUI is drawn, and a first-run
                # dialog may come before the input box: the screen says when it is ready.
                # A compaction happens within a turn: no change.
                if start_source == "clear" or (
                        start_source != "compact" and session.state not in (State.STARTING, State.WAITING)):
                    await self._states.set(session, State.IDLE, source=source)
            case UserPromptSubmit(prompt=prompt):
                # Only a signal: the deliverer matches the prompt to its batch in flight.
                self._delivery.note_submitted(session.id, prompt)
                await self._states.set(session, State.BUSY, source=source)
            case PreToolUse(tool=tool) if tool in HUMAN_TOOLS:
                kind = HUMAN_TOOLS[tool]
                await self._states.set(session, State.WAITING, Reason(kind, kind.value), source=source)
                self._bus.publish(PermissionNeeded(
                    session=session.id, name=session.name, kind=kind, tool=tool, input=hook.tool_input,
                    options=question_options(hook.tool_input)))
            case PreToolUse() | PostToolUse():
                await self._states.set(session, State.BUSY, source=source)
            case PermissionRequest(tool=tool):
                await self._states.set(session, State.WAITING,
                                       Reason(ReasonKind.PERMISSION, f"permission: {tool}"), source=source)
                return await self._permissions.ask(session, hook.payload)
            case Notification(kind="permission_prompt" | "elicitation_dialog"):
                reason = session.reason if session.state == State.WAITING and session.reason else \
                    Reason(ReasonKind.PERMISSION, "permission")
                await self._states.set(session, State.WAITING, reason, source=source)
            case Stop(last_message=text):
                if self._delivery.is_clearing(session.id):
                    log.info("%s: ignoring the old context's Stop during a clear", session.label)
                else:
                    if text:
                        self._bus.publish(TurnFinished(session=session.id, name=session.name, text=text))
                    await self._states.set(session, State.IDLE, source=source)
            case StopFailure(error=error, details=details) if is_limit(error, details):
                await self._limits.hit(session, details or error, source)
            case StopFailure(error=error):
                await self._states.set(session, State.ERRORED,
                                       Reason(ReasonKind.API_ERROR, f"api error: {error}"), source=source)
            case SessionEnd() if session.state == State.LOST:
                # Its tmux server or session is gone: the real CLI, hung up, still runs its
                # SessionEnd hook (reason "other"), after sm saw the loss. Lost, not errored:
                # it stays resumable.
                log.info("%s: its agent ended with its lost tmux session", session.label)
            case SessionEnd(reason="other"):
                # Claude ends this way when its terminal hangs up (its tmux server
                # killed, a reboot) as well as on signals: whether the agent exited or
                # its session was lost, the pane says within milliseconds (pane-died,
                # session-closed), and the monitor decides. Deciding here could call
                # a lost session errored and fail its queue.
                log.info("%s: SessionEnd (other); the pane will say what happened", session.label)
            case SessionEnd(reason=why) if why != "clear":
                await self._states.set(session, State.ERRORED,
                                       Reason(ReasonKind.EXITED, f"agent exited ({why or 'ended'})"),
                                       source=source)
            case CodexTurnEnd(last_message=text):
                # Its state is read from the screen; its answer goes to the phone as
                # Claude's does (the engine reads the turn's usage).
                if text:
                    self._bus.publish(TurnFinished(session=session.id, name=session.name, text=text))
            case Notification() | SessionEnd() | SubagentStop() | PreCompact():
                pass  # other notifications, a /clear's SessionEnd, subagents, compaction: no change
            case _:
                log.error("hook event %s is handled by no case", hook.name)
        return {}
