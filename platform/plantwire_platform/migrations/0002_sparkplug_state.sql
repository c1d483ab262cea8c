-- Sparkplug host state shared by every ingest worker through the database, so any worker can
-- take any message of a shared subscription: births with their alias tables, node sequence
-- ledgers, deaths and rebirth requests.

-- Series learn when their node or device died (Sparkplug "stale").
ALTER TABLE series ADD COLUMN stale_since timestamptz;

-- One row per edge node: its current birth, sequence ledger and last rebirth request.
CREATE TABLE sparkplug_node (
    group_id              text NOT NULL,
    edge_node_id          text NOT NULL,
    bd_seq                bigint,
    birth_ts              bigint,        -- NBIRTH payload timestamp (ms, edge clock)
    online                boolean NOT NULL DEFAULT false,
    born_at               timestamptz,
    died_at               timestamptz,
    death_bd_seq          bigint,        -- bdSeq of the last NDEATH (may arrive before its birth)
    seq_birth_ts          bigint,        -- the birth the ledger below follows
    seq_expected          smallint,      -- next seq expected; NULL: adopt the next one seen
    seq_ahead             bytea NOT NULL DEFAULT '\x'::bytea,  -- 128-bit mask of seqs seen ahead
    seq_hole_since        timestamptz,
    seq_gaps              bigint NOT NULL DEFAULT 0,
    rebirth_requested_at  timestamptz,
    rebirth_requests      bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (group_id, edge_node_id)
);

-- Births (node: device_id '') with their metric tables; data is resolved against them.
CREATE SEQUENCE sparkplug_change_seq;
CREATE TABLE sparkplug_birth (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    group_id      text NOT NULL,
    edge_node_id  text NOT NULL,
    device_id     text NOT NULL DEFAULT '',
    birth_ts      bigint NOT NULL,        -- payload timestamp (ms, edge clock)
    bd_seq        bigint,
    received_at   timestamptz NOT NULL DEFAULT now(),
    worker        text NOT NULL DEFAULT '',  -- the ingest worker that stored it
    death_ts      bigint,                 -- DDEATH payload timestamp / NDEATH arrival (ms)
    change_id     bigint NOT NULL DEFAULT nextval('sparkplug_change_seq'),
    names         text[] NOT NULL,
    aliases       bigint[] NOT NULL,      -- NULL element: metric without alias
    series_ids    bigint[] NOT NULL,
    datatypes     smallint[] NOT NULL,
    transient     boolean[] NOT NULL,     -- is_transient: not to be historised
    UNIQUE (group_id, edge_node_id, device_id, birth_ts)
);
CREATE INDEX sparkplug_birth_change ON sparkplug_birth (change_id);

-- Lifecycle events (births, deaths, seq gaps, rebirth requests) and alarm/event metrics.
CREATE TABLE event (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ts            timestamptz NOT NULL,
    group_id      text NOT NULL,
    edge_node_id  text NOT NULL,
    device_id     text NOT NULL DEFAULT '',
    kind          text NOT NULL CHECK (kind IN ('node_birth', 'node_death', 'device_birth',
                      'device_death', 'seq_gap', 'rebirth_request', 'alarm', 'event')),
    name          text NOT NULL DEFAULT '',   -- metric name for alarm/event
    series_id     bigint,
    value         text,
    received_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (group_id, edge_node_id, device_id, kind, name, ts)
);
CREATE INDEX event_ts ON event (ts);

-- Dead letters keep the raw bytes; index by reason and time for operators.
CREATE INDEX dead_letter_reason ON dead_letter (reason, received_at);
ALTER TABLE dead_letter ADD COLUMN worker text NOT NULL DEFAULT '';
