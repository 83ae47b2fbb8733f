"""The Telegram link: up, down or refused, as every Bot API request shows it.

Every request the bot makes (getMe, polling, the outbox's sends) passes
through `LinkWatch`, an aiogram request middleware. Any answer from Telegram
means the link is up; a network error, a 5xx or a timeout means down; a 401
means the token is refused; while it is, one request per `refused_retry`
seconds goes out (it asks again whether the token was fixed) and the rest
fail here, as a network error would, so the outbox keeps its rows for later
and Telegram is not hammered with a bad token. A change is logged once and
reported to the
engine (`engine.report_link`), which shows it in `sm status` and `/health`:
an outage of hours is one line when it starts and one when it ends, however
many requests failed in between.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Callable

from aiogram.client.session.middlewares.base import BaseRequestMiddleware, NextRequestMiddlewareType
from aiogram.exceptions import (
    ClientDecodeError,
    TelegramNetworkError,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.methods import TelegramMethod
from aiogram.methods.base import Response, TelegramType

log = logging.getLogger(__name__)

UP, DOWN, REFUSED, CONNECTING = "up", "down", "refused", "connecting"
UNREACHABLE = (TelegramNetworkError, TelegramServerError, ClientDecodeError, OSError, asyncio.TimeoutError)


def refused_text(exc: TelegramUnauthorizedError) -> str:
    return f"the token was refused ({exc.message}); get a new one from @BotFather"


class LinkWatch(BaseRequestMiddleware):
    """Tracks the link from every request's outcome; `report(state, detail)` on each change."""

    def __init__(self, report: Callable[[str, str], Any], refused_retry: float) -> None:
        self.state = CONNECTING
        self._report = report
        self._refused_retry = refused_retry
        self._asked_at = float("-inf")  # the last request let through while refused

    def set(self, state: str, detail: str = "") -> None:
        if state == self.state:
            return
        previous, self.state = self.state, state
        if state == UP:
            if previous == CONNECTING:
                log.info("Telegram reachable")
            else:
                log.warning("Telegram reachable again (was %s)", previous)
        elif state == DOWN:
            log.warning("Telegram is not reachable (%s); sm keeps working, the bot keeps trying "
                        "and the outbox sends everything once it is back", detail)
        elif state == REFUSED:
            log.error("Telegram: %s; the API and the CLI keep working, and the bot asks again every %.0fs",
                      detail, self._refused_retry)
        self._report(state, detail)

    async def __call__(self, make_request: NextRequestMiddlewareType[TelegramType], bot: Any,
                       method: TelegramMethod[TelegramType]) -> Response[TelegramType]:
        if self.state == REFUSED:
            now = time.monotonic()
            if now - self._asked_at < self._refused_retry:
                raise TelegramNetworkError(method, "the bot token is refused; not asking Telegram again yet")
            self._asked_at = now
        try:
            response = await make_request(bot, method)
        except TelegramUnauthorizedError as exc:
            self.set(REFUSED, refused_text(exc))
            raise
        except UNREACHABLE as exc:
            self.set(DOWN, f"{type(exc).__name__}: {exc}"[:300])
            raise
        except asyncio.CancelledError:
            raise
        except Exception:
            self.set(UP)  # Telegram answered (a 400, a 429): the link itself works
            raise
        self.set(UP)
        return response


class QuietPollingErrors(logging.Filter):
    """aiogram logs two lines per failed poll, forever; LinkWatch says it once."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = str(record.msg)
        return not (text.startswith("Failed to fetch updates") or text.startswith("Sleep for")
                    or text.startswith("Connection established"))
