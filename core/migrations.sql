-- sm's database schema, one migration per section, applied in order.
-- `PRAGMA user_version` records the last applied migration. Never edit a
-- migration that has shipped; add the next one below it.

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

-- migration 2: Telegram topics and the outbox

-- The forum topic that mirrors each session (one per session and chat).
CREATE TABLE topics (
    session_id       TEXT PRIMARY KEY REFERENCES sessions(id),
    chat_id          INTEGER NOT NULL,
    thread_id        INTEGER,                    -- NULL until Telegram created it
    name             TEXT NOT NULL,
    card_message_id  INTEGER,                    -- the pinned status card
    closed           INTEGER NOT NULL DEFAULT 0
);

-- Everything sm sends to Telegram, durable and in order per chat. The sender
-- coalesces consecutive texts for one topic, honours rate limits and 429s,
-- and never drops an item: after an outage everything goes out in order.
CREATE TABLE outbox (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    chat_id     INTEGER NOT NULL,
    session_id  TEXT,                            -- the topic it goes to (NULL: the chat itself)
    kind        TEXT NOT NULL,                   -- text | document | card | topic | ack
    coalesce    TEXT,                            -- items with the same key replace older pending ones
    payload     TEXT NOT NULL,                   -- JSON
    status      TEXT NOT NULL DEFAULT 'pending', -- pending | sent | failed
    attempts    INTEGER NOT NULL DEFAULT 0,
    error       TEXT,
    created_at  REAL NOT NULL,
    sent_at     REAL,
    message_id  INTEGER                          -- what Telegram called the message, once sent
);
CREATE INDEX outbox_pending ON outbox(chat_id, status, id);

-- Which Telegram message mirrors which session, so a reply to it is input to that session.
CREATE TABLE mirrored (
    chat_id     INTEGER NOT NULL,
    message_id  INTEGER NOT NULL,
    session_id  TEXT NOT NULL,
    PRIMARY KEY (chat_id, message_id)
);

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
