-- An NDEATH on its node's time line (issue 14): the clock rate a node declares in its NBIRTH
-- (metric Clock/Rate: node clock ms per wall ms; NULL for a node that does not say). A death,
-- a Will the broker publishes included, is stamped from the node's last message (its payload
-- timestamp and arrival) plus the wall time elapsed since, times this rate, never before the
-- session's last value: sparkplug_birth.death_ts and the session's offline_at hold that time,
-- sparkplug_node.died_at (and event.received_at) the platform's time of arrival.
ALTER TABLE sparkplug_node ADD COLUMN clock_rate double precision;
COMMENT ON COLUMN sparkplug_node.clock_rate IS 'NBIRTH Clock/Rate: node clock ms per wall ms';
COMMENT ON COLUMN sparkplug_node.died_at IS 'arrival of the last NDEATH (platform clock)';
COMMENT ON COLUMN sparkplug_birth.death_ts IS
    'DDEATH payload timestamp; NDEATH: on the node''s time line (ms, docs/indicators.md)';
