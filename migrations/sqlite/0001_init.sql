-- cairn's embedded schema. Times are unix milliseconds.
-- Every journey, run, event, contact and outbox row belongs to a tenant.

CREATE TABLE tenants (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    -- per-run limits (JSON, see host/src/durable/limits.rs); absent fields keep the defaults
    limits     TEXT NOT NULL DEFAULT '{}',
    -- delivery settings (JSON, see host/src/delivery/config.rs): providers, policy
    delivery   TEXT NOT NULL DEFAULT '{}',
    created_at INTEGER NOT NULL
);
-- The single-tenant default: the quick start runs as this tenant without keys.
INSERT INTO tenants (id, name, created_at) VALUES ('default', 'default', 0);

-- API keys: bearer tokens, stored as their sha-256, each mapping to a tenant.
CREATE TABLE api_keys (
    hash       TEXT PRIMARY KEY,
    tenant_id  TEXT NOT NULL REFERENCES tenants(id),
    label      TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);

CREATE TABLE journeys (
    tenant_id      TEXT NOT NULL REFERENCES tenants(id),
    id             TEXT NOT NULL,
    name           TEXT NOT NULL,
    active_version TEXT NOT NULL,
    -- a disabled journey enrolls nobody; its runs go on
    enabled        INTEGER NOT NULL DEFAULT 1,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

-- One row per deployed component (content hash). Runs pin their version.
CREATE TABLE journey_versions (
    tenant_id   TEXT NOT NULL,
    hash        TEXT NOT NULL,
    journey_id  TEXT NOT NULL,
    meta        TEXT NOT NULL,
    component   BLOB NOT NULL,
    deployed_at INTEGER NOT NULL,
    -- when it was last made the active version, and when it last stopped being it
    activated_at INTEGER NOT NULL,
    deactivated_at INTEGER,
    -- retired: no runs left and not active; the component bytes are dropped
    retired_at  INTEGER,
    PRIMARY KEY (tenant_id, hash),
    FOREIGN KEY (tenant_id, journey_id) REFERENCES journeys(tenant_id, id)
);

CREATE TABLE runs (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id     TEXT NOT NULL,
    journey_id    TEXT NOT NULL,
    version       TEXT NOT NULL,
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
    ended_at      INTEGER,
    FOREIGN KEY (tenant_id, version) REFERENCES journey_versions(tenant_id, hash)
);
-- Every index a step's commit must change costs a WAL page per step: the
-- journey and version indexes leave the status out, so they never change.
CREATE INDEX runs_due ON runs(due_at) WHERE status IN ('active', 'waiting');
CREATE INDEX runs_user_wait ON runs(tenant_id, user_id, wait_event) WHERE status = 'waiting';
CREATE INDEX runs_journey ON runs(tenant_id, journey_id);
CREATE INDEX runs_version ON runs(tenant_id, version);
-- At most one active or waiting run per user per journey.
CREATE UNIQUE INDEX runs_one_live ON runs(tenant_id, journey_id, user_id) WHERE status IN ('active', 'waiting');
CREATE INDEX runs_user ON runs(tenant_id, user_id, journey_id, started_at);

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

-- Messages a step sent, with the policy's verdict, and their delivery.
CREATE TABLE outbox (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id   TEXT NOT NULL,
    -- run:step:call or run:label: a send is queued once
    key         TEXT NOT NULL,
    run_id      INTEGER NOT NULL,
    step        INTEGER NOT NULL,
    user_id     TEXT NOT NULL,
    channel     TEXT NOT NULL,
    -- the address the policy checked (the user's email for an empty `to`)
    recipient   TEXT NOT NULL,
    template    TEXT NOT NULL,
    props       TEXT NOT NULL,
    category    TEXT NOT NULL,
    -- queued -> sending -> sent | dead (or back to queued to retry);
    -- suppressed | unsubscribed | frequency-capped: refused, never delivered
    status      TEXT NOT NULL CHECK (status IN ('queued', 'sending', 'sent', 'dead',
                    'suppressed', 'unsubscribed', 'frequency-capped')),
    -- not delivered before this (a send window's opening, a retry's backoff)
    not_before  INTEGER NOT NULL DEFAULT 0,
    attempts    INTEGER NOT NULL DEFAULT 0,
    -- the host delivering it, until when (system time)
    lease_owner TEXT,
    lease_until INTEGER,
    -- log | smtp | webhook, the provider's message id, and where it went
    provider    TEXT,
    provider_id TEXT,
    delivered_to TEXT,
    last_error  TEXT,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    sent_at     INTEGER
);
CREATE UNIQUE INDEX outbox_run_key ON outbox(run_id, key);
CREATE INDEX outbox_tenant ON outbox(tenant_id, status, id);
CREATE INDEX outbox_due ON outbox(not_before) WHERE status = 'queued';
CREATE INDEX outbox_leased ON outbox(lease_until) WHERE status = 'sending';
-- dead letters, listed and counted for operators
CREATE INDEX outbox_dead ON outbox(tenant_id, id) WHERE status = 'dead';
-- frequency caps count a user's recent messages
CREATE INDEX outbox_user ON outbox(tenant_id, user_id, created_at);

-- Unsubscribes: category '*' is every category.
CREATE TABLE preferences (
    tenant_id  TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    category   TEXT NOT NULL,
    subscribed INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, user_id, category)
) WITHOUT ROWID;

-- Addresses that bounced or complained (lowercase); suppressed_at marks the
-- ones no message goes to.
CREATE TABLE suppressions (
    tenant_id     TEXT NOT NULL,
    address       TEXT NOT NULL,
    hard_bounces  INTEGER NOT NULL DEFAULT 0,
    soft_bounces  INTEGER NOT NULL DEFAULT 0,
    complaints    INTEGER NOT NULL DEFAULT 0,
    reason        TEXT,
    suppressed_at INTEGER,
    updated_at    INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, address)
) WITHOUT ROWID;

-- Message templates (minijinja source, see host/src/delivery/templates.rs).
CREATE TABLE templates (
    tenant_id  TEXT NOT NULL,
    name       TEXT NOT NULL,
    source     TEXT NOT NULL,
    -- which blocks it defines (JSON)
    parts      TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, name)
);

-- Host-wide secrets every host sharing the database uses (the unsubscribe-link key).
CREATE TABLE host_secrets (
    name  TEXT PRIMARY KEY,
    value BLOB NOT NULL
);

CREATE TABLE events (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id       TEXT NOT NULL,
    user_id         TEXT NOT NULL,
    name            TEXT NOT NULL,
    properties      TEXT NOT NULL,
    timestamp       INTEGER NOT NULL,
    received_at     INTEGER NOT NULL,
    idempotency_key TEXT,
    -- what ingesting it did (JSON), returned again for a repeated key
    outcome         TEXT
);
-- a user's events in id order: the claim's per-user watermark, look-back
CREATE INDEX events_user ON events(tenant_id, user_id, id);
CREATE UNIQUE INDEX events_key ON events(tenant_id, idempotency_key) WHERE idempotency_key IS NOT NULL;

-- Enrollments a trigger asked for but the entry rules refused.
CREATE TABLE skipped_enrollments (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id  TEXT NOT NULL,
    event_id   INTEGER NOT NULL,
    journey_id TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    -- already-active | entry-limit | conditions-not-met | disabled | user-deleted
    reason     TEXT NOT NULL,
    at         INTEGER NOT NULL
);
CREATE INDEX skipped_user ON skipped_enrollments(tenant_id, user_id, journey_id);

-- The people journeys run for, by the product's user id.
CREATE TABLE contacts (
    tenant_id  TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    email      TEXT,
    timezone   TEXT,
    properties TEXT NOT NULL DEFAULT '{}',
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    -- soft deletion (GDPR): personal data erased, runs exited, no new runs
    deleted_at INTEGER,
    PRIMARY KEY (tenant_id, user_id)
);
