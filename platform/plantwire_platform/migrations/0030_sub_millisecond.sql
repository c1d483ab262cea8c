-- Several values of one metric within one millisecond are all kept: the n-th one after the
-- first arrives with the plantwire.ordinal metric property n and is stored n microseconds
-- after its millisecond (plantwire_bus.extension). Packed days hold whole milliseconds, so
-- such rows stay rows when their day is packed (they are rare: bursts), and the careful
-- write path no longer takes a sub-millisecond row for a packed one of its millisecond.

CREATE OR REPLACE FUNCTION plantwire_pack(part regclass) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    moved bigint;
BEGIN
    EXECUTE format('LOCK TABLE %s IN SHARE MODE', part);
    EXECUTE format('SELECT count(*) FROM %s WHERE ts = date_trunc(''milliseconds'', ts)', part)
        INTO moved;
    IF moved = 0 THEN
        RETURN 0;
    END IF;
    EXECUTE format($sql$
        INSERT INTO sample_num_packed AS p
        SELECT series_id, day,
               array_agg((extract(epoch FROM ts - day) * 1000)::integer ORDER BY ts),
               array_agg(value ORDER BY ts)
        FROM (SELECT series_id, ts, value, date_bin('1 day', ts, TIMESTAMPTZ 'epoch') AS day
              FROM %s WHERE ts = date_trunc('milliseconds', ts)) AS r
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
    CREATE TEMP TABLE IF NOT EXISTS plantwire_pack_kept
        (series_id bigint, ts timestamptz, value double precision) ON COMMIT DROP;
    EXECUTE format('INSERT INTO plantwire_pack_kept SELECT series_id, ts, value FROM %s'
                   ' WHERE ts <> date_trunc(''milliseconds'', ts)', part);
    EXECUTE format('TRUNCATE %s', part);
    EXECUTE format('INSERT INTO %s SELECT series_id, ts, value FROM plantwire_pack_kept', part);
    TRUNCATE plantwire_pack_kept;
    RETURN moved;
END $$;
