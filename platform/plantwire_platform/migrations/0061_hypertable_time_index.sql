-- TimescaleDB only: the (ts DESC) index create_hypertable adds by default beside the key and
-- the BRIN index is dropped. Nothing plantwire reads uses it (a series' time range uses the key
-- (series_id, ts); whole minutes of every series the BRIN index on ts; time ranges exclude
-- chunks first), and it cost 6.4 bytes a sample and COPY time (docs/benchmarks.md). A database
-- converted later (0060) has it dropped by `plantwire platform migrate --timescaledb` too.
DROP INDEX IF EXISTS sample_num_ts_idx;
DROP INDEX IF EXISTS sample_bool_ts_idx;
