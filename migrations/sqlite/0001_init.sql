-- cairn's embedded schema. Times are unix milliseconds.

CREATE TABLE journeys (
    id             TEXT PRIMARY KEY,
    name           TEXT NOT NULL,
    active_version TEXT NOT NULL,
    -- a disabled journey enrolls nobody; its runs go on
    enabled        INTEGER NOT NULL DEFAULT 1,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL
);

-- One row per deployed component (content hash). Runs pin their version.
CREATE TABLE journey_versions (
    hash        TEXT PRIMARY KEY,
    journey_id  TEXT NOT NULL REFERENCES journeys(id),
    meta        TEXT NOT NULL,
    component   BLOB NOT NULL,
    deployed_at INTEGER NOT NULL
);

CREATE TABLE runs (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    journey_id    TEXT NOT NULL,
    version       TEXT NOT NULL REFERENCES journey_versions(hash),
    user_id       TEXT NOT NULL,
    input         TEXT NOT NULL,
    -- active: its first step is due; waiting: suspended at a wait.
    status        TEXT NOT NULL CHECK (status IN ('active', 'waiting', 'completed', 'failed', 'exited')),
    -- steps committed so far; the next step's number
    step          INTEGER NOT NULL DEFAULT 0,
    checkpoint    TEXT,
    -- the registered wait (JSON), its event name, and when it is due
    wait          TEXT,
    wait_event    TEXT,
    due_at        INTEGER,
    -- the wake an event delivered, waiting to be resumed with (JSON)
    pending_wake  TEXT,
    -- the instance at its last wait (zstd, see host/src/snapshot/encode.rs);
    -- kept after a failure or an exit for inspection, dropped on completion
    snapshot      BLOB,
    -- random-u64 is derived from (seed, step, call): a re-run step sees the same values
    seed          INTEGER NOT NULL,
    failure       TEXT,
    -- why an exited run ended: exit-on:<event>, cancelled, user-deleted
    exit_reason   TEXT,
    -- the host executing its step, until when (system time), and the
    -- highest event id when it claimed the step (events after it may
    -- satisfy the wait the step registers)
    lease_owner   TEXT,
    lease_until   INTEGER,
    claim_watermark INTEGER,
    started_at    INTEGER NOT NULL,
    ceiling_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    ended_at      INTEGER
);
CREATE INDEX runs_due ON runs(due_at) WHERE status IN ('active', 'waiting');
CREATE INDEX runs_user_wait ON runs(user_id, wait_event) WHERE status = 'waiting';
CREATE INDEX runs_journey ON runs(journey_id, status);
-- At most one active or waiting run per user per journey.
CREATE UNIQUE INDEX runs_one_live ON runs(journey_id, user_id) WHERE status IN ('active', 'waiting');
CREATE INDEX runs_user ON runs(user_id, journey_id, started_at);

-- One row per committed step: the run's history. A step commits once.
CREATE TABLE steps (
    run_id   INTEGER NOT NULL,
    step     INTEGER NOT NULL,
    -- the step's logical time (what now() returned)
    at       INTEGER NOT NULL,
    -- started | timer-fired | timed-out | event:<name>
    woken_by TEXT NOT NULL,
    -- the event that woke it, if any
    event_id INTEGER,
    -- checkpoints, sends and logs, in order (JSON)
    effects  TEXT NOT NULL,
    -- every value the host handed the step's imports, by call index (JSON)
    journal  TEXT NOT NULL,
    -- how it ended: {"kind": "wait", ...} | {"kind": "completed"} | {"kind": "failed", "reason"}
    outcome  TEXT NOT NULL,
    committed_at INTEGER NOT NULL,
    PRIMARY KEY (run_id, step)
) WITHOUT ROWID;

CREATE TABLE outbox (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    key        TEXT NOT NULL UNIQUE,
    run_id     INTEGER NOT NULL,
    step       INTEGER NOT NULL,
    channel    TEXT NOT NULL,
    recipient  TEXT NOT NULL,
    template   TEXT NOT NULL,
    props      TEXT NOT NULL,
    category   TEXT NOT NULL,
    status     TEXT NOT NULL DEFAULT 'queued',
    created_at INTEGER NOT NULL
);
CREATE INDEX outbox_run ON outbox(run_id);

CREATE TABLE events (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id         TEXT NOT NULL,
    name            TEXT NOT NULL,
    properties      TEXT NOT NULL,
    timestamp       INTEGER NOT NULL,
    received_at     INTEGER NOT NULL,
    idempotency_key TEXT UNIQUE,
    -- what ingesting it did (JSON), returned again for a repeated key
    outcome         TEXT
);
CREATE INDEX events_user_name ON events(user_id, name, id);

-- Enrollments a trigger asked for but the entry rules refused.
CREATE TABLE skipped_enrollments (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id   INTEGER NOT NULL,
    journey_id TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    -- already-active | entry-limit | conditions-not-met | disabled | user-deleted
    reason     TEXT NOT NULL,
    at         INTEGER NOT NULL
);
CREATE INDEX skipped_user ON skipped_enrollments(user_id, journey_id);

-- The people journeys run for, by the product's user id.
CREATE TABLE contacts (
    user_id    TEXT PRIMARY KEY,
    email      TEXT,
    timezone   TEXT,
    properties TEXT NOT NULL DEFAULT '{}',
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    -- soft deletion (GDPR): personal data erased, runs exited, no new runs
    deleted_at INTEGER
);
