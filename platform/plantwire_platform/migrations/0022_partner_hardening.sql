-- Partner data interface, hardening (issue 16): tokens that die with their client, chain
-- visibility chosen by the supplier, and an audit log that proves its completeness.

-- A client's tokens carry the epoch they were issued in; disabling the client or revoking its
-- tokens raises it, so every token issued before stops at its next call.
ALTER TABLE partner_client ADD COLUMN token_epoch bigint NOT NULL DEFAULT 0;

-- Who 'chain' visibility shows a dataset to: the leaders of the owner's chains (the default),
-- or every enterprise sharing a chain with the owner.
ALTER TABLE partner_dataset ADD COLUMN chain_audience text NOT NULL DEFAULT 'leader'
    CHECK (chain_audience IN ('leader', 'members'));

-- The audit log starts a new chain, keyed: each entry's hash is an HMAC under a key the
-- database does not hold (PLANTWIRE_AUDIT_KEY), so nobody with only database access can rewrite
-- entries and recompute the rest. The entries of the unkeyed chain before stay, read-only, in
-- partner_audit_unkeyed. New columns: where the request came from, how many identical refusals
-- one entry stands for (floods of 401 and 429 are counted, not written one by one), and the id
-- of the key. 'failed': the request ended in an error of the platform (500).
ALTER TABLE partner_audit RENAME TO partner_audit_unkeyed;
ALTER INDEX partner_audit_pkey RENAME TO partner_audit_unkeyed_pkey;
ALTER INDEX partner_audit_actor RENAME TO partner_audit_unkeyed_actor;
ALTER INDEX partner_audit_supplier RENAME TO partner_audit_unkeyed_supplier;
ALTER INDEX partner_audit_partner RENAME TO partner_audit_unkeyed_partner;

CREATE TABLE partner_audit (
    id           bigint PRIMARY KEY,          -- 1, 2, 3... reserved under the chain head's lock
    at           timestamptz NOT NULL,
    client_id    text NOT NULL,               -- the caller, or the id an unidentified one gave
    actor_id     bigint,                      -- the caller's enterprise
    supplier_id  bigint,                      -- the enterprise whose data or grant it is
    partner_id   bigint,                      -- the enterprise the data is (to be) shared with
    dataset_id   bigint,
    grant_id     bigint,
    action       text NOT NULL,
    outcome      text NOT NULL CHECK (outcome IN ('allowed', 'denied', 'failed')),
    reason       text NOT NULL DEFAULT '',
    status       integer NOT NULL,
    rows         integer NOT NULL DEFAULT 0,
    source       text NOT NULL,               -- the address the request came from
    repeats      integer NOT NULL CHECK (repeats >= 1),
    key_id       text NOT NULL,               -- names the key of the link (a public hash of it)
    prev_hash    text NOT NULL,
    hash         text NOT NULL
);
CREATE INDEX partner_audit_actor ON partner_audit (actor_id, id);
CREATE INDEX partner_audit_supplier ON partner_audit (supplier_id, id);
CREATE INDEX partner_audit_partner ON partner_audit (partner_id, id);
CREATE TRIGGER partner_audit_no_change BEFORE UPDATE OR DELETE ON partner_audit
    FOR EACH ROW EXECUTE FUNCTION partner_audit_append_only();
CREATE TRIGGER partner_audit_no_truncate BEFORE TRUNCATE ON partner_audit
    FOR EACH STATEMENT EXECUTE FUNCTION partner_audit_append_only();

-- The head: the last id and hash, and their MAC under the same key, so the head cannot be moved
-- back over removed entries; appenders refuse to continue a chain whose head or last entry does
-- not match (an empty chain has no MAC yet).
ALTER TABLE partner_audit_head ADD COLUMN mac text NOT NULL DEFAULT '';
UPDATE partner_audit_head SET id = 0, hash = repeat('0', 64), mac = '';

-- Appending goes through two functions that run with their owner's rights, so that the audit
-- tables can belong to a role of their own (`plantwire platform audit-seal`) while the
-- application may only read them and call these: it can add entries that continue the chain,
-- never change, remove or reorder one.
--   partner_audit_reserve(n): takes the next n ids (the head's row lock queues concurrent
--     appenders until commit) and returns the first one, the hash they continue from, the
--     head's MAC and the hash of the entry the head names (for the appender to check);
--   partner_audit_write(rows, mac): inserts the reserved rows, refusing any that does not
--     continue the chain (id and previous hash), and moves the head's hash to the last one,
--     with its MAC.
-- Both pin their search path to this schema, so no object of another schema can stand in.
DO $migration$
BEGIN
    EXECUTE format($f$
        CREATE FUNCTION partner_audit_reserve(n integer)
        RETURNS TABLE (first_id bigint, prev_hash text, head_mac text, last_hash text)
        LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, %1$I, pg_temp AS $body$
        BEGIN
            IF n < 1 THEN
                RAISE EXCEPTION 'reserve at least one audit id' USING ERRCODE = 'data_exception';
            END IF;
            UPDATE partner_audit_head h SET id = h.id + n
            RETURNING h.id - n + 1, h.hash, h.mac INTO first_id, prev_hash, head_mac;
            -- a statement of its own: its snapshot sees the entry of the appender that held
            -- the head before (the UPDATE's snapshot may predate that commit)
            SELECT a.hash INTO last_hash FROM partner_audit a WHERE a.id = first_id - 1;
            RETURN NEXT;
        END
        $body$
    $f$, current_schema());
    EXECUTE format($f$
        CREATE FUNCTION partner_audit_write(rows json, head_mac text) RETURNS void
        LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, %1$I, pg_temp AS $body$
        DECLARE
            head_id   bigint;
            prev      text;
            expected  bigint;
            r         record;
        BEGIN
            SELECT h.id, h.hash INTO head_id, prev FROM partner_audit_head h FOR UPDATE;
            expected := head_id - json_array_length(rows) + 1;
            FOR r IN SELECT x.id, x.prev_hash, x.hash
                     FROM json_populate_recordset(NULL::partner_audit, rows) AS x
            LOOP
                IF r.id IS DISTINCT FROM expected OR r.prev_hash IS DISTINCT FROM prev THEN
                    RAISE EXCEPTION 'audit entry %% does not continue the chain at %%', r.id, expected
                        USING ERRCODE = 'integrity_constraint_violation';
                END IF;
                prev := r.hash;
                expected := expected + 1;
            END LOOP;
            IF expected <> head_id + 1 THEN
                RAISE EXCEPTION 'audit entries do not fill the ids reserved'
                    USING ERRCODE = 'integrity_constraint_violation';
            END IF;
            INSERT INTO partner_audit SELECT * FROM json_populate_recordset(NULL::partner_audit, rows);
            UPDATE partner_audit_head SET hash = prev, mac = head_mac;
        END
        $body$
    $f$, current_schema());
END
$migration$;
REVOKE ALL ON FUNCTION partner_audit_reserve(integer), partner_audit_write(json, text)
    FROM PUBLIC;
