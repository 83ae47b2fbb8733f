"""The outbox and the rate limiter, in-process, on virtual time, against the strict fake Bot API.

Time is passed in (telegram_harness.VirtualTime): it moves on only when
someone sleeps on it, by exactly as long as they asked, so a full rate window
takes no wall-clock time. (The minute-long outage is in test_telegram.py.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, AsyncIterator

import pytest

from bot.telegram.outbox import TEXT_LIMIT, Item, Outbox
from bot.telegram.ratelimit import RateLimiter
from telegram_harness import SID, OutboxRig, VirtualTime, outbox_rig

CHAT = OutboxRig.CHAT


# -- RateLimiter -----------------------------------------------------------------------------

async def test_a_group_gets_its_window_and_the_next_send_waits_for_the_oldest_to_leave_it() -> None:
    clock = VirtualTime()
    limiter = RateLimiter(group_per_window=20, window=60.0, clock=clock, sleep=clock.sleep)
    for _ in range(20):
        await limiter.acquire(CHAT)
    assert clock.slept == [] and clock.now == 1000.0  # twenty go at once
    await limiter.acquire(CHAT)
    assert clock.now == 1060.0  # the 21st, exactly when the first leaves the window


async def test_a_private_chat_gets_one_a_second_and_chats_do_not_share_a_window() -> None:
    clock = VirtualTime()
    limiter = RateLimiter(private_interval=1.0, clock=clock, sleep=clock.sleep)
    await limiter.acquire(42)
    await limiter.acquire(43)  # another person's chat: no wait
    assert clock.now == 1000.0
    await limiter.acquire(42)
    assert clock.now == 1001.0


async def test_the_whole_bot_gets_thirty_a_second() -> None:
    clock = VirtualTime()
    limiter = RateLimiter(global_per_second=30, clock=clock, sleep=clock.sleep)
    for chat in range(1, 31):
        await limiter.acquire(chat)
    assert clock.now == 1000.0
    await limiter.acquire(31)
    assert clock.now == 1001.0


async def test_slots_free_up_as_time_passes_without_anyone_waiting() -> None:
    clock = VirtualTime()
    limiter = RateLimiter(group_per_window=2, window=10.0, clock=clock, sleep=clock.sleep)
    await limiter.acquire(CHAT)
    clock.now += 5
    await limiter.acquire(CHAT)
    clock.now += 6  # the first has left the window, the second has not
    await limiter.acquire(CHAT)
    assert clock.slept == []
    await limiter.acquire(CHAT)
    assert clock.now == 1015.0  # waited for the second to leave


# -- Outbox._next_batch ----------------------------------------------------------------------

def text(item_id: int, html: str = "x", session: str | None = SID, **extra: Any) -> Item:
    return Item(item_id, CHAT, session, "text", None, {"html": html, **extra})


def other(item_id: int, kind: str, session: str | None = SID) -> Item:
    return Item(item_id, CHAT, session, kind, None, {"html": "card"})


@pytest.mark.parametrize("items, batch", [
    ([text(1), text(2), text(3)], [1, 2, 3]),                                    # one topic's texts ride together
    ([text(1), text(2, session="zzz"), text(3)], [1, 3]),                        # another topic's keep their own turn
    ([text(1), other(2, "card"), text(3)], [1]),                                 # never overtake a card of the topic
    ([text(1), other(2, "card", "zzz"), text(3)], [1, 3]),                       # ... another topic's card is no barrier
    ([other(1, "edit"), text(2)], [1]),                                          # a non-text goes alone
    ([text(1, reply_markup={"inline_keyboard": []}), text(2)], [1]),             # buttons go alone
    ([text(1), text(2, reply_to=5)], [1]),                                       # a reply goes alone
    ([text(1, reply_to=5), text(2)], [1]),
    ([text(1, session=None, thread_id=7), text(2, session=None, thread_id=8),
      text(3, session=None, thread_id=7)], [1, 3]),                              # no session: by thread
    ([text(1, "a" * 2000), text(2, "b" * 1990), text(3, "c" * 100)], [1, 2]),  # within one message
])
def test_next_batch(items: list[Item], batch: list[int]) -> None:
    assert [i.id for i in Outbox._next_batch(items)] == batch


def test_a_batch_never_exceeds_a_telegram_message() -> None:
    items = [text(i, "y" * 300) for i in range(1, 40)]
    batch = Outbox._next_batch(items)
    assert sum(len(i.payload["html"]) for i in batch) + 2 * (len(batch) - 1) <= TEXT_LIMIT
    assert [i.id for i in batch] == list(range(1, len(batch) + 1))


# -- the outbox against the fake Bot API -----------------------------------------------------

@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[OutboxRig]:
    async with outbox_rig(tmp_path) as r:
        yield r


async def test_a_stop_while_a_message_is_on_its_way_records_it_so_it_is_not_sent_again(rig: OutboxRig) -> None:
    """sm-bot's SIGTERM while Telegram has taken a message but not yet answered: the
    stop waits for the answer and records the message id, so a restart sends nothing twice."""
    import asyncio

    from telegram_harness import until

    await rig.topics.ensure(SID, CHAT, "eng · a1b2c3")
    await rig.topics.update(SID, thread_id=rig.fake.add_topic(CHAT, "eng · a1b2c3"))
    rig.fake.hold_answers = asyncio.Event()
    item_id = await rig.outbox.put(CHAT, "text", {"html": "on its way"}, SID)
    await until(lambda: "on its way" in rig.texts(), message="Telegram to take the message")
    stopping = asyncio.ensure_future(rig.outbox.stop())
    # The stop has cancelled the worker and now waits on the call; its answer is still held.
    await until(lambda: not rig.outbox._workers, message="the stop to cancel the worker")
    rig.fake.hold_answers.set()
    await stopping
    assert await rig.status(item_id) == "sent"
    assert await rig.outbox.message_id_of(item_id) is not None
    await rig.outbox.start()  # a restart finds nothing left to send
    assert rig.texts().count("on its way") == 1


async def test_repair_not_modified_counts_as_sent(rig: OutboxRig) -> None:
    item_id = await rig.outbox.put(CHAT, "edit", {"item": 999, "html": "same", "message_id": 7}, SID)
    item = Item(item_id, CHAT, SID, "edit", None, {"item": 999, "html": "same", "message_id": 7})
    await rig.outbox.stop()
    assert await rig.outbox._repair([item], "Telegram server says - Bad Request: message is not modified: "
                                            "specified new message content and reply markup are exactly the same")
    assert await rig.status(item_id) == "sent"
    assert await rig.outbox.message_id_of(item_id) == 7


async def test_repair_a_deleted_topic_is_forgotten_so_it_is_made_again(rig: OutboxRig) -> None:
    await rig.topics.ensure(SID, CHAT, "eng · a1b2c3")
    await rig.topics.update(SID, thread_id=55, card_message_id=56, closed=1)
    assert await rig.outbox._repair([text(1)], "Bad Request: message thread not found")
    topic = await rig.topics.get(SID)
    assert (topic.thread_id, topic.card_message_id, topic.closed) == (None, None, 0)


async def test_repair_a_closed_topic_is_reopened(rig: OutboxRig) -> None:
    thread = rig.fake.add_topic(CHAT, "eng · a1b2c3")
    await rig.bot.close_forum_topic(CHAT, thread)
    await rig.topics.ensure(SID, CHAT, "eng · a1b2c3")
    await rig.topics.update(SID, thread_id=thread, closed=1)
    assert await rig.outbox._repair([text(1)], "Bad Request: TOPIC_CLOSED")
    assert rig.fake.topics(CHAT)[thread]["closed"] is False
    assert (await rig.topics.get(SID)).closed == 0


async def test_repair_a_lost_card_is_posted_anew(rig: OutboxRig) -> None:
    await rig.topics.ensure(SID, CHAT, "eng · a1b2c3")
    await rig.topics.update(SID, card_message_id=56)
    assert await rig.outbox._repair([other(1, "card")], "Bad Request: message to edit not found")
    assert (await rig.topics.get(SID)).card_message_id is None


@pytest.mark.parametrize("item, error", [
    (text(1), "Bad Request: can't parse entities: Unsupported start tag \"x\" at byte offset 0"),
    (text(1, session=None), "Bad Request: message thread not found"),  # no topic of ours to make again
    (text(1), "Bad Request: message to edit not found"),                # only a card is posted anew
])
async def test_repair_gives_up_on_what_it_cannot_fix(rig: OutboxRig, item: Item, error: str) -> None:
    assert not await rig.outbox._repair([item], error)


async def test_a_message_into_a_topic_closed_by_a_person_reopens_it_and_arrives(rig: OutboxRig) -> None:
    await rig.outbox.put(CHAT, "text", {"html": "first"}, SID)
    await rig.fake.wait_for(lambda f: any("first" in t for t in rig.texts()))
    thread = (await rig.topics.get(SID)).thread_id
    rig.fake._chats[CHAT].topics[thread].closed = True  # closed in the app
    await rig.outbox.put(CHAT, "text", {"html": "second"}, SID)
    await rig.fake.wait_for(lambda f: "second" in rig.texts(thread))
    assert rig.fake.topics(CHAT)[thread]["closed"] is False
