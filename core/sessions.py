"""Sessions: agents sm started in tmux, their identity, names and family tree.

The registry keeps every live session in memory (write-through to SQLite), so
reads on the hot paths (auth, state checks) never touch the disk.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

from core.errors import Conflict, Invalid, NotFound
from core.store import Store
from core.types import Reason, ReasonKind, State

NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9._-]{0,39}$")
ID_RE = re.compile(r"^[0-9a-f]{6}$")



def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# Names that would read as sm itself, the person, or everyone in a sender header.
RESERVED_NAMES = frozenset({"sm", "owner", "telegram", "all"})


def validate_name(name: str) -> str:
    if not NAME_RE.match(name or ""):
        raise Invalid(
            f"invalid name {name!r}: use 1-40 letters, digits, '.', '_' or '-', starting with a letter"
        )
    if name.lower() in RESERVED_NAMES:
        raise Invalid(f"the name {name!r} is reserved (sm, owner, telegram and all are); choose another")
    return name


@dataclass
class Session:
    id: str
    name: str
    parent_id: str | None
    provider: str
    workdir: str
    tmux_session: str
    pane_id: str | None
    token_hash: str
    state: State
    state_reason: str | None  # the reason's text, for people
    state_since: float
    agent_session_id: str | None
    transcript_path: str | None
    idle_reminded: int
    created_at: float
    last_activity: float
    state_kind: ReasonKind | None = None  # the reason's kind, which behaviour reads
    limit_resets_at: float | None = None  # limited: when sm tries it again (core/limits.py)

    def __post_init__(self) -> None:
        self.state = State(self.state)
        if self.state_kind is not None:
            self.state_kind = ReasonKind(self.state_kind)

    @property
    def reason(self) -> Reason | None:
        if self.state_kind is None:
            return None
        return Reason(self.state_kind, self.state_reason or "")

    @property
    def live(self) -> bool:
        return self.state != State.DEAD

    @property
    def gone(self) -> bool:
        """Its agent process exited or never started: nothing can be delivered to it."""
        return self.state == State.ERRORED and self.state_kind in (ReasonKind.EXITED, ReasonKind.START_FAILED)

    @property
    def label(self) -> str:
        return f"{self.name} ({self.id})"

    def public(self) -> dict[str, Any]:
        """The fields the API and CLI show (never the token hash)."""
        out = asdict(self)
        out.pop("token_hash")
        out["state"] = self.state.value
        out["state_kind"] = self.state_kind.value if self.state_kind else None
        return out


class SessionRegistry:
    def __init__(self, store: Store, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock
        self._live: dict[str, Session] = {}
        # Every session's parent, the dead included: a dead middle generation
        # must not cut an agent off from its grandchildren.
        self._parents: dict[str, str | None] = {}

    async def load(self) -> None:
        rows = await self._store.fetchall("SELECT * FROM sessions WHERE state != 'dead'")
        self._live = {row["id"]: Session(**dict(row)) for row in rows}
        self._parents = {r[0]: r[1] for r in await self._store.fetchall("SELECT id, parent_id FROM sessions")}

    # -- lookups --------------------------------------------------------------------

    def live(self) -> list[Session]:
        return sorted(self._live.values(), key=lambda s: s.created_at)

    def get_live(self, session_id: str) -> Session | None:
        return self._live.get(session_id)

    def by_token(self, token: str) -> Session | None:
        digest = token_hash(token)
        for session in self._live.values():
            if secrets.compare_digest(session.token_hash, digest):
                return session
        return None

    async def resolve(self, ref: str) -> Session:
        """A session by id or friendly name: live ones first, then the dead by id."""
        ref = (ref or "").strip()
        if not ref:
            raise Invalid("no session given: name one by its id or name")
        if ref in self._live:
            return self._live[ref]
        for session in self._live.values():
            if session.name == ref:
                return session
        row = await self._store.fetchone("SELECT * FROM sessions WHERE id = ?", (ref,))
        if row is None:
            row = await self._store.fetchone(
                "SELECT * FROM sessions WHERE name = ? ORDER BY created_at DESC LIMIT 1", (ref,)
            )
        if row is None:
            raise NotFound(f"no session {ref!r}: see `sm status` for the sessions there are")
        return Session(**dict(row))

    def children(self, parent_id: str | None) -> list[Session]:
        return [s for s in self.live() if s.parent_id == parent_id]

    def depth(self, session: Session) -> int:
        """Generations below the owner: 1 for a session the owner started."""
        depth, current, seen = 0, session.id, set()
        parents = dict(self._parents)
        parents[session.id] = session.parent_id
        while current and current not in seen:
            seen.add(current)
            depth += 1
            current = parents.get(current)
        return depth

    def descends_from(self, session_id: str, ancestor_id: str) -> bool:
        """`session_id` is `ancestor_id` or below it, the dead included (by id)."""
        seen: set[str] = set()
        current: str | None = session_id
        while current and current not in seen:
            if current == ancestor_id:
                return True
            seen.add(current)
            current = self._parents.get(current)
        return False

    def is_self_or_descendant(self, candidate: Session, ancestor_id: str) -> bool:
        seen: set[str] = set()
        current: str | None = candidate.id
        parents = dict(self._parents)
        parents[candidate.id] = candidate.parent_id
        while current and current not in seen:
            if current == ancestor_id:
                return True
            seen.add(current)
            current = parents.get(current)
        return False

    # -- changes --------------------------------------------------------------------

    def new_id(self) -> str:
        while True:
            candidate = secrets.token_hex(3)
            if candidate not in self._parents:  # ids of the dead are never reused
                return candidate

    def check_name_free(self, name: str, except_id: str | None = None) -> None:
        validate_name(name)
        if ID_RE.match(name):
            raise Invalid(f"invalid name {name!r}: it looks like a session id")
        for session in self._live.values():
            if session.name == name and session.id != except_id:
                raise Conflict(f"name {name!r} is taken by live session {session.id}")

    async def create(self, session: Session) -> None:
        fields = asdict(session)
        columns = ", ".join(fields)
        marks = ", ".join("?" for _ in fields)
        # Claimed in memory first: a concurrent spawn with the same name sees it.
        self.check_name_free(session.name)
        self._live[session.id] = session
        self._parents[session.id] = session.parent_id
        try:
            await self._store.execute(
                f"INSERT INTO sessions ({columns}) VALUES ({marks})", list(fields.values())
            )
        except Exception:
            self._live.pop(session.id, None)
            self._parents.pop(session.id, None)
            raise

    async def update(self, session: Session, **changes: Any) -> None:
        for key, value in changes.items():
            setattr(session, key, value)
        assignments = ", ".join(f"{key} = ?" for key in changes)
        await self._store.execute(
            f"UPDATE sessions SET {assignments} WHERE id = ?", [*changes.values(), session.id]
        )
        if session.state == "dead":
            self._live.pop(session.id, None)

    def known(self, session_id: str) -> bool:
        """A session with a row here: this node's (live or dead), or another's remembered."""
        return session_id in self._parents

    async def remember_remote(self, session: Session) -> None:
        """A session of another node that is the parent of one here: a row (dead here, so
        never listed, resolved or delivered to locally) that the family tree and the
        foreign key can point to."""
        self._parents.setdefault(session.id, session.parent_id)
        if await self._store.fetchone("SELECT 1 FROM sessions WHERE id = ?", (session.id,)) is not None:
            return
        fields = asdict(session)
        fields.update(state="dead", pane_id=None, tmux_session="", parent_id=None,
                      token_hash=f"remote:{session.id}", state_reason="a session on another node")
        await self._store.execute(
            f"INSERT INTO sessions ({', '.join(fields)}) VALUES ({', '.join('?' for _ in fields)})",
            [getattr(v, "value", v) for v in fields.values()])

    def touch(self, session: Session) -> None:
        session.last_activity = self._clock()
