-- Daily roll-up of the hourly usage roll-up: a UTC day's row holds, for each of the four
-- times, the running sums of that day's 24 rows of usage_hour (element k+1 is the sum of hours
-- 0..k, element 1 is 0), so that the sum of any run of hours [i, j) of the day is one
-- subtraction: a 30-day window reads about 30 rows an equipment, not one a planned hour (720
-- round the clock). A day's row is stored, in the transaction that completes the day, once all
-- 24 hours are there; reading falls back to the hours for a day without one.
CREATE TABLE usage_day (
    equipment_id  bigint NOT NULL REFERENCES equipment ON DELETE CASCADE,
    day           timestamptz NOT NULL,  -- midnight UTC
    observed_s    double precision[] NOT NULL,  -- 25 running sums
    executing_s   double precision[] NOT NULL,
    auto_s        double precision[] NOT NULL,
    mdi_s         double precision[] NOT NULL,
    PRIMARY KEY (equipment_id, day)
);

-- The rows of the given (equipment, day) pairs whose 24 hours are all in usage_hour. The hours
-- are locked while they are summed, so that hours dropped meanwhile (late data) do not end up
-- in a day row that their deletion, not seeing it yet, would leave behind.
CREATE FUNCTION usage_day_store(ids bigint[], days timestamptz[]) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO usage_day (equipment_id, day, observed_s, executing_s, auto_s, mdi_s)
    SELECT equipment_id, day, '{0}'::float8[] || array_agg(observed_s ORDER BY hour),
           '{0}'::float8[] || array_agg(executing_s ORDER BY hour), '{0}'::float8[] || array_agg(auto_s ORDER BY hour),
           '{0}'::float8[] || array_agg(mdi_s ORDER BY hour)
    FROM (SELECT equipment_id, day, hour,
                 sum(observed_s::float8) OVER w AS observed_s,
                 sum(executing_s::float8) OVER w AS executing_s,
                 sum(auto_s::float8) OVER w AS auto_s, sum(mdi_s::float8) OVER w AS mdi_s
          FROM (SELECT u.*, t.day FROM unnest(ids, days) t(id, day)
                JOIN usage_hour u ON u.equipment_id = t.id AND u.hour >= t.day
                 AND u.hour < t.day + interval '24 hours'
                FOR KEY SHARE OF u) h
          WINDOW w AS (PARTITION BY equipment_id, day ORDER BY hour)) r
    GROUP BY 1, 2 HAVING count(*) = 24
    ON CONFLICT DO NOTHING
$$;

-- An hour that leaves usage_hour (late data drops it, see 0011) takes its day's row with it,
-- in the same transaction; so does emptying usage_hour.
CREATE FUNCTION usage_day_forget_hours() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM usage_day d
    USING (SELECT DISTINCT equipment_id, date_trunc('day', hour, 'UTC') AS day FROM old_rows) o
    WHERE d.equipment_id = o.equipment_id AND d.day = o.day;
    RETURN NULL;
END $$;

CREATE TRIGGER usage_day_forget_deleted_hours AFTER DELETE ON usage_hour
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT
    EXECUTE FUNCTION usage_day_forget_hours();
CREATE TRIGGER usage_day_forget_changed_hours AFTER UPDATE ON usage_hour
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT
    EXECUTE FUNCTION usage_day_forget_hours();

CREATE FUNCTION usage_day_forget_all() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    TRUNCATE usage_day;
    RETURN NULL;
END $$;

CREATE TRIGGER usage_day_forget_all AFTER TRUNCATE ON usage_hour
    FOR EACH STATEMENT EXECUTE FUNCTION usage_day_forget_all();

-- the days already complete in an existing roll-up
SELECT usage_day_store(array_agg(equipment_id), array_agg(day))
FROM (SELECT DISTINCT equipment_id, date_trunc('day', hour, 'UTC') AS day FROM usage_hour) d;
