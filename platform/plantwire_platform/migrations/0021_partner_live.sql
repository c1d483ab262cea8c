-- Partner data interface, second step: data versions that tell the partner API when an
-- enterprise's indicators may have changed, signed webhooks for granted indicators, and an index
-- for reading granted alarms and events.

-- A counter per enterprise, raised in the same transaction as any change an indicator reads:
-- state samples, connectivity sessions, and (row 0, shared by every enterprise) the registry.
-- A computed indicator value stays valid while both counters keep the values it was computed
-- at. A missing row reads as version 0.
CREATE TABLE partner_data_version (
    enterprise_id  bigint PRIMARY KEY,          -- 0: the registry
    version        bigint NOT NULL DEFAULT 1
);
INSERT INTO partner_data_version (enterprise_id) VALUES (0);

-- Raise the counters of these enterprises, in id order (concurrent writers queue, never deadlock
-- on each other here).
CREATE FUNCTION partner_data_changed(ids bigint[]) RETURNS void LANGUAGE sql AS $$
    INSERT INTO partner_data_version AS v (enterprise_id)
    SELECT DISTINCT e FROM unnest(ids) AS e WHERE e IS NOT NULL ORDER BY e
    ON CONFLICT (enterprise_id) DO UPDATE SET version = v.version + 1
$$;

-- State samples: one look-up per series in the statement, not per sample.
CREATE FUNCTION partner_states_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM partner_data_changed(ARRAY(
        SELECT s.enterprise_id
        FROM (SELECT DISTINCT series_id FROM new_rows) n
        JOIN series sr ON sr.id = n.series_id
        JOIN equipment e ON e.id = sr.equipment_id
        JOIN site s ON s.id = e.site_id
        WHERE sr.metric IN ('State/Mode', 'State/Execution')));
    RETURN NULL;
END $$;
CREATE TRIGGER partner_states_changed AFTER INSERT ON sample_text
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
    EXECUTE FUNCTION partner_states_changed();

CREATE FUNCTION partner_sessions_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM partner_data_changed(ARRAY(
        SELECT s.enterprise_id
        FROM (SELECT DISTINCT equipment_id FROM changed_rows) c
        JOIN equipment e ON e.id = c.equipment_id
        JOIN site s ON s.id = e.site_id));
    RETURN NULL;
END $$;
CREATE TRIGGER partner_sessions_inserted AFTER INSERT ON connectivity_session
    REFERENCING NEW TABLE AS changed_rows FOR EACH STATEMENT
    EXECUTE FUNCTION partner_sessions_changed();
CREATE TRIGGER partner_sessions_updated AFTER UPDATE ON connectivity_session
    REFERENCING NEW TABLE AS changed_rows FOR EACH STATEMENT
    EXECUTE FUNCTION partner_sessions_changed();
CREATE TRIGGER partner_sessions_deleted AFTER DELETE ON connectivity_session
    REFERENCING OLD TABLE AS changed_rows FOR EACH STATEMENT
    EXECUTE FUNCTION partner_sessions_changed();

-- A series moved to other equipment changes whose samples count (births touch series often:
-- the trigger fires only for a changed equipment_id).
CREATE FUNCTION partner_series_moved() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM partner_data_changed(ARRAY[0::bigint]);
    RETURN NULL;
END $$;
CREATE TRIGGER partner_series_moved AFTER UPDATE OF equipment_id ON series
    FOR EACH ROW WHEN (OLD.equipment_id IS DISTINCT FROM NEW.equipment_id)
    EXECUTE FUNCTION partner_series_moved();

-- The registry changes rarely: any statement on these tables raises the shared counter.
CREATE FUNCTION partner_registry_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM partner_data_changed(ARRAY[0::bigint]);
    RETURN NULL;
END $$;
DO $$
DECLARE
    tbl text;
BEGIN
    FOREACH tbl IN ARRAY ARRAY['site', 'line', 'process_step', 'equipment', 'process_equipment',
                               'equipment_history', 'process_history']
    LOOP
        EXECUTE format('CREATE TRIGGER partner_registry_changed'
                       ' AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON %I'
                       ' FOR EACH STATEMENT EXECUTE FUNCTION partner_registry_changed()', tbl);
    END LOOP;
END $$;

-- Webhooks: a partner client registers a URL for a grant on an indicator dataset; the platform
-- POSTs the granted indicators whenever they change, signed with HMAC-SHA256 under the
-- webhook's secret. The secret is kept as is: the platform needs it to sign. At most one payload
-- waits per webhook (the newest values replace an undelivered older one), so deliveries stay in
-- order; a lease keeps two API processes from delivering it at once.
CREATE TABLE partner_webhook (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    grant_id         bigint NOT NULL REFERENCES partner_grant ON DELETE CASCADE,
    client_id        text NOT NULL REFERENCES partner_client ON DELETE CASCADE,
    url              text NOT NULL,
    secret           text NOT NULL,
    window_start     timestamptz,                  -- NULL: the last hour, sliding
    status           text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'stopped')),
    stop_reason      text NOT NULL DEFAULT '',
    created_at       timestamptz NOT NULL DEFAULT now(),
    next_check_at    timestamptz NOT NULL DEFAULT now(),
    checked_values   text,                         -- the indicators last queued, as JSON
    event_seq        bigint NOT NULL DEFAULT 0,
    pending          text,                         -- the payload awaiting delivery
    attempts         integer NOT NULL DEFAULT 0,   -- failed attempts of the pending payload
    next_attempt_at  timestamptz,
    lease_until      timestamptz,
    delivered        bigint NOT NULL DEFAULT 0,
    last_status      integer                       -- the receiver's last answer (0: none)
);
CREATE INDEX partner_webhook_grant ON partner_webhook (grant_id);
CREATE INDEX partner_webhook_due ON partner_webhook (next_check_at) WHERE status = 'active';

-- Granted alarms and events are read per series and time.
CREATE INDEX event_series_ts ON event (series_id, ts) WHERE series_id IS NOT NULL;
