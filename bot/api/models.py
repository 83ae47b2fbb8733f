"""The API's request and response bodies.

They are what the API parses and answers with, and `/openapi.json` is
generated from them (bot/api/openapi.py), so the description cannot drift
from the code. Requests are strict (a number is not a string, true is not a
number); responses allow fields added later, so a new field on a session
never breaks an answer.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError

from core.engine import PROVIDER_NAMES, SEND_MODES


def _utf8(value: str) -> str:
    # JSON may carry lone surrogates ("\udce9", what json.dumps makes of argv
    # bytes that are not UTF-8); no pane or database takes them.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise PydanticCustomError("utf8", "not valid UTF-8 text") from None
    return value


def _no_control(value: str) -> str:
    # A path with a newline or an escape byte reaches tmux and a shell as two lines.
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise PydanticCustomError("control", "control characters are not allowed here")
    return value


Text = Annotated[str, AfterValidator(_utf8)]
Line = Annotated[str, AfterValidator(_utf8), AfterValidator(_no_control)]
WEEK = 7 * 24 * 3600
Seconds = Annotated[float, Field(gt=0, le=WEEK, allow_inf_nan=False)]
Node = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,31}$")]  # core.config NODE_RE
Provider = Literal[PROVIDER_NAMES]  # type: ignore[valid-type]
Mode = Literal[SEND_MODES]  # type: ignore[valid-type]


class Request(BaseModel):
    model_config = ConfigDict(strict=True, allow_inf_nan=False)


class Query(BaseModel):
    """Query parameters arrive as text: numbers and booleans are read from it."""


class Reply(BaseModel):
    model_config = ConfigDict(extra="allow")


# -- requests ------------------------------------------------------------------------


class SpawnBody(Request):
    prompt: Text = Field("", description="the agent's first input; empty: none")
    name: Line | None = Field(None, description="letters, digits, . _ -; default: <provider>-<id>")
    provider: Provider = "claude"
    dir: Line | None = Field(None, description="working directory; default: the caller's")
    wait: Seconds | None = Field(None, description="wake the calling agent when the new one is idle, "
                                                   "or after this many seconds (at most a week)")
    worktree: Line | None = Field(None, description="start it in a new git worktree of the directory's "
                                                     "repository, on this branch (\"\": sm/<name>); null: no worktree")
    host: Node | None = Field(None, description="several hosts: the node to start it on (its directory is that "
                                                "node's); null: here")


class RenameBody(Request):
    name: Line


class SendBody(Request):
    text: Text
    mode: Mode = "sequential"


class WatchBody(Request):
    seconds: Seconds = Field(description="wake the caller at the latest after this many seconds (at most a week)")


class ClearBody(Request):
    prompt: Text = Field("", description="sent once the context is cleared; empty: none")


class LockBody(Request):
    reason: Text = Field(description="what you are doing, shown to other agents")


class SessionsQuery(Query):
    scope: Literal["all", "children", "others"] = Field(
        "all", description="others: live sessions in the caller's workspace (git root)")
    dir: Line | None = Field(None, description="others, for the owner: the directory whose workspace is meant "
                                               "(the CLI sends its own); an agent's is always its workdir")


class StatusQuery(Query):
    all: bool = Field(False, description="every undelivered message, not only the recent window's")


class OutputQuery(Query):
    lines: int = Field(40, ge=1, le=10_000)
    transcript: bool = Field(False, description="the last assistant messages instead of the screen")
    raw: bool = Field(False, description="the screen as it is, input box and footer included")


class UnlockQuery(Query):
    workspace: Line | None = Field(None, description="owner only: release this workspace's lock")


class ShareBody(Request):
    paths: list[Line] = Field(min_length=1, max_length=20, description="absolute paths of the files")
    to: Line | None = Field(None, description="'owner', or an ancestor's id or name; default: your own topic")
    caption: Text = Field("", max_length=1000, description="shown under the files")


class CostQuery(Query):
    session: Line | None = Field(None, description="the swarm of this session (it and its descendants); "
                                                   "default: the caller's own (the owner's: every session)")
    since: float | None = Field(None, gt=0, le=366 * 24 * 3600, allow_inf_nan=False,
                                description="count only model calls of the last this many seconds")


class HookPayload(BaseModel):
    """What Claude Code sends a hook on stdin, passed on as it is."""

    model_config = ConfigDict(extra="allow")


# -- responses -----------------------------------------------------------------------


class ErrorOut(BaseModel):
    error: str = Field(description="what went wrong, and what to do about it")
    status: int


class Link(Reply):
    state: str = Field(description="up, down, or refused (the service said no to sm's credentials)")
    detail: str
    since: float


class Health(Reply):
    ok: bool
    sessions: int = Field(description="live sessions")
    links: dict[str, Link] = Field(default_factory=dict,
                                   description="sm's links to the outside by name (telegram), as its doors report them")
    version: str = Field(description="the server's version (sm doctor compares it with the CLI's)")
    transcript_bytes_read: int = Field(0, description="bytes of transcripts read for usage since start "
                                                      "(each byte once: reads are incremental)")
    usage_reads_pending: int = Field(0, description="turns whose later usage reads (for lines written "
                                                    "after the turn's end) have not all run yet")


class Stopping(Reply):
    stopping: bool
    pid: int


class Usage(Reply):
    reported: bool = Field(description="false: the provider records no usage sm can read")
    input: int
    output: int
    cache_read: int
    cache_write: int
    cost: float | None = Field(description="USD; null when a model's price is unknown (tokens only)")
    models: list[str]


class SessionOut(Reply):
    id: str
    name: str
    parent_id: str | None
    provider: str
    workdir: str
    tmux_session: str
    pane_id: str | None
    state: str
    state_reason: str | None
    state_since: float
    agent_session_id: str | None
    transcript_path: str | None
    idle_reminded: int
    created_at: float
    last_activity: float
    usage: Usage | None = Field(None, description="tokens and cost so far (in lists and status)")
    worktree: str | None = Field(None, description="the git worktree sm made for it, while it exists")
    branch: str | None = Field(None, description="the branch of that worktree")


class SessionDetail(SessionOut):
    attach: list[str] = Field(description="the command that attaches a terminal to the session")
    queued: int = Field(description="messages waiting for it")


class Owner(Reply):
    name: Literal["owner"]


class QueuedSession(SessionOut):
    queued: int
    options: list[list[str]] | None = Field(None, description="waiting: the dialog's options as [keys, label]")


class Undelivered(Reply):
    id: int
    target: str
    from_: str = Field(alias="from")
    status: str
    error: str | None
    text: str


class LockOut(Reply):
    workspace: str
    holder: str
    holder_name: str | None
    reason: str
    auto: bool
    since: float


class InboxSize(Reply):
    files: int
    bytes: int


class WorktreeOut(Reply):
    session: str
    name: str | None = Field(description="its session's name while that lives")
    live: bool = Field(description="its session still runs in it")
    repo: str
    path: str
    branch: str
    base: str = Field(description="the branch (or commit) it came from")
    exists: bool
    dirty: bool | None = Field(description="uncommitted changes or untracked files (ignored files don't count)")
    ahead: int | None
    behind: int | None
    merged: bool | None = Field(description="its branch is merged into its base")
    remove: str = Field(description="the command that removes it, changes and all")
    merge: str | None = Field(None, description="the command that merges its branch where its base is "
                                                "checked out, then prunes it (when not merged)")


class Status(Reply):
    you: SessionOut | Owner
    sessions: list[QueuedSession]
    undelivered: list[Undelivered]
    undelivered_older: int = Field(0, description="undelivered messages older than the window, left out")
    undelivered_window: float | None = Field(None, description="seconds back undelivered are listed; "
                                                               "null with all=1")
    locks: list[LockOut]
    inbox: InboxSize = Field(description="files from the phone kept in the sessions' inboxes")
    links: dict[str, Link] = Field(default_factory=dict)
    worktrees: list[WorktreeOut] = Field([], description="worktrees kept after their session ended")


class Shared(Reply):
    to: str = Field(description="the session whose topic gets the files, or 'owner'")
    files: int


class ResumeOutcome(Reply):
    id: str
    name: str
    resumed: bool
    error: str | None


class CostRow(Reply):
    id: str
    name: str
    provider: str
    state: str
    parent_id: str | None
    usage: Usage


class Cost(Reply):
    root: str | None = Field(description="the session whose swarm this is; null: every session")
    since: float | None
    sessions: list[CostRow]
    total: Usage


class Pruned(Reply):
    removed: list[WorktreeOut]


class Queued(Reply):
    message: int
    target: str
    mode: str
    status: Literal["queued"] = "queued"


class Waiting(Reply):
    wait: int
    seconds: float


class Clearing(Reply):
    session: str
    status: Literal["queued"] = "queued"


class Output(Reply):
    output: str


class What(Reply):
    session: str
    name: str
    state: str
    summary: str
    source: Literal["summarizer", "fallback"]
    options: list[list[str]] = Field(default_factory=list, description="waiting: the dialog's options as [keys, label]")


class Replayed(Reply):
    replayed: int


class Locked(Reply):
    workspace: str
    reason: str


class Unlocked(Reply):
    workspace: str
    released: Literal[True] = True


HookOutput = dict[str, Any]  # printed by the hook for Claude Code, as Claude Code defines it
