-- Regions that register their enterprises (issue 15), as parks do: a region's authority asks,
-- the enterprise consents (or declines), and membership is kept with its history, so a
-- region's figure over a window counts the enterprises that were in it throughout. An
-- enterprise's region now stays its own region, else its park's.
CREATE TABLE region_registration (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    region         text NOT NULL CHECK (region <> ''),
    enterprise_id  bigint NOT NULL REFERENCES enterprise ON DELETE CASCADE,
    status         text NOT NULL DEFAULT 'asked'
                   CHECK (status IN ('asked', 'accepted', 'declined')),
    asked_by       text NOT NULL,
    asked_at       timestamptz NOT NULL DEFAULT now(),
    decided_by     text,
    decided_at     timestamptz
);
CREATE UNIQUE INDEX region_registration_open ON region_registration (region, enterprise_id)
    WHERE status = 'asked';

CREATE TABLE region_member_history (
    region         text NOT NULL,
    enterprise_id  bigint NOT NULL REFERENCES enterprise ON DELETE CASCADE,
    valid_from     timestamptz NOT NULL,
    valid_to       timestamptz,
    PRIMARY KEY (region, enterprise_id, valid_from)
);
INSERT INTO region_member_history (region, enterprise_id, valid_from)
SELECT coalesce(nullif(e.region, ''), p.region), e.id, '1970-01-01 00:00:00+00'
FROM enterprise e LEFT JOIN park p ON p.id = e.park_id
WHERE coalesce(nullif(e.region, ''), p.region, '') <> '';
