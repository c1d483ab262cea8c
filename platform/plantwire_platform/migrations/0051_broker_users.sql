-- Who may connect to the broker: the platform's host identity and one credential per gateway,
-- hashed as Mosquitto reads them; a revoked credential is kept for the record.
CREATE TABLE broker_user (
    username       text PRIMARY KEY,
    group_id       text NOT NULL DEFAULT '',    -- a gateway's Sparkplug group; '' for the host
    edge_node_id   text NOT NULL DEFAULT '',    -- a gateway's edge node; '' for the host
    password_hash  text NOT NULL,
    issued_at      timestamptz NOT NULL DEFAULT now(),
    revoked_at     timestamptz
);
