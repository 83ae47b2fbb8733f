-- The Telegram door's tables, owner 'telegram' in the store's
-- `schema_versions`, one migration per section, applied in order when the
-- bot starts. Never edit a migration that has shipped; add the next one below.

-- migration 1: topics, the outbox and mirrored messages

-- Until these tables had their own owner, the engine's migration 2 made them
-- with exactly these columns: IF NOT EXISTS adopts them in such a database.

-- The forum topic that mirrors each session (one per session and chat).
CREATE TABLE IF NOT EXISTS topics (
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
CREATE TABLE IF NOT EXISTS outbox (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    chat_id     INTEGER NOT NULL,
    session_id  TEXT,                            -- the topic it goes to (NULL: the chat itself)
    kind        TEXT NOT NULL,                   -- text | document | card | topic | edit
    coalesce    TEXT,                            -- items with the same key replace older pending ones
    payload     TEXT NOT NULL,                   -- JSON
    status      TEXT NOT NULL DEFAULT 'pending', -- pending | sent | failed
    attempts    INTEGER NOT NULL DEFAULT 0,      -- failed tries, for a person reading the table
    error       TEXT,
    created_at  REAL NOT NULL,
    sent_at     REAL,
    message_id  INTEGER                          -- what Telegram called the message, once sent
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox(chat_id, status, id);

-- Which Telegram message mirrors which session, so a reply to it is input to that session.
CREATE TABLE IF NOT EXISTS mirrored (
    chat_id     INTEGER NOT NULL,
    message_id  INTEGER NOT NULL,
    session_id  TEXT NOT NULL,
    PRIMARY KEY (chat_id, message_id)
);

-- migration 2: permission prompts

-- Each permission request shown with Allow/Deny buttons, and how it ended.
-- It outlives sm-bot: a tap on a prompt from before a restart is answered
-- with its outcome, or "expired", from here.
CREATE TABLE permission_prompts (
    request_id  INTEGER PRIMARY KEY,             -- the engine's request id (random, never reused)
    chat_id     INTEGER NOT NULL,
    session_id  TEXT NOT NULL,
    item_id     INTEGER NOT NULL,                -- the outbox item of the message with the buttons
    tool        TEXT NOT NULL,
    outcome     TEXT,                            -- NULL while open; allowed | allowed always | denied | answered at the terminal | expired
    decided_by  TEXT,
    created_at  REAL NOT NULL
);
CREATE INDEX permission_prompts_open ON permission_prompts(outcome) WHERE outcome IS NULL;

-- migration 3: priority lanes, chatter folded into cards, what each message shows

-- The lane of each outbox item (bot/telegram/lanes.py): 0 actionable,
-- 1 conversation, 2 chatter. A folded item (status 'folded') became its
-- topic's card note instead of a message.
ALTER TABLE outbox ADD COLUMN lane INTEGER NOT NULL DEFAULT 1;
CREATE INDEX outbox_lanes ON outbox(chat_id, status, lane, id);

-- The latest chatter folded into a topic's pinned card under pressure.
ALTER TABLE topics ADD COLUMN note TEXT;

-- What each message sm sent or edited last shows (a digest of its text and
-- buttons), so that an edit to exactly that is never sent: Telegram refuses it
-- ("message is not modified") and counts it against the budget all the same.
CREATE TABLE shown (
    chat_id     INTEGER NOT NULL,
    message_id  INTEGER NOT NULL,
    digest      TEXT NOT NULL,
    PRIMARY KEY (chat_id, message_id)
);

-- migration 4: acknowledgements waiting for a delivery

-- A person's Telegram message whose queued message is not yet delivered. When
-- it is, sm reacts 👍 on the person's message (👎 and a reply with the reason
-- if it fails), and the row goes. Kept here, not in memory, so that a restart
-- between queueing and delivery still acknowledges it. Rows of messages never
-- settled go with retention.
CREATE TABLE acks (
    queued_id   INTEGER PRIMARY KEY,             -- the message in the engine's queue
    chat_id     INTEGER NOT NULL,
    message_id  INTEGER NOT NULL,                -- the person's Telegram message
    session_id  TEXT NOT NULL,
    created_at  REAL NOT NULL
);

-- migration 5: the topic you tune: its title, its notifications, its verbosity, its closing

-- How the topic notifies (a card button cycles it): all; actionable (only what
-- needs you rings, the rest is sent silently); muted (everything silent).
ALTER TABLE topics ADD COLUMN notify TEXT NOT NULL DEFAULT 'all';
-- The topic's own verbose choice (tool calls posted): NULL follows SM_TELEGRAM_VERBOSE.
ALTER TABLE topics ADD COLUMN verbose INTEGER;
-- When the title was last changed, so it changes at most once per rename_interval.
ALTER TABLE topics ADD COLUMN renamed_at REAL;

-- migration 6: permission prompts of every node

-- Request ids are per node (each node's engine draws its own), so the bot,
-- which shows every node's prompts (several hosts), keys a prompt by its
-- session and request: beta's request 3 is never alpha's request 3. `node` is
-- the node the session runs on ('' for this one): a restart of sm-bot expires
-- only this node's prompts; another node's hook is still waiting there.
CREATE TABLE permission_prompts_by_session (
    session_id  TEXT NOT NULL,
    request_id  INTEGER NOT NULL,                -- that node's request id
    node        TEXT NOT NULL DEFAULT '',        -- '' this node; else the node that asks
    chat_id     INTEGER NOT NULL,
    item_id     INTEGER NOT NULL,                -- the outbox item of the message with the buttons
    tool        TEXT NOT NULL,
    outcome     TEXT,                            -- NULL while open; allowed | allowed always | denied | answered at the terminal | expired
    decided_by  TEXT,
    created_at  REAL NOT NULL,
    PRIMARY KEY (session_id, request_id)
);
INSERT INTO permission_prompts_by_session (session_id, request_id, chat_id, item_id, tool, outcome, decided_by,
                                           created_at)
    SELECT session_id, request_id, chat_id, item_id, tool, outcome, decided_by, created_at FROM permission_prompts;
DROP TABLE permission_prompts;
ALTER TABLE permission_prompts_by_session RENAME TO permission_prompts;
CREATE INDEX permission_prompts_open ON permission_prompts(outcome) WHERE outcome IS NULL;
