-- Partner data interface: API clients, the catalog of datasets an enterprise offers, grants from
-- a supplier to a partner enterprise, and the append-only, hash-chained audit of every access.

CREATE TABLE partner_client (
    id             text PRIMARY KEY,
    enterprise_id  bigint REFERENCES enterprise ON DELETE CASCADE,   -- NULL: platform admin
    role           text NOT NULL
                   CHECK (role IN ('platform_admin', 'enterprise_admin', 'partner')),
    name           text NOT NULL DEFAULT '',
    created_at     timestamptz NOT NULL DEFAULT now(),
    disabled_at    timestamptz,
    CHECK ((role = 'platform_admin') = (enterprise_id IS NULL))
);

-- Several secrets may be valid at once: rotation adds one and lets the older ones expire.
CREATE TABLE partner_secret (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    client_id   text NOT NULL REFERENCES partner_client ON DELETE CASCADE,
    hash        text NOT NULL,               -- scrypt$n$r$p$salt$digest
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz                  -- NULL: until rotated
);
CREATE INDEX partner_secret_client ON partner_secret (client_id);

CREATE TABLE partner_dataset (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    enterprise_id  bigint NOT NULL REFERENCES enterprise ON DELETE CASCADE,
    code           text NOT NULL,
    title          text NOT NULL,
    kind           text NOT NULL
                   CHECK (kind IN ('indicators', 'states', 'counts', 'alarms', 'telemetry')),
    domain         text NOT NULL,
    grade          text NOT NULL CHECK (grade IN ('core', 'important', 'general')),
    granularity    text NOT NULL CHECK (granularity IN ('raw', 'aggregated')),
    purposes       text[] NOT NULL CHECK (cardinality(purposes) > 0),
    visibility     text NOT NULL DEFAULT 'chain' CHECK (visibility IN ('private', 'chain', 'public')),
    created_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (enterprise_id, code),
    CHECK (granularity = 'aggregated' OR grade = 'general')
);

-- 'expired' is not stored: an approved or active grant whose expires_at has passed is expired.
CREATE TABLE partner_grant (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    dataset_id     bigint NOT NULL REFERENCES partner_dataset ON DELETE CASCADE,
    supplier_id    bigint NOT NULL REFERENCES enterprise ON DELETE CASCADE,
    partner_id     bigint NOT NULL REFERENCES enterprise ON DELETE CASCADE,
    purpose        text NOT NULL,
    site_ids       bigint[],                 -- NULL: every site of the supplier
    equipment_ids  bigint[],                 -- NULL: all equipment of those sites
    fields         text[],                   -- NULL: every metric the dataset covers
    window_start   timestamptz,              -- data time bounds; NULL: open
    window_end     timestamptz,
    granularity    text NOT NULL CHECK (granularity IN ('raw', 'aggregated')),
    status         text NOT NULL
                   CHECK (status IN ('requested', 'approved', 'active', 'rejected', 'revoked',
                                     'terminated')),
    expires_at     timestamptz NOT NULL,
    requested_by   text NOT NULL,
    requested_at   timestamptz NOT NULL DEFAULT now(),
    decided_by     text,
    decided_at     timestamptz,
    activated_at   timestamptz,
    ended_at       timestamptz,
    CHECK (supplier_id <> partner_id),
    CHECK (window_start IS NULL OR window_end IS NULL OR window_start < window_end)
);
CREATE INDEX partner_grant_lookup ON partner_grant (dataset_id, partner_id);

CREATE TABLE partner_audit (
    id           bigint PRIMARY KEY,          -- 1, 2, 3... assigned under the chain lock
    at           timestamptz NOT NULL,
    client_id    text NOT NULL,
    actor_id     bigint,                      -- the caller's enterprise
    supplier_id  bigint,                      -- the enterprise whose data or grant it is
    partner_id   bigint,                      -- the enterprise the data is (to be) shared with
    dataset_id   bigint,
    grant_id     bigint,
    action       text NOT NULL,
    outcome      text NOT NULL CHECK (outcome IN ('allowed', 'denied')),
    reason       text NOT NULL DEFAULT '',
    status       integer NOT NULL,
    rows         integer NOT NULL DEFAULT 0,
    prev_hash    text NOT NULL,
    hash         text NOT NULL
);
CREATE INDEX partner_audit_actor ON partner_audit (actor_id, id);
CREATE INDEX partner_audit_supplier ON partner_audit (supplier_id, id);
CREATE INDEX partner_audit_partner ON partner_audit (partner_id, id);

-- The chain head: the last id and hash. Appenders update it first, which queues them on its row
-- lock, so ids and links stay linear; verification never trusts it.
CREATE TABLE partner_audit_head (
    one   boolean PRIMARY KEY DEFAULT true CHECK (one),
    id    bigint NOT NULL,
    hash  text NOT NULL
);
INSERT INTO partner_audit_head VALUES (true, 0, repeat('0', 64));

CREATE FUNCTION partner_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'partner_audit is append-only (% refused)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER partner_audit_no_change BEFORE UPDATE OR DELETE ON partner_audit
    FOR EACH ROW EXECUTE FUNCTION partner_audit_append_only();
CREATE TRIGGER partner_audit_no_truncate BEFORE TRUNCATE ON partner_audit
    FOR EACH STATEMENT EXECUTE FUNCTION partner_audit_append_only();
