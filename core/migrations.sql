-- The engine's database schema, one migration per section, applied in order.
-- The `schema_versions` row of owner 'core' (and, for older sm, `PRAGMA
-- user_version`) records the last applied migration. Never edit a migration
-- that has shipped; add the next one below it. A door's own tables have a
-- migrations file of their own (bot/telegram/migrations.sql).

-- migration 1: sessions, the message queue and waits

-- One row per agent sm has started. Rows of dead sessions are kept for history.
CREATE TABLE sessions (
    id                TEXT PRIMARY KEY,          -- short id, 6 hex digits
    name              TEXT NOT NULL,             -- friendly name, unique among live sessions
    parent_id         TEXT REFERENCES sessions(id),
    provider          TEXT NOT NULL,             -- claude | codex | gemini | shell
    workdir           TEXT NOT NULL,
    tmux_session      TEXT NOT NULL,
    pane_id           TEXT,                      -- %N; NULL when the start failed
    token_hash        TEXT NOT NULL UNIQUE,      -- sha256 of the agent's SM_TOKEN
    state             TEXT NOT NULL,             -- starting | idle | busy | waiting | errored | dead
    state_reason      TEXT,                      -- why errored/dead/waiting
    state_since       REAL NOT NULL,
    agent_session_id  TEXT,                      -- Claude's own session id (changes on /clear)
    transcript_path   TEXT,
    idle_reminded     INTEGER NOT NULL DEFAULT 0,-- one idle reminder per idle spell
    created_at        REAL NOT NULL,
    last_activity     REAL NOT NULL
);
CREATE UNIQUE INDEX sessions_live_name ON sessions(name) WHERE state != 'dead';
CREATE INDEX sessions_parent ON sessions(parent_id);

-- The durable queue: every input to an agent, from any sender, is a row here
-- before the sender is answered. The deliverer moves it queued -> inflight ->
-- delivered (or failed, with the error kept).
CREATE TABLE messages (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    target_id     TEXT NOT NULL REFERENCES sessions(id),
    sender_id     TEXT,                          -- a session id; NULL for the owner or sm itself
    sender_label  TEXT NOT NULL,                 -- what the recipient sees: name, 'owner', 'sm'
    mode          TEXT NOT NULL,                 -- sequential | important | urgent
    kind          TEXT NOT NULL DEFAULT 'text',  -- text | clear
    body          TEXT NOT NULL,
    status        TEXT NOT NULL DEFAULT 'queued',-- queued | inflight | delivered | failed
    attempts      INTEGER NOT NULL DEFAULT 0,
    error         TEXT,
    created_at    REAL NOT NULL,
    delivered_at  REAL
);
CREATE INDEX messages_pending ON messages(target_id, status);

-- `sm wait` and `sm spawn --wait`: wake the waiter with a message when the
-- target is idle with nothing queued, or at the deadline.
CREATE TABLE waits (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    waiter_id   TEXT NOT NULL REFERENCES sessions(id),
    target_id   TEXT NOT NULL REFERENCES sessions(id),
    kind        TEXT NOT NULL DEFAULT 'wait',    -- wait | spawn
    created_at  REAL NOT NULL,
    deadline    REAL NOT NULL,
    fired_at    REAL,
    outcome     TEXT                             -- idle | timeout | dead
);
CREATE INDEX waits_pending ON waits(target_id) WHERE fired_at IS NULL;

-- migration 2: (moved) Telegram topics and the outbox

-- These tables belong to the Telegram door now: bot/telegram/migrations.sql
-- makes them, or adopts them in a database made before they moved. The
-- number stays so that every database keeps one meaning for version 3.

-- migration 3: workspace locks

-- One row per locked workspace (a git root, or a directory outside git). The
-- holder keeps it while its lease is renewed by activity; it dies with the
-- holder. `auto` locks were taken by the file-write hook and end with the turn.
CREATE TABLE locks (
    workspace    TEXT PRIMARY KEY,
    holder_id    TEXT NOT NULL REFERENCES sessions(id),
    reason       TEXT NOT NULL,
    auto         INTEGER NOT NULL DEFAULT 0,
    acquired_at  REAL NOT NULL,
    renewed_at   REAL NOT NULL
);

-- migration 4: a state's reason has a kind (behaviour reads the kind, people read the text)

ALTER TABLE sessions ADD COLUMN state_kind TEXT;  -- core.types.ReasonKind, NULL when no reason
UPDATE sessions SET state_kind = CASE
    WHEN state_reason LIKE 'agent exited%' THEN 'exited'
    WHEN state_reason LIKE 'failed to start%' THEN 'start failed'
    WHEN state_reason LIKE 'api error%' THEN 'api error'
    WHEN state_reason LIKE 'permission%' THEN 'permission'
    WHEN state_reason = 'question' THEN 'question'
    WHEN state_reason = 'plan' THEN 'plan'
    WHEN state_reason LIKE 'killed%' THEN 'killed'
    WHEN state_reason LIKE 'tmux session vanished%' THEN 'vanished'
    WHEN state = 'waiting' AND state_reason IS NOT NULL THEN 'dialog'
    ELSE NULL END;

-- migration 5: a limited session's next try

-- When a usage limit stops an agent, sm tries it again at this time (epoch
-- seconds): the reset the agent showed plus a margin, or a fixed retry.
-- Kept here so a restart while limited still resumes it on time.
ALTER TABLE sessions ADD COLUMN limit_resets_at REAL;

-- migration 6: worktrees, transcripts and token usage

-- `sm spawn --worktree`: the git worktree made for a session, on its own
-- branch. Removed when the session ends if clean and merged into `base`
-- (removed_at set); otherwise kept, and listed by `sm status` and `sm worktrees`.
CREATE TABLE worktrees (
    session_id  TEXT PRIMARY KEY REFERENCES sessions(id),
    repo        TEXT NOT NULL,                   -- the checkout it was made from (its git root)
    path        TEXT NOT NULL,                   -- the worktree's directory, the session's workdir
    branch      TEXT NOT NULL,                   -- e.g. sm/<name>
    base        TEXT NOT NULL,                   -- the branch (or commit) it came from
    created_at  REAL NOT NULL,
    removed_at  REAL                             -- NULL while it exists
);

-- Every transcript a session wrote (the current one, those from before each
-- /clear, its subagents'), and how far into it usage has been read (bytes).
CREATE TABLE transcripts (
    session_id  TEXT NOT NULL REFERENCES sessions(id),
    path        TEXT NOT NULL,
    offset      INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (session_id, path)
);

-- One row per model call of a session, counted once by its message id: the
-- tokens it used, from the transcript's `usage`. Cost is computed from these
-- with the configured prices, so a price change applies to the past too.
CREATE TABLE usage (
    session_id          TEXT NOT NULL REFERENCES sessions(id),
    message_id          TEXT NOT NULL,
    model               TEXT NOT NULL,
    input_tokens        INTEGER NOT NULL,
    output_tokens       INTEGER NOT NULL,
    cache_read_tokens   INTEGER NOT NULL,
    cache_write_tokens  INTEGER NOT NULL,
    at                  REAL NOT NULL,           -- when the call was answered (the transcript's timestamp)
    PRIMARY KEY (session_id, message_id)
);
CREATE INDEX usage_at ON usage(at);

-- migration 7: the model in force in a transcript

-- Codex's rollout names the model once per turn (its `turn_context` line), not
-- on each usage line: the last one read is kept, so that a read resuming at
-- `offset` prices the calls after it by the right model.
ALTER TABLE transcripts ADD COLUMN model TEXT;
