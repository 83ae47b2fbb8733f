"""The engine's typed protocols: states, reasons, hook events and bus events.

Pure checks, no tmux: behaviour reads a reason's kind, never its wording, and
every event the engine can publish is either shown by the mirror or ignored by
it on purpose.
"""

from __future__ import annotations

import json

import pytest

from bot.telegram.mirror import Mirror
from core.events import EVENT_TYPES, MessageFailed, StateChanged
from core.hookevents import HOOKS, SessionStart, Stop, StopFailure, UserPromptSubmit, parse_hook
from core.errors import Invalid
from core.sessions import Session
from core.types import Reason, ReasonKind, State


def _session(**changes: object) -> Session:
    fields = dict(id="a1b2c3", name="eng", parent_id=None, provider="claude", workdir="/tmp",
                  tmux_session="sm-a1b2c3", pane_id="%1", token_hash="x", state="idle",
                  state_reason=None, state_since=0.0, agent_session_id=None, transcript_path=None,
                  idle_reminded=0, created_at=0.0, last_activity=0.0)
    fields.update(changes)
    return Session(**fields)  # type: ignore[arg-type]


def test_every_event_is_shown_or_deliberately_ignored_by_the_mirror() -> None:
    shows, ignores = set(Mirror.SHOWS), set(Mirror.IGNORES)
    assert not shows & ignores
    assert {cls.type for cls in shows | ignores} == set(EVENT_TYPES), \
        "a new event is handled by no one: add it to Mirror.SHOWS (with a case) or Mirror.IGNORES"


def test_a_reworded_reason_keeps_its_behaviour() -> None:
    exited = _session(state="errored", state_kind="exited", state_reason="the agent left, status 1")
    api = _session(state="errored", state_kind="api error", state_reason="agent exited?! no: overloaded")
    assert exited.gone
    assert not api.gone  # the wording says "agent exited", the kind says API error
    assert exited.reason == Reason(ReasonKind.EXITED, "the agent left, status 1")


def test_states_are_an_enum_that_still_reads_as_text() -> None:
    s = _session(state="waiting", state_kind="dialog", state_reason="trust this folder?")
    assert s.state is State.WAITING and s.state == "waiting"
    public = s.public()
    assert public["state"] == "waiting" and public["state_kind"] == "dialog"
    json.dumps(public)
    with pytest.raises(ValueError):
        _session(state="sleepy")


def test_events_have_a_stable_wire_form() -> None:
    event = StateChanged(session="a1b2c3", name="eng", state=State.ERRORED, previous=State.BUSY,
                         reason=Reason(ReasonKind.API_ERROR, "api error: overloaded"), source="hook")
    wire = json.loads(json.dumps(event.to_dict()))
    assert wire == {"type": "state.changed", "session": "a1b2c3", "at": 0.0, "name": "eng",
                    "state": "errored", "previous": "busy", "reason": "api error: overloaded",
                    "reason_kind": "api error", "source": "hook"}
    failed = MessageFailed(session="a1b2c3", message=7, error="session was killed").to_dict()
    assert failed["type"] == "message.failed" and failed["message"] == 7


@pytest.mark.parametrize("name, payload, expected", [
    ("SessionStart", {"source": "clear", "session_id": "s1", "transcript_path": "/t.jsonl"},
     SessionStart({}, "clear", "s1", "/t.jsonl")),
    ("UserPromptSubmit", {"prompt": "[from owner] hi"}, UserPromptSubmit({}, "[from owner] hi")),
    ("Stop", {"last_assistant_message": "done"}, Stop({}, "done")),
    ("Stop", {}, Stop({}, "")),
    ("StopFailure", {"error": {"type": "rate_limit"}}, StopFailure({}, '{"type": "rate_limit"}')),
])
def test_hook_payloads_parse_into_typed_events(name: str, payload: dict, expected: object) -> None:
    hook = parse_hook(name, payload)
    assert type(hook) is type(expected)
    assert {k: v for k, v in vars(hook).items() if k != "payload"} == \
        {k: v for k, v in vars(expected).items() if k != "payload"}


def test_unknown_hook_events_are_refused_and_every_known_one_parses() -> None:
    with pytest.raises(Invalid):
        parse_hook("NotAHook", {})
    for name in HOOKS:
        assert parse_hook(name, {"junk": [1, 2]}).name == name
        assert parse_hook(name, "not a dict").name == name  # type: ignore[arg-type]
