-- The usage roll-up's hours are UTC hours (the engine computes them in Python, in UTC), but the
-- triggers of 0011 cut a late sample's or session's time to its hour with date_trunc('hour',
-- ...), which truncates in the session's TimeZone: on a server or connection whose zone is off
-- UTC by a fraction of an hour (Asia/Kolkata, +05:30) a late sample at 10:45 UTC gave 10:30 and
-- left the stale 10:00 hour in place. Truncate in UTC.
CREATE OR REPLACE FUNCTION usage_hour_forget_states() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM usage_hour u
    USING (SELECT s.equipment_id, min(n.ts) AS since
           FROM new_rows n JOIN series s ON s.id = n.series_id
           WHERE s.equipment_id IS NOT NULL AND s.metric IN ('State/Mode', 'State/Execution')
           GROUP BY s.equipment_id) d
    WHERE u.equipment_id = d.equipment_id AND u.hour >= date_trunc('hour', d.since, 'UTC');
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION usage_hour_forget_sessions() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM usage_hour u
    -- a new session changes time from its start; closing one changes time from its end
    USING (SELECT equipment_id,
                  min(CASE WHEN TG_OP = 'INSERT' THEN online_at
                           ELSE coalesce(offline_at, online_at) END) AS since
           FROM new_rows WHERE equipment_id IS NOT NULL GROUP BY equipment_id) d
    WHERE u.equipment_id = d.equipment_id AND u.hour >= date_trunc('hour', d.since, 'UTC');
    RETURN NULL;
END $$;
