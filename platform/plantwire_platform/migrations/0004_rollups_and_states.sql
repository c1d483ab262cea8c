-- Minute and hour roll-ups of numeric samples, and mode/execution state intervals, both kept
-- up to date with the ingest.
--
-- Roll-ups are computed from the stored samples, so a sample counts once however often it was
-- delivered: a minute is rolled up when it closes (`settle` after its end) by one pass over
-- that minute's rows (the BRIN index on ts finds them); a sample arriving for a minute already
-- closed leaves a mark in rollup_dirty (written in the ingest transaction that stores it), and
-- the next pass recomputes that device's series for that minute. Hours are recomputed from
-- their minutes. rollup_minute_live adds the minutes not closed yet, computed on the fly.

CREATE INDEX sample_num_ts_brin ON sample_num USING brin (ts);

CREATE TABLE rollup_minute (
    series_id  bigint NOT NULL,
    bucket     timestamptz NOT NULL,
    n          bigint NOT NULL,
    sum        double precision NOT NULL,
    min        double precision NOT NULL,
    max        double precision NOT NULL,
    first_ts   timestamptz NOT NULL,
    first      double precision NOT NULL,
    last_ts    timestamptz NOT NULL,
    last       double precision NOT NULL,
    PRIMARY KEY (series_id, bucket)
);
CREATE INDEX rollup_minute_bucket ON rollup_minute USING brin (bucket);

CREATE TABLE rollup_hour (LIKE rollup_minute INCLUDING ALL);

-- Minutes before closed_until are rolled up.
CREATE TABLE rollup_state (
    name          text PRIMARY KEY,
    closed_until  timestamptz NOT NULL
);
INSERT INTO rollup_state
SELECT 'sample_num', date_bin('1 minute', coalesce(min(ts), now()), TIMESTAMPTZ 'epoch')
FROM sample_num;

-- Late samples: the device birth they were resolved with and the (closed) minute they fall in.
CREATE TABLE rollup_dirty (
    birth_id   bigint NOT NULL,
    bucket     timestamptz NOT NULL,
    marked_at  timestamptz NOT NULL DEFAULT now()
);

-- Replace the roll-up rows of `series` (NULL: all series) for the minutes in [lo, hi).
CREATE FUNCTION plantwire_rollup_minutes(lo timestamptz, hi timestamptz, series bigint[])
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    n integer;
BEGIN
    DELETE FROM rollup_minute
    WHERE bucket >= lo AND bucket < hi AND (series IS NULL OR series_id = ANY(series));
    INSERT INTO rollup_minute
    SELECT series_id, date_bin('1 minute', ts, TIMESTAMPTZ 'epoch'), count(*), sum(value),
           min(value), max(value), min(ts), (array_agg(value ORDER BY ts))[1], max(ts),
           (array_agg(value ORDER BY ts DESC))[1]
    FROM plantwire_samples(lo, hi, series)
    WHERE value IS NOT NULL
    GROUP BY 1, 2;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;

-- Replace the hour roll-ups of `series` (NULL: all) for the hours in [lo, hi) from minutes.
CREATE FUNCTION plantwire_rollup_hours(lo timestamptz, hi timestamptz, series bigint[])
RETURNS void LANGUAGE sql AS $$
    DELETE FROM rollup_hour
    WHERE bucket >= lo AND bucket < hi AND (series IS NULL OR series_id = ANY(series));
    INSERT INTO rollup_hour
    SELECT series_id, date_bin('1 hour', bucket, TIMESTAMPTZ 'epoch'), sum(n)::bigint, sum(sum),
           min(min), max(max), min(first_ts), (array_agg(first ORDER BY first_ts))[1],
           max(last_ts), (array_agg(last ORDER BY last_ts DESC))[1]
    FROM rollup_minute
    WHERE bucket >= lo AND bucket < hi AND (series IS NULL OR series_id = ANY(series))
    GROUP BY 1, 2;
$$;

-- One roll-up pass: close the minutes that ended `settle` ago (at most max_minutes of them),
-- then recompute the closed minutes late samples touched, once no more have come for
-- settle / 2. Returns the minutes closed. Postponed while a transaction older than
-- settle / 2 could still commit samples for the minutes to close.
CREATE FUNCTION plantwire_rollup(settle interval DEFAULT '20 seconds',
                                 max_minutes integer DEFAULT 60)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    closed timestamptz;
    target timestamptz := date_bin('1 minute', now() - settle, TIMESTAMPTZ 'epoch');
    upto timestamptz;
    hour_lo timestamptz;
    d record;
BEGIN
    SELECT closed_until INTO closed FROM rollup_state WHERE name = 'sample_num' FOR UPDATE;
    IF EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = current_database()
               AND backend_xid IS NOT NULL AND xact_start < now() - settle / 2
               AND pid <> pg_backend_pid()) THEN
        RETURN 0;
    END IF;
    upto := least(target, closed + max_minutes * INTERVAL '1 minute');
    IF upto > closed THEN
        PERFORM plantwire_rollup_minutes(closed, upto, NULL);
        hour_lo := date_bin('1 hour', closed, TIMESTAMPTZ 'epoch');
        PERFORM plantwire_rollup_hours(hour_lo, upto, NULL);
        UPDATE rollup_state SET closed_until = upto WHERE name = 'sample_num';
    ELSE
        upto := closed;
    END IF;
    -- marks of minutes still open are covered by closing them
    DELETE FROM rollup_dirty WHERE bucket >= upto;
    -- a closed minute is recomputed once its late samples have stopped coming for a while
    FOR d IN
        WITH ready AS (
            SELECT birth_id, bucket FROM rollup_dirty GROUP BY 1, 2
            HAVING max(marked_at) < now() - settle / 2),
        gone AS (
            DELETE FROM rollup_dirty r USING ready
            WHERE r.birth_id = ready.birth_id AND r.bucket = ready.bucket
            RETURNING r.birth_id, r.bucket)
        SELECT g.bucket, array_agg(DISTINCT s) AS series
        FROM (SELECT DISTINCT birth_id, bucket FROM gone) AS g
        JOIN sparkplug_birth b ON b.id = g.birth_id, unnest(b.series_ids) AS s
        GROUP BY g.bucket
    LOOP
        PERFORM plantwire_rollup_minutes(d.bucket, d.bucket + INTERVAL '1 minute', d.series);
        hour_lo := date_bin('1 hour', d.bucket, TIMESTAMPTZ 'epoch');
        PERFORM plantwire_rollup_hours(hour_lo, hour_lo + INTERVAL '1 hour', d.series);
    END LOOP;
    RETURN (extract(epoch FROM upto - closed) / 60)::integer;
END $$;

-- Roll-ups including the minutes and hours still open (computed from the samples).
CREATE VIEW rollup_minute_live AS
SELECT * FROM rollup_minute
UNION ALL
SELECT series_id, date_bin('1 minute', ts, TIMESTAMPTZ 'epoch'), count(*), sum(value),
       min(value), max(value), min(ts), (array_agg(value ORDER BY ts))[1], max(ts),
       (array_agg(value ORDER BY ts DESC))[1]
FROM sample_num
WHERE ts >= (SELECT closed_until FROM rollup_state WHERE name = 'sample_num')
  AND value IS NOT NULL
GROUP BY 1, 2;

CREATE VIEW rollup_hour_live AS
SELECT series_id, bucket, sum(n)::bigint AS n, sum(sum) AS sum, min(min) AS min,
       max(max) AS max, min(first_ts) AS first_ts,
       (array_agg(first ORDER BY first_ts))[1] AS first, max(last_ts) AS last_ts,
       (array_agg(last ORDER BY last_ts DESC))[1] AS last
FROM (SELECT * FROM rollup_hour
      WHERE bucket < date_bin('1 hour', (SELECT closed_until FROM rollup_state
                                         WHERE name = 'sample_num'), TIMESTAMPTZ 'epoch')
      UNION ALL
      SELECT series_id, date_bin('1 hour', bucket, TIMESTAMPTZ 'epoch'), n, sum, min, max,
             first_ts, first, last_ts, last
      FROM rollup_minute_live
      WHERE bucket >= date_bin('1 hour', (SELECT closed_until FROM rollup_state
                                          WHERE name = 'sample_num'), TIMESTAMPTZ 'epoch')
     ) AS x
GROUP BY series_id, bucket;

-- State intervals: one row per stretch of constant value of a State/Mode or State/Execution
-- series; end_at NULL while in force. Rebuilt from sample_text from the first changed sample
-- on, so late, repeated and out-of-order samples all give the same intervals. A node or device
-- death ends the interval in force.
CREATE TABLE state_interval (
    series_id  bigint NOT NULL,
    start_at   timestamptz NOT NULL,
    end_at     timestamptz,
    value      text,
    PRIMARY KEY (series_id, start_at),
    CHECK (end_at IS NULL OR end_at >= start_at)
);

CREATE FUNCTION plantwire_rebuild_state_intervals(ids bigint[], since timestamptz[])
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    i integer;
    t0 timestamptz;
    total integer := 0;
    n integer;
BEGIN
    FOR i IN 1 .. coalesce(array_length(ids, 1), 0) LOOP
        SELECT max(start_at) INTO t0 FROM state_interval
        WHERE series_id = ids[i] AND start_at <= since[i];
        IF t0 IS NULL THEN  -- nothing before: rebuild the series from its first sample
            SELECT min(ts) INTO t0 FROM sample_text WHERE series_id = ids[i];
        END IF;
        CONTINUE WHEN t0 IS NULL;
        DELETE FROM state_interval WHERE series_id = ids[i] AND start_at >= t0;
        INSERT INTO state_interval (series_id, start_at, end_at, value)
        SELECT ids[i], ts, lead(ts) OVER (ORDER BY ts), value
        FROM (SELECT ts, value, lag(value) OVER (ORDER BY ts) AS prev,
                     row_number() OVER (ORDER BY ts) AS rn
              FROM sample_text WHERE series_id = ids[i] AND ts >= t0) AS s
        WHERE rn = 1 OR value IS DISTINCT FROM prev;
        GET DIAGNOSTICS n = ROW_COUNT;
        total := total + n;
        -- the interval now in force ends with the session it started in, if that has ended
        UPDATE state_interval si SET end_at = c.offline_at
        FROM series s, connectivity_session c
        WHERE si.series_id = ids[i] AND si.end_at IS NULL AND s.id = si.series_id
          AND c.group_id = s.group_id AND c.edge_node_id = s.edge_node_id
          AND c.device_id = s.device_id AND c.online_at <= si.start_at
          AND c.offline_at > si.start_at;
    END LOOP;
    RETURN total;
END $$;
