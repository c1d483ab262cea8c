-- Sample tables become time-partitioned. On plain PostgreSQL: native range partitions of one
-- day (old history: one month) plus a DEFAULT partition that catches rows no partition covers
-- yet; `plantwire platform migrate` and the ingest create partitions ahead, move rows out of
-- the DEFAULT partition and drop partitions past the retention (plantwire_platform.partitions).
-- With the timescaledb extension available, sample_num and sample_bool become hypertables with
-- compression instead; sample_text (state changes, low volume, read with a statement trigger
-- that needs transition tables) is natively partitioned in both cases.
-- (series_id, ts) stays unique in every case: it is what makes ingest idempotent.
-- received_at is dropped from the sample tables: 8 bytes a row, read by nobody.

CREATE TABLE storage_setting (
    name   text PRIMARY KEY,
    value  text NOT NULL
);

CREATE FUNCTION plantwire_timescale_available() RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')
       AND (EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')
            OR coalesce(current_setting('shared_preload_libraries', true), '')
               LIKE '%timescaledb%')
$$;

-- Recreate a sample table with the same rows and user triggers; partitioned unless told not.
CREATE FUNCTION plantwire_rebuild_sample_table(tbl text, valtype text, partitioned boolean)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    old text := tbl || '_unpartitioned';
    def text;
BEGIN
    EXECUTE format('ALTER TABLE %I RENAME TO %I', tbl, old);
    EXECUTE format('ALTER INDEX %I RENAME TO %I', tbl || '_pkey', old || '_pkey');
    EXECUTE format(
        'CREATE TABLE %I (series_id bigint NOT NULL, ts timestamptz NOT NULL, value %s,'
        ' PRIMARY KEY (series_id, ts))%s',
        tbl, valtype, CASE WHEN partitioned THEN ' PARTITION BY RANGE (ts)' ELSE '' END);
    IF partitioned THEN
        EXECUTE format('CREATE TABLE %I PARTITION OF %I DEFAULT', tbl || '_default', tbl);
    END IF;
    EXECUTE format('INSERT INTO %I (series_id, ts, value) SELECT series_id, ts, value FROM %I',
                   tbl, old);
    FOR def IN
        SELECT pg_get_triggerdef(t.oid) FROM pg_trigger t
        WHERE t.tgrelid = old::regclass AND NOT t.tgisinternal
    LOOP
        EXECUTE regexp_replace(def, ' ON ((?:\S+\.)?)' || old || ' ', ' ON \1' || tbl || ' ');
    END LOOP;
    EXECUTE format('DROP TABLE %I', old);
END $$;

DO $$
BEGIN
    IF plantwire_timescale_available() THEN
        CREATE EXTENSION IF NOT EXISTS timescaledb;
        PERFORM plantwire_rebuild_sample_table('sample_num', 'double precision', false);
        PERFORM plantwire_rebuild_sample_table('sample_bool', 'boolean', false);
        EXECUTE $sql$
            SELECT create_hypertable(t, 'ts', chunk_time_interval => INTERVAL '1 day',
                                     migrate_data => true)
            FROM unnest(ARRAY['sample_num', 'sample_bool']::regclass[]) AS t
        $sql$;
        EXECUTE $sql$
            ALTER TABLE sample_num SET (timescaledb.compress,
                timescaledb.compress_segmentby = 'series_id', timescaledb.compress_orderby = 'ts')
        $sql$;
        EXECUTE $sql$
            ALTER TABLE sample_bool SET (timescaledb.compress,
                timescaledb.compress_segmentby = 'series_id', timescaledb.compress_orderby = 'ts')
        $sql$;
        EXECUTE $sql$
            SELECT add_compression_policy(t, compress_after => INTERVAL '2 days')
            FROM unnest(ARRAY['sample_num', 'sample_bool']::regclass[]) AS t
        $sql$;
        INSERT INTO storage_setting VALUES ('sample_storage', 'timescaledb');
    ELSE
        PERFORM plantwire_rebuild_sample_table('sample_num', 'double precision', true);
        PERFORM plantwire_rebuild_sample_table('sample_bool', 'boolean', true);
        INSERT INTO storage_setting VALUES ('sample_storage', 'partitioned');
    END IF;
    PERFORM plantwire_rebuild_sample_table('sample_text', 'text', true);
END $$;

DROP FUNCTION plantwire_rebuild_sample_table(text, text, boolean);

-- Packed numeric samples: once a day is old enough (PLANTWIRE_PACK_AFTER_DAYS), its rows move
-- from the sample_num partition into one row per series and day, timestamps as milliseconds
-- after the day's start, ascending, values alongside; about 12 bytes a sample instead of ~95.
-- sample_num_all reads both. A day packed again (late samples) is merged without doubles.
CREATE TABLE sample_num_packed (
    series_id  bigint NOT NULL,
    bucket     timestamptz NOT NULL,           -- the UTC day
    ts         integer[] NOT NULL,             -- ms after bucket, ascending
    value      double precision[] NOT NULL,
    PRIMARY KEY (series_id, bucket),
    CHECK (cardinality(ts) = cardinality(value))
);
CREATE INDEX sample_num_packed_bucket ON sample_num_packed (bucket);
DO $$
BEGIN  -- lz4 where the server has it: faster than pglz, and these arrays are large
    ALTER TABLE sample_num_packed ALTER COLUMN ts SET COMPRESSION lz4,
        ALTER COLUMN value SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported OR invalid_parameter_value THEN
    NULL;
END $$;

CREATE VIEW sample_num_all AS
SELECT series_id, ts, value FROM sample_num
UNION ALL
SELECT p.series_id, p.bucket + u.off * INTERVAL '1 millisecond', u.value
FROM sample_num_packed p, unnest(p.ts, p.value) AS u(off, value);

-- Numeric samples of [lo, hi), packed or not, of `series` (NULL: all).
CREATE FUNCTION plantwire_samples(lo timestamptz, hi timestamptz, series bigint[])
RETURNS TABLE (series_id bigint, ts timestamptz, value double precision)
LANGUAGE sql STABLE AS $$
    SELECT s.series_id, s.ts, s.value FROM sample_num s
    WHERE s.ts >= lo AND s.ts < hi AND (series IS NULL OR s.series_id = ANY(series))
    UNION ALL
    SELECT p.series_id, t.ts, t.value
    FROM sample_num_packed p,
         LATERAL (SELECT p.bucket + u.off * INTERVAL '1 millisecond' AS ts, u.value
                  FROM unnest(p.ts, p.value) AS u(off, value)) AS t
    WHERE p.bucket > lo - INTERVAL '1 day' AND p.bucket < hi
      AND (series IS NULL OR p.series_id = ANY(series)) AND t.ts >= lo AND t.ts < hi
$$;

-- Move a sample_num partition's rows into sample_num_packed (merging with what is packed for
-- the same series and day) and empty it; returns the samples moved. Inserts into the
-- partition wait meanwhile, so none is lost; the partition stays, for late samples.
CREATE FUNCTION plantwire_pack(part regclass) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    moved bigint;
BEGIN
    EXECUTE format('LOCK TABLE %s IN SHARE MODE', part);
    EXECUTE format('SELECT count(*) FROM %s', part) INTO moved;
    IF moved = 0 THEN
        RETURN 0;
    END IF;
    EXECUTE format($sql$
        INSERT INTO sample_num_packed AS p
        SELECT series_id, day,
               array_agg((extract(epoch FROM ts - day) * 1000)::integer ORDER BY ts),
               array_agg(value ORDER BY ts)
        FROM (SELECT series_id, ts, value, date_bin('1 day', ts, TIMESTAMPTZ 'epoch') AS day
              FROM %s) AS r
        GROUP BY series_id, day
        ON CONFLICT (series_id, bucket) DO UPDATE SET (ts, value) = (
            SELECT array_agg(o ORDER BY o), array_agg(v ORDER BY o)
            FROM (SELECT DISTINCT ON (o) o, v
                  FROM (SELECT o, v, 0 AS later FROM unnest(p.ts, p.value) AS a(o, v)
                        UNION ALL
                        SELECT o, v, 1 FROM unnest(excluded.ts, excluded.value) AS b(o, v)
                       ) AS both_
                  ORDER BY o, later) AS merged)
        $sql$, part);
    EXECUTE format('TRUNCATE %s', part);
    RETURN moved;
END $$;
