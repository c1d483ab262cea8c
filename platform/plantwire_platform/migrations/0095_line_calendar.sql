-- Per-line calendars and planned maintenance (issue 14): a line may plan its own shifts and
-- workdays (NULL: its site's), and names the windows of planned maintenance in which none of
-- its equipment is planned to produce. Planned time, against which coverage and availability
-- are measured, is the line's shifts on its workdays minus its maintenance windows.
ALTER TABLE line ADD COLUMN shifts text;
ALTER TABLE line ADD COLUMN workdays smallint[];

CREATE TABLE line_maintenance (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    line_id    bigint NOT NULL REFERENCES line ON DELETE CASCADE,
    starts_at  timestamptz NOT NULL,
    ends_at    timestamptz NOT NULL,
    reason     text NOT NULL DEFAULT '',
    CHECK (ends_at > starts_at)
);
CREATE INDEX line_maintenance_line ON line_maintenance (line_id, starts_at);
