"""The Telegram door's own rules: it reaches the engine only through its facade, and keeps what it starts."""

from __future__ import annotations

import asyncio
import logging
import re

import pytest

from bot.telegram.background import Background
from bot.telegram.keyboards import (
    Action, Decision, DialogKey, PermissionAnswer, PermissionDecision, SessionAction, ToolbarPress,
)
from core.types import TOOLBAR
from conftest import ROOT
from telegram_harness import until

DOOR = ROOT / "bot" / "telegram"


def test_the_door_does_not_reach_into_the_engines_parts() -> None:
    offenders = []
    for path in DOOR.rglob("*.py"):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"engine\.(store|registry|queue|tmux|bus|permissions|resolve)\b|Caller\(None\)", line):
                offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert offenders == []


def test_callback_data_stays_within_64_bytes_and_reads_back() -> None:
    biggest = [SessionAction(action=a, sid="a1b2c3", confirmed=True) for a in Action]
    biggest += [PermissionAnswer(rid=2**31 - 1, d=d, sid="a1b2c3") for d in Decision]
    biggest += [DialogKey(sid="a1b2c3", key="9")]
    biggest += [ToolbarPress(sid="a1b2c3", key=key.name) for keys in TOOLBAR.values() for key in keys]
    for data in biggest:
        packed = data.pack()
        assert len(packed.encode()) <= 64, packed
        assert type(data).unpack(packed) == data
    # Buttons posted before the enums keep working: the values did not change.
    assert SessionAction.unpack("s:kill:a1b2c3:1").action is Action.kill
    assert PermissionDecision.unpack("p:17:always").d is Decision.always


async def test_a_background_failure_is_logged_and_its_task_kept_until_done(caplog) -> None:
    background = Background()
    release = asyncio.Event()

    async def fails() -> None:
        await release.wait()
        raise RuntimeError("the summariser broke")

    with caplog.at_level(logging.ERROR, logger="bot.telegram.background"):
        task = background.start(fails(), "what of a1b2c3")
        assert background.running == 1
        release.set()
        with pytest.raises(RuntimeError):
            await task
        await until(lambda: background.running == 0, message="the done callback")
    assert "what of a1b2c3 failed" in caplog.text and "the summariser broke" in caplog.text


async def test_stopping_cancels_what_is_still_running() -> None:
    background = Background()
    task = background.start(asyncio.Event().wait(), "forever")
    await background.stop()
    assert task.cancelled() and background.running == 0
