-- Converting a database that was migrated on plain PostgreSQL (sample_num and sample_bool
-- natively partitioned, old days packed) to TimescaleDB once the server has the extension
-- preloaded: `plantwire platform migrate --timescaledb` calls plantwire_convert_to_timescaledb().
-- It gives the schema a fresh migration on TimescaleDB gives (0003): the two tables become
-- hypertables of one-day chunks with the same rows (packed days unpacked into rows: TimescaleDB
-- compresses instead), the same indexes and triggers, compression segmented by series and
-- ordered by time, and the compression policy; the views over them are recreated. One
-- transaction: it takes exclusive locks on the sample tables, so ingest waits meanwhile (and
-- loses nothing: its messages stay unacknowledged).

CREATE FUNCTION plantwire_convert_to_timescaledb(compress_after interval DEFAULT '2 days')
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    tbl text;
    valtype text;
    old text;
    def text;
    defs text[];
    v record;
    moved bigint := 0;
    n bigint;
BEGIN
    IF (SELECT value FROM storage_setting WHERE name = 'sample_storage') = 'timescaledb' THEN
        RETURN 0;
    END IF;
    IF NOT plantwire_timescale_available() THEN
        RAISE EXCEPTION 'TimescaleDB is not available on this server'
            USING HINT = 'install it and set shared_preload_libraries = ''timescaledb'', '
                         'restart the server, then run this again';
    END IF;
    CREATE EXTENSION IF NOT EXISTS timescaledb;
    LOCK TABLE sample_num, sample_bool, sample_num_packed IN ACCESS EXCLUSIVE MODE;

    -- the views over the sample tables, innermost first, to recreate after the swap
    CREATE TEMP TABLE plantwire_saved_view ON COMMIT DROP AS
    WITH RECURSIVE dep(oid, depth) AS (
        SELECT r.ev_class, 1 FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid
        WHERE d.refobjid IN ('sample_num'::regclass, 'sample_bool'::regclass)
        UNION ALL
        SELECT r.ev_class, dep.depth + 1 FROM dep
        JOIN pg_depend d ON d.refobjid = dep.oid
        JOIN pg_rewrite r ON r.oid = d.objid
        WHERE r.ev_class <> dep.oid
    )
    SELECT c.relname AS view_name, max(dep.depth) AS depth, pg_get_viewdef(c.oid) AS view_def
    FROM dep JOIN pg_class c ON c.oid = dep.oid WHERE c.relkind = 'v'
    GROUP BY c.oid, c.relname;
    FOR v IN SELECT view_name FROM plantwire_saved_view ORDER BY depth DESC LOOP
        EXECUTE format('DROP VIEW %I', v.view_name);
    END LOOP;

    FOREACH tbl IN ARRAY ARRAY['sample_num', 'sample_bool'] LOOP
        valtype := CASE tbl WHEN 'sample_num' THEN 'double precision' ELSE 'boolean' END;
        old := tbl || '_partitioned';
        EXECUTE format('ALTER TABLE %I RENAME TO %I', tbl, old);
        EXECUTE format('ALTER INDEX %I RENAME TO %I', tbl || '_pkey', old || '_pkey');
        EXECUTE format(
            'CREATE TABLE %I (series_id bigint NOT NULL, ts timestamptz NOT NULL, value %s,'
            ' PRIMARY KEY (series_id, ts))', tbl, valtype);
        PERFORM create_hypertable(tbl::regclass, 'ts', chunk_time_interval => INTERVAL '1 day');
        EXECUTE format('INSERT INTO %I (series_id, ts, value) SELECT series_id, ts, value FROM %I',
                       tbl, old);
        GET DIAGNOSTICS n = ROW_COUNT;
        moved := moved + n;
        -- the user triggers, then the other indexes (not the key) once their names are free
        FOR def IN
            SELECT pg_get_triggerdef(t.oid) FROM pg_trigger t
            WHERE t.tgrelid = old::regclass AND NOT t.tgisinternal
        LOOP
            EXECUTE regexp_replace(def, ' ON ((?:\S+\.)?)' || old || ' ', ' ON \1' || tbl || ' ');
        END LOOP;
        SELECT array_agg(pg_get_indexdef(i.indexrelid)) INTO defs FROM pg_index i
        WHERE i.indrelid = old::regclass AND NOT i.indisprimary;
        EXECUTE format('DROP TABLE %I CASCADE', old);
        FOREACH def IN ARRAY coalesce(defs, '{}') LOOP
            EXECUTE regexp_replace(def, ' ON (?:ONLY )?((?:\S+\.)?)' || old || ' ',
                                   ' ON \1' || tbl || ' ');
        END LOOP;
    END LOOP;
    -- packed days back to rows (a packed millisecond never collides with a row: pack moved it)
    INSERT INTO sample_num (series_id, ts, value)
    SELECT p.series_id, p.bucket + u.off * INTERVAL '1 millisecond', u.value
    FROM sample_num_packed p, unnest(p.ts, p.value) AS u(off, value)
    ON CONFLICT DO NOTHING;
    GET DIAGNOSTICS n = ROW_COUNT;
    moved := moved + n;
    TRUNCATE sample_num_packed;

    FOR v IN SELECT view_name, view_def FROM plantwire_saved_view ORDER BY depth LOOP
        EXECUTE format('CREATE VIEW %I AS %s', v.view_name, v.view_def);
    END LOOP;
    FOREACH tbl IN ARRAY ARRAY['sample_num', 'sample_bool'] LOOP
        EXECUTE format('ALTER TABLE %I SET (timescaledb.compress,'
                       ' timescaledb.compress_segmentby = ''series_id'','
                       ' timescaledb.compress_orderby = ''ts'')', tbl);
        IF compress_after IS NOT NULL THEN
            PERFORM add_compression_policy(tbl::regclass, compress_after => compress_after);
        END IF;
    END LOOP;
    UPDATE storage_setting SET value = 'timescaledb' WHERE name = 'sample_storage';
    RETURN moved;
END $$;
