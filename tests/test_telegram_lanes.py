"""Priority lanes in the outbox: the pure choices as tables, then the outbox under a saturated budget.

The outbox runs in-process on virtual time against the strict fake Bot API
(telegram_harness.outbox_rig); a gate holds virtual time still while the test
puts more work in, so "the budget is spent right now" is a moment a test can stand in.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, AsyncIterator

import pytest

from bot.telegram.lanes import Lane, foldable, next_batch, room, to_fold
from bot.telegram.outbox import Item
from bot.telegram.ratelimit import RateLimiter
from telegram_harness import SID, OutboxRig, VirtualTime, outbox_rig, until

CHAT = OutboxRig.CHAT
A, C, T = Lane.ACTIONABLE, Lane.CONVERSATION, Lane.CHATTER
BUTTONS = {"inline_keyboard": [[{"text": "ok", "callback_data": "x"}]]}


def text(item_id: int, lane: Lane, session: str | None = SID, **extra: Any) -> Item:
    return Item(item_id, CHAT, session, "text", None, {"html": f"m{item_id}", **extra}, lane)


def card(item_id: int, session: str = SID) -> Item:
    return Item(item_id, CHAT, session, "card", None, {"html": "card"}, T)


# -- the pure parts ------------------------------------------------------------------------

@pytest.mark.parametrize("items, batch", [
    ([text(1, T), text(2, C), text(3, A)], [3]),                       # actionable overtakes everything
    ([text(1, T), text(2, C), text(3, C)], [2, 3]),                    # then conversation, coalesced
    ([text(1, T), text(2, T)], [1, 2]),                                 # chatter last, coalesced too
    ([text(1, A), text(2, C), text(3, A)], [1, 3]),                    # a lane rides only with its own lane
    ([text(1, C), text(2, C, reply_markup=BUTTONS), text(3, C)], [1]),  # never overtakes within its lane
    ([text(1, C), card(2), text(3, C)], [1, 3]),                       # another lane is no barrier
    ([text(1, A, session="zzz"), text(2, A)], [1]),                     # topics keep their own turn
    ([], []),
])
def test_next_batch_by_lane(items: list[Item], batch: list[int]) -> None:
    assert [i.id for i in next_batch(items)] == batch


@pytest.mark.parametrize("sent, lane, fits", [
    (0, C, True), (14, C, True), (15, C, False), (15, T, False), (19, C, False),  # 20 less a reserve of 5
    (15, A, True), (19, A, True), (20, A, False),                                  # the reserve is the prompt's
])
def test_room_keeps_the_reserve_for_the_actionable_lane(sent: int, lane: Lane, fits: bool) -> None:
    assert room(sent, 20, 5, lane) is fits


@pytest.mark.parametrize("item, folds", [
    (text(1, T), True),
    (text(1, C), False),                        # conversation is delayed, never folded
    (text(1, A), False),
    (text(1, T, reply_markup=BUTTONS), False),  # buttons must be pressable
    (text(1, T, session=None), False),          # no card to fold into
    (card(1), False),
])
def test_what_folds_into_a_card(item: Item, folds: bool) -> None:
    assert foldable(item) is folds
    assert to_fold([item], pressed=False) == []


async def test_the_limiter_makes_other_lanes_wait_while_the_reserve_is_free() -> None:
    clock = VirtualTime()
    limiter = RateLimiter(group_per_window=20, window=60.0, reserve=5, clock=clock, sleep=clock.sleep)
    for _ in range(15):
        await limiter.acquire(CHAT, C)
    assert limiter.delay(CHAT, C) == 60.0 and limiter.delay(CHAT, T) == 60.0
    assert limiter.delay(CHAT, A) == 0.0
    for _ in range(5):
        await limiter.acquire(CHAT, A)
    assert clock.now == 1000.0  # the reserve went at once
    await limiter.acquire(CHAT, A)
    assert clock.now == 1060.0


async def test_a_call_made_with_another_send_is_counted_but_never_waited_for() -> None:
    # A topic's creation or a card's pin: the chatter lane is full, yet nothing sleeps,
    # and the reserve stays the actionable lane's.
    clock = VirtualTime()
    limiter = RateLimiter(group_per_window=20, window=60.0, reserve=5, clock=clock, sleep=clock.sleep)
    for _ in range(15):
        await limiter.acquire(CHAT, C)
    limiter.note(CHAT)
    assert clock.slept == [] and limiter.delay(CHAT, C) == 60.0
    for _ in range(4):
        await limiter.acquire(CHAT, A)
    assert clock.now == 1000.0
    await limiter.acquire(CHAT, A)
    assert clock.now == 1060.0  # the noted call used a slot of the window


# -- the outbox under a saturated budget -------------------------------------------------

class GatedTime(VirtualTime):
    """Virtual time that stands still on a long sleep until the test opens the gate."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.held = 0

    async def sleep(self, seconds: float) -> None:
        if seconds > 1 and not self.gate.is_set():
            self.held += 1
            await self.gate.wait()
        await super().sleep(seconds)


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[OutboxRig]:
    async with outbox_rig(tmp_path) as r:
        yield r


async def settled(rig: OutboxRig, item: int, timeout: float = 10.0) -> str:
    deadline = asyncio.get_running_loop().time() + timeout
    while (status := await rig.status(item)) == "pending":
        assert asyncio.get_running_loop().time() < deadline, f"item {item} still pending"
        await asyncio.sleep(0.01)
    return status


def sent_texts(rig: OutboxRig) -> list[str]:
    return [m["text"] for m in rig.fake.messages(CHAT) if m["text"]]


async def test_a_prompt_overtakes_a_saturated_budget_and_chatter_folds_into_the_card(rig: OutboxRig) -> None:
    clock = GatedTime()
    clock.now = rig.clock.now
    rig.fake.clock = clock
    rig.limiter = RateLimiter(reserve=5, clock=clock, sleep=clock.sleep)
    await rig.outbox.stop()
    rig.outbox._limiter, rig.outbox._clock, rig.outbox._sleep = rig.limiter, clock, clock.sleep
    await rig.outbox.start()

    await settled(rig, await rig.outbox.put(CHAT, "card", {"html": "eng: idle"}, SID,
                                            coalesce=f"card:{SID}", lane=T))
    for n in range(20):  # each with buttons, so none coalesce: twenty sends
        await rig.outbox.put(CHAT, "text", {"html": f"answer {n}", "reply_markup": BUTTONS}, SID, lane=C)
    # The topic, the card and its pin, then answers, until 15 of the 20 are spent: the rest waits.
    await until(lambda: clock.held, message="the conversation lane to wait for room")
    assert len(sent_texts(rig)) == 1 + 12
    budget_spent_at = clock.now

    for n in range(3):
        await rig.outbox.put(CHAT, "text", {"html": f"spawned helper {n}"}, SID, lane=T)
    prompt = await rig.outbox.put(CHAT, "text", {"html": "✋ Bash needs permission", "reply_markup": BUTTONS},
                                  SID, lane=A)
    await until(lambda: "✋ Bash needs permission" in sent_texts(rig), message="the prompt")
    assert clock.now == budget_spent_at  # it did not wait for the window
    assert await settled(rig, prompt) == "sent"
    row = await rig.store.fetchone("SELECT sent_at FROM outbox WHERE id = ?", (prompt,))
    assert row[0] == budget_spent_at
    # Chatter under pressure is folded, not posted (and not lost: the card will show it).
    assert not any("spawned helper" in t for t in sent_texts(rig))
    folded = await rig.store.fetchall("SELECT status FROM outbox WHERE payload LIKE '%spawned helper%'")
    assert [r[0] for r in folded] == ["folded"] * 3

    clock.gate.set()  # time moves on: the window frees up
    await until(lambda: sum("answer" in t for t in sent_texts(rig)) == 20, message="every answer")
    answers = [t for t in sent_texts(rig) if t.startswith("answer")]
    assert answers == [f"answer {n}" for n in range(20)]  # delayed, in order, none lost
    card_message = (await rig.topics.get(SID)).card_message_id
    await until(lambda: "spawned helper 2" in (rig.fake.message(CHAT, card_message) or {}).get("text", ""),
                message="the card to show the latest folded chatter")
    assert rig.fake.rejected == []  # nothing refused: no 429, no "not modified"
    for item in await rig.store.fetchall("SELECT id FROM outbox"):
        assert await settled(rig, item[0]) in ("sent", "folded")


async def test_an_edit_to_what_a_message_already_shows_is_never_sent(rig: OutboxRig) -> None:
    for html in ("eng: busy", "eng: busy", "eng: idle", "eng: idle"):
        item = await rig.outbox.put(CHAT, "card", {"html": html, "reply_markup": BUTTONS}, SID, lane=T)
        await settled(rig, item)
    card_message = (await rig.topics.get(SID)).card_message_id
    assert rig.fake.message(CHAT, card_message)["text"] == "eng: idle"
    assert len(rig.fake.sent("editMessageText")) == 1  # busy -> idle; the repeats cost nothing
    assert rig.fake.rejected == []
