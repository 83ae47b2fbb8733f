"""The deliverer's decisions (core/deliver_rules.py), table by table: no tmux, no server."""

from __future__ import annotations

from dataclasses import replace

import pytest

from core import deliver_rules as rules
from core.deliver_rules import (Clear, Delivered, Fail, Hold, Interrupt, Look, MarkIdle,
                                Memory, PressKeys, Requeue, Resume, Submit, Tuning, decide)
from core.providers import CLAUDE, CODEX, SHELL, ScreenReading
from core.queue import Message
from core.sessions import Session

TUNING = Tuning()
NOW = 1000.0


def session(state: str = "idle", reason: str | None = None, pane: str | None = "%1",
            provider: str = "claude") -> Session:
    return Session("abc123", "eng", None, provider, "/w", "sm-abc123", pane, "h", state, reason,
                   0.0, None, None, 0, 0.0, 0.0)


def msg(id: int, body: str = "hi", mode: str = "sequential", kind: str = "text",
        status: str = "queued", attempts: int = 0) -> Message:
    return Message(id, "abc123", None, "owner", mode, kind, body, status, attempts, None, 0.0, None)


def render(m: Message) -> str:
    return m.body if m.kind == "command" else f"[from owner] {m.body}"


IDLE = ScreenReading("idle", "")
BUSY = ScreenReading("busy", "")
DIALOG = ScreenReading("waiting")
UNKNOWN = ScreenReading(None)


def typing(text: str) -> ScreenReading:
    return ScreenReading("idle", text)


def ask(s: Session, pending: list[Message], reading: ScreenReading | None = None,
        provider=CLAUDE, exited: bool = False, **memory: object) -> rules.Decision:
    return decide(s, provider, pending, Memory(NOW, **memory), render, TUNING, reading, exited)


# -- what goes in, and how ------------------------------------------------------------------


@pytest.mark.parametrize("text, typed", [
    ("short line", True),
    ("line one\nline two", False),          # a newline typed would submit line by line
    ("tab\there", False),                   # a typed tab is lost by Claude
    ("x" * 287, True),                      # 300 chars with the header
    ("x" * 288, False),                     # over type_max_chars: Claude sees a paste anyway
])
def test_short_single_lines_are_typed_the_rest_pasted(text: str, typed: bool) -> None:
    decision = ask(session(), [msg(1, text)], IDLE)
    assert decision == Submit([msg(1, text)], f"[from owner] {text}", typed)


def test_other_providers_always_get_a_paste() -> None:
    decision = ask(session(provider="codex"), [msg(1)], IDLE, provider=CODEX)
    assert isinstance(decision, Submit) and not decision.typed


def test_trailing_backslash_gets_a_space_so_enter_submits() -> None:
    decision = ask(session(), [msg(1, "C:\\")], IDLE)
    assert isinstance(decision, Submit) and decision.text == "[from owner] C:\\ "


def test_pending_messages_go_in_together_in_queue_order() -> None:
    pending = [msg(3, "urgent-free important", mode="important"), msg(1, "a"), msg(2, "b")]
    decision = ask(session(), pending, IDLE)
    assert decision == Submit(pending, "[from owner] urgent-free important\n\n[from owner] a\n\n"
                                       "[from owner] b", False)


# -- _batch -------------------------------------------------------------------------------------


@pytest.mark.parametrize("bodies, kinds, limit, expected", [
    (["a", "b", "c"], ["text"] * 3, 100, [1, 2, 3]),
    (["a", "b", "c"], ["text", "clear", "text"], 100, [1]),      # up to, not past, a clear
    (["clear", "b"], ["clear", "text"], 100, [1]),               # a clear goes alone
    (["x" * 60, "y" * 60], ["text"] * 2, 100, [1]),              # within the byte limit
    (["x" * 200, "y"], ["text"] * 2, 100, [1]),                  # one message over it still goes
    (["é" * 30, "b" * 41], ["text"] * 2, 100, [1]),              # bytes, not characters
    (["é" * 30, "b" * 40], ["text"] * 2, 100, [1, 2]),
])
def test_batch(bodies: list[str], kinds: list[str], limit: int, expected: list[int]) -> None:
    pending = [msg(i + 1, b, kind=k) for i, (b, k) in enumerate(zip(bodies, kinds))]
    assert [m.id for m in rules._batch(pending, limit)] == expected


# -- when to hold -------------------------------------------------------------------------------


@pytest.mark.parametrize("s, reading, why", [
    (session("busy"), None, "waiting for idle (busy)"),
    (session("waiting"), None, "waiting for idle (waiting)"),
    (session("starting"), None, "the agent is starting"),
    (session(pane=None), None, "the agent is starting"),
    (session(), DIALOG, "a dialog is on the screen"),
    (session(), typing("half-typed"), "input box holds text; holding 1 message(s)"),
])
def test_holds(s: Session, reading: ScreenReading | None, why: str) -> None:
    decision = ask(s, [msg(1)], reading)
    assert isinstance(decision, Hold) and decision.why == why


def test_nothing_pending_holds_until_woken() -> None:
    assert ask(session(), []) == Hold("nothing to deliver")


def test_a_person_typing_is_looked_at_again_later() -> None:
    decision = ask(session(), [msg(1)], typing("half-typed"))
    assert decision == Hold("input box holds text; holding 1 message(s)", TUNING.retry_delay, log=True)


def test_the_screen_is_read_only_when_the_answer_depends_on_it() -> None:
    assert ask(session(), [msg(1)]) == Look()
    assert ask(session("busy"), [msg(1)]) == Hold("waiting for idle (busy)")


def test_an_errored_agent_still_at_its_prompt_takes_messages() -> None:
    decision = ask(session("errored", "api error: overloaded"), [msg(1)], IDLE)
    assert isinstance(decision, Submit)


@pytest.mark.parametrize("state, why", [
    ("lost", "the session is lost; waiting for it to be resumed"),
    ("limited", "the agent is at a usage limit; holding until it resets"),
])
@pytest.mark.parametrize("pending", [
    [msg(1)],
    [msg(1, mode="urgent")],  # an urgent message neither interrupts nor goes in
    [msg(1, "1", kind="keys")],  # nor does an answer to a dialog
    [msg(1, status="inflight")],  # a batch in flight waits too (sent again after a resume)
], ids=["sequential", "urgent", "keys", "inflight"])
def test_a_lost_or_limited_agent_gets_nothing(state: str, why: str, pending: list[Message]) -> None:
    for reading in (None, IDLE):
        assert ask(session(state), pending, reading, entered_at=NOW - 10) == Hold(why)


def test_everything_fails_once_the_agent_exited() -> None:
    pending = [msg(1), msg(2, mode="urgent")]
    decision = ask(session("errored", "agent exited (status 1)"), pending, exited=True)
    assert decision == Fail(pending, "not delivered: agent exited (status 1)")


# -- keys ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("state, reading, expected", [
    ("waiting", None, PressKeys(msg(1, "2", "urgent", "keys"))),
    ("busy", DIALOG, PressKeys(msg(1, "2", "urgent", "keys"))),   # the screen shows the dialog
    ("busy", None, Look()),
    ("idle", IDLE, Fail([msg(1, "2", "urgent", "keys")], "no dialog is waiting for an answer now")),
])
def test_keys_are_pressed_only_while_a_dialog_is_up(state: str, reading, expected) -> None:
    assert ask(session(state), [msg(1, "2", "urgent", "keys"), msg(2)], reading) == expected


@pytest.mark.parametrize("state, reading", [("busy", None), ("idle", None), ("waiting", None), ("errored", None)])
def test_a_toolbar_key_is_pressed_at_once_whatever_the_agent_does(state: str, reading) -> None:
    key = msg(3, "Escape", "urgent", "toolbar")
    assert ask(session(state), [msg(1), msg(2, "STOP", "urgent"), key], reading) == PressKeys(key)


def test_a_toolbar_slash_command_is_typed_alone_without_a_header_when_idle() -> None:
    compact = msg(2, "/compact", kind="command")
    assert ask(session("busy"), [compact]) == Hold("waiting for idle (busy)")
    assert ask(session(), [compact, msg(3)], IDLE) == Submit([compact], "/compact", True)
    assert ask(session(), [msg(1), compact], IDLE) == Submit([msg(1)], "[from owner] hi", True)
    # Confirmed by the prompt the agent reports, which is the command itself.
    inflight = replace(compact, status="inflight")
    assert ask(session("busy"), [inflight], prompts=("/compact",)) == Delivered([inflight], "hook")


# -- urgent -------------------------------------------------------------------------------------


def test_urgent_interrupts_a_busy_agent_then_waits_for_its_prompt() -> None:
    pending = [msg(2, "STOP", mode="urgent"), msg(1)]
    assert ask(session("busy"), pending) == Interrupt("Escape")
    assert ask(session("busy"), pending, interrupted_at=NOW - 0.2) == Look()
    assert ask(session("busy"), pending, BUSY, interrupted_at=NOW - 0.2) == Hold(
        "waiting for the prompt after an interrupt", TUNING.interrupt_poll)
    assert ask(session("busy"), pending, IDLE, interrupted_at=NOW - 0.2) == MarkIdle(
        "screen after interrupt")
    # The prompt never came back: interrupt again.
    assert ask(session("busy"), pending, interrupted_at=NOW - TUNING.interrupt_timeout) == Interrupt("Escape")


def test_urgent_goes_alone_to_an_idle_agent() -> None:
    pending = [msg(2, "STOP", mode="urgent"), msg(1)]
    assert ask(session(), pending, IDLE) == Submit([pending[0]], "[from owner] STOP", True)


# -- a batch in flight: confirmation, the Enter retry, max_attempts --------------------------


def test_a_submitted_prompt_that_carries_the_batch_confirms_it() -> None:
    batch = [msg(1, "a", status="inflight", attempts=1), msg(2, "b", status="inflight", attempts=1)]
    prompt = "[from owner] a\n\n[from owner] b"
    for s in (session("idle"), session("busy"), session("starting")):
        assert ask(s, batch, prompts=(prompt,), entered_at=NOW) == Delivered(batch, "hook")


def test_a_replayed_prompt_confirms_a_batch_a_crash_left_in_flight() -> None:
    batch = [msg(1, "a", status="inflight", attempts=1)]
    assert ask(session("busy"), batch, prompts=("[from owner] a",)) == Delivered(batch, "hook")


def test_a_prompt_confirms_only_the_messages_it_carries() -> None:
    batch = [msg(1, "old", status="inflight", attempts=1)]
    decision = ask(session(), batch, prompts=("[from owner] something else",), entered_at=NOW)
    assert isinstance(decision, Hold)
    # Claude turns a pasted tab into spaces: whitespace does not decide.
    tabbed = [msg(1, "a\tb", status="inflight", attempts=1)]
    assert ask(session(), tabbed, prompts=("[from owner] a    b",)) == Delivered(tabbed, "hook")


def test_after_an_enter_the_hook_is_waited_for_before_the_screen_is_read() -> None:
    batch = [msg(1, status="inflight", attempts=1)]
    decision = ask(session(), batch, entered_at=NOW - 0.5)
    assert decision == Hold("waiting for the agent to take the input", TUNING.confirm_timeout - 0.5)


@pytest.mark.parametrize("reading, attempts, expected", [
    # Our text is still in the box: Enter again, never a second paste.
    (typing("[from owner] hi"), 1, "resume"),
    (typing("[Pasted text #1 +3 lines]"), 2, "resume"),
    (UNKNOWN, 1, "resume"),                     # the box can't be seen: Enter, not a paste
    (typing("[from owner] hi"), TUNING.max_attempts, "fail"),
    # The box emptied after our Enter and no hook came: it went in.
    (IDLE, 1, "screen"),
    (typing("someone else's text"), 1, "hold"),
    (DIALOG, 1, "hold"),
])
def test_enter_retry_after_the_hook_did_not_come(reading, attempts: int, expected: str) -> None:
    batch = [msg(1, status="inflight", attempts=attempts)]
    decision = ask(session(), batch, reading, entered_at=NOW - TUNING.confirm_timeout)
    assert {
        "resume": Resume(batch),
        "fail": Fail(batch, f"submission not confirmed after {TUNING.max_attempts} attempts"),
        "screen": Delivered(batch, "screen", "busy"),
        "hold": decision if isinstance(decision, Hold) else None,
    }[expected] == decision


def test_a_batch_in_flight_is_finished_before_an_urgent_one_goes_in() -> None:
    pending = [msg(2, "STOP", mode="urgent"), msg(1, status="inflight", attempts=1)]
    decision = ask(session(), pending, typing("[from owner] hi"), entered_at=NOW - 5)
    assert decision == Resume([pending[1]])


@pytest.mark.parametrize("reading, expected", [
    (IDLE, "requeue"),                       # never went in: send it again
    (typing("[from owner] hi"), "resume"),   # pasted before the crash: Enter only
])
def test_after_a_crash_an_unconfirmed_batch_is_resumed_or_sent_again(reading, expected) -> None:
    batch = [msg(1, status="inflight", attempts=1)]
    decision = ask(session(), batch, reading)
    assert decision == {"requeue": Requeue(batch, "in flight when sm stopped; sent again"),
                        "resume": Resume(batch)}[expected]


def test_without_hooks_the_screen_confirms() -> None:
    batch = [msg(1, status="inflight", attempts=1)]
    s = session(provider="shell")
    assert ask(s, batch, entered_at=NOW - 0.01, provider=SHELL) == Look()
    assert ask(s, batch, typing("# [from owner]"), entered_at=NOW - 0.01, provider=SHELL) == Hold(
        "waiting for the screen to show the input taken", TUNING.screen_poll)
    assert ask(s, batch, BUSY, entered_at=NOW - 0.01, provider=SHELL) == Delivered(batch, "screen", "busy")


# -- clear --------------------------------------------------------------------------------------


def test_clear_waits_for_an_empty_box_and_goes_alone() -> None:
    pending = [msg(1, "clear", kind="clear"), msg(2, "then this")]
    assert ask(session(), pending, IDLE) == Clear(pending[0])
    assert isinstance(ask(session(), pending, typing("mine")), Hold)


@pytest.mark.parametrize("memory, expected", [
    ({"entered_at": NOW - 1, "cleared": True}, "delivered"),
    ({"entered_at": NOW - 1}, "hold"),
    ({"entered_at": NOW - TUNING.clear_timeout}, "fail"),
    ({}, "requeue"),  # in flight at a crash
])
def test_clear_is_confirmed_by_its_session_start(memory: dict, expected: str) -> None:
    clear = replace(msg(1, "clear", kind="clear"), status="inflight", attempts=1)
    decision = ask(session(), [clear], **memory)
    assert {
        "delivered": Delivered([clear], "clear", "idle"),
        "hold": Hold("waiting for the agent to clear", TUNING.clear_timeout - 1),
        "fail": Fail([clear], "clear not confirmed by the agent"),
        "requeue": Requeue([clear], "clear in flight when sm stopped; sent again"),
    }[expected] == decision
