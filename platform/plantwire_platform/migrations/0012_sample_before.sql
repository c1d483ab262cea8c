-- The last numeric sample of one series before a time, packed or not (counters read the
-- reading before a window to count what happened in it). Packed days are searched from the
-- newest: the newest packed day before `before` may start before it and still hold only
-- later samples, the one before that is wholly earlier.
CREATE FUNCTION plantwire_sample_before(series bigint, before timestamptz)
RETURNS TABLE (ts timestamptz, value double precision)
LANGUAGE sql STABLE AS $$
    SELECT x.ts, x.value FROM (
        (SELECT s.ts, s.value FROM sample_num s
         WHERE s.series_id = series AND s.ts < before ORDER BY s.ts DESC LIMIT 1)
        UNION ALL
        (SELECT t.ts, t.value
         FROM (SELECT p.bucket, p.ts, p.value FROM sample_num_packed p
               WHERE p.series_id = series AND p.bucket < before
               ORDER BY p.bucket DESC LIMIT 2) AS p,
              LATERAL (SELECT p.bucket + u.off * INTERVAL '1 millisecond' AS ts, u.value
                       FROM unnest(p.ts, p.value) AS u(off, value)) AS t
         WHERE t.ts < before ORDER BY t.ts DESC LIMIT 1)
    ) AS x ORDER BY x.ts DESC LIMIT 1
$$;
