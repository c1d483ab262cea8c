-- Registry: enterprises (tenants), their sites, lines, process steps and equipment.
CREATE TABLE enterprise (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code        text NOT NULL UNIQUE,          -- also the Sparkplug group_id
    uscc        text NOT NULL UNIQUE,          -- unified social credit code
    name        text NOT NULL,
    region      text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE site (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    enterprise_id  bigint NOT NULL REFERENCES enterprise ON DELETE CASCADE,
    code           text NOT NULL,
    name           text NOT NULL,
    timezone       text NOT NULL,
    edge_node_id   text NOT NULL,              -- the site's gateway (Sparkplug edge node)
    UNIQUE (enterprise_id, code)
);

CREATE TABLE line (
    id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    site_id  bigint NOT NULL REFERENCES site ON DELETE CASCADE,
    code     text NOT NULL,
    name     text NOT NULL,
    UNIQUE (site_id, code)
);

CREATE TABLE process_step (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    line_id     bigint NOT NULL REFERENCES line ON DELETE CASCADE,
    code        text NOT NULL,
    name        text NOT NULL,
    is_key      boolean NOT NULL DEFAULT false,
    key_reason  text NOT NULL DEFAULT '',
    UNIQUE (line_id, code)
);

CREATE TABLE equipment (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    site_id       bigint NOT NULL REFERENCES site ON DELETE CASCADE,
    line_id       bigint REFERENCES line ON DELETE SET NULL,
    code          text NOT NULL,               -- also the Sparkplug device_id
    name          text NOT NULL,
    control_type  text NOT NULL CHECK (control_type IN ('CNC', 'PLC', 'DCS', 'ROBOT', 'MANUAL')),
    declared_nc   boolean NOT NULL,
    UNIQUE (site_id, code),
    CHECK (NOT (declared_nc AND control_type = 'MANUAL'))
);

CREATE TABLE process_equipment (
    process_step_id  bigint NOT NULL REFERENCES process_step ON DELETE CASCADE,
    equipment_id     bigint NOT NULL REFERENCES equipment ON DELETE CASCADE,
    PRIMARY KEY (process_step_id, equipment_id)
);

-- Telemetry: a series dictionary and narrow sample tables keyed by (series, time).
-- The primary keys make ingest idempotent: a redelivered sample is a no-op.
CREATE TABLE series (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    group_id      text NOT NULL,
    edge_node_id  text NOT NULL,
    device_id     text NOT NULL DEFAULT '',    -- '' for node-level metrics
    metric        text NOT NULL,
    datatype      smallint NOT NULL,           -- Sparkplug DataType
    equipment_id  bigint REFERENCES equipment ON DELETE SET NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (group_id, edge_node_id, device_id, metric)
);
CREATE INDEX series_equipment ON series (equipment_id, metric);

CREATE TABLE sample_num (
    series_id    bigint NOT NULL,
    ts           timestamptz NOT NULL,
    value        double precision,
    received_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (series_id, ts)
);
CREATE TABLE sample_bool (
    series_id    bigint NOT NULL,
    ts           timestamptz NOT NULL,
    value        boolean,
    received_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (series_id, ts)
);
CREATE TABLE sample_text (
    series_id    bigint NOT NULL,
    ts           timestamptz NOT NULL,
    value        text,
    received_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (series_id, ts)
);

-- Connectivity: node and device online sessions from births and deaths.
CREATE TABLE connectivity_session (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    group_id      text NOT NULL,
    edge_node_id  text NOT NULL,
    device_id     text NOT NULL DEFAULT '',    -- '' for the edge node itself
    equipment_id  bigint REFERENCES equipment ON DELETE SET NULL,
    online_at     timestamptz NOT NULL,
    offline_at    timestamptz,
    UNIQUE (group_id, edge_node_id, device_id, online_at)
);
CREATE INDEX connectivity_session_equipment ON connectivity_session (equipment_id, online_at);
CREATE UNIQUE INDEX connectivity_session_open
    ON connectivity_session (group_id, edge_node_id, device_id) WHERE offline_at IS NULL;

-- Everything the ingest could not use, with the reason and the raw bytes.
CREATE TABLE dead_letter (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at  timestamptz NOT NULL DEFAULT now(),
    topic        text NOT NULL,
    reason       text NOT NULL,
    detail       text NOT NULL DEFAULT '',
    payload      bytea NOT NULL
);
