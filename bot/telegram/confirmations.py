"""One-time confirmations for the buttons that destroy something (Kill, Clear).

The "Yes" button carries a random nonce that the bot issued for exactly that
action, session and chat; a press is honoured once, within ten minutes. Callback
data is only text a client sends, so a forged "confirmed" press (or a replayed
one, or one from another chat) finds no nonce and does nothing. Kept in memory
on purpose: after a restart an old "Yes" asks to be pressed anew, which is the
safe answer for a destructive button.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Callable

TTL = 600.0


@dataclass(frozen=True)
class _Pending:
    action: str
    session_id: str
    chat_id: int
    expires: float


class Confirmations:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._pending: dict[str, _Pending] = {}

    def issue(self, action: str, session_id: str, chat_id: int) -> str:
        now = self._clock()
        self._pending = {n: p for n, p in self._pending.items() if p.expires > now}
        nonce = secrets.token_hex(6)
        self._pending[nonce] = _Pending(action, session_id, chat_id, now + TTL)
        return nonce

    def take(self, nonce: str, action: str, session_id: str, chat_id: int) -> bool:
        """True once for a nonce issued for this action, session and chat, and not expired."""
        pending = self._pending.get(nonce)
        if pending is None or pending != _Pending(action, session_id, chat_id, pending.expires):
            return False
        del self._pending[nonce]
        return pending.expires > self._clock()
