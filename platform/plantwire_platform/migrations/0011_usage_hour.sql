-- Hourly roll-up of each piece of equipment's time (online, EXECUTING, AUTO, MDI), filled by the
-- indicator engine for closed hours and read for long windows. A state sample or connectivity
-- change that lands later for an hour already rolled up deletes that hour and every later one of
-- the same equipment (a state holds until the next change), so they are recomputed.
CREATE TABLE usage_hour (
    equipment_id  bigint NOT NULL REFERENCES equipment ON DELETE CASCADE,
    hour          timestamptz NOT NULL,
    observed_s    real NOT NULL,
    executing_s   real NOT NULL,
    auto_s        real NOT NULL,
    mdi_s         real NOT NULL,
    computed_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (equipment_id, hour)
);

CREATE FUNCTION usage_hour_forget_states() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM usage_hour u
    USING (SELECT s.equipment_id, min(n.ts) AS since
           FROM new_rows n JOIN series s ON s.id = n.series_id
           WHERE s.equipment_id IS NOT NULL AND s.metric IN ('State/Mode', 'State/Execution')
           GROUP BY s.equipment_id) d
    WHERE u.equipment_id = d.equipment_id AND u.hour >= date_trunc('hour', d.since);
    RETURN NULL;
END $$;

CREATE TRIGGER usage_hour_forget_states AFTER INSERT ON sample_text
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
    EXECUTE FUNCTION usage_hour_forget_states();

CREATE FUNCTION usage_hour_forget_sessions() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM usage_hour u
    -- a new session changes time from its start; closing one changes time from its end
    USING (SELECT equipment_id,
                  min(CASE WHEN TG_OP = 'INSERT' THEN online_at
                           ELSE coalesce(offline_at, online_at) END) AS since
           FROM new_rows WHERE equipment_id IS NOT NULL GROUP BY equipment_id) d
    WHERE u.equipment_id = d.equipment_id AND u.hour >= date_trunc('hour', d.since);
    RETURN NULL;
END $$;

CREATE TRIGGER usage_hour_forget_new_sessions AFTER INSERT ON connectivity_session
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
    EXECUTE FUNCTION usage_hour_forget_sessions();
CREATE TRIGGER usage_hour_forget_changed_sessions AFTER UPDATE ON connectivity_session
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
    EXECUTE FUNCTION usage_hour_forget_sessions();
