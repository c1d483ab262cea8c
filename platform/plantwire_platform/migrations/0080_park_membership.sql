-- Parks that register their enterprises (issue 15): a park's authority asks, the enterprise
-- consents (or declines), and membership is kept with its history, so a park's figure over a
-- window counts the enterprises that were in it throughout. enterprise.park_id stays the
-- park of now.
CREATE TABLE park_registration (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    park_id        bigint NOT NULL REFERENCES park ON DELETE CASCADE,
    enterprise_id  bigint NOT NULL REFERENCES enterprise ON DELETE CASCADE,
    status         text NOT NULL DEFAULT 'asked'
                   CHECK (status IN ('asked', 'accepted', 'declined')),
    asked_by       text NOT NULL,
    asked_at       timestamptz NOT NULL DEFAULT now(),
    decided_by     text,
    decided_at     timestamptz
);
CREATE UNIQUE INDEX park_registration_open ON park_registration (park_id, enterprise_id)
    WHERE status = 'asked';

CREATE TABLE park_member_history (
    park_id        bigint NOT NULL REFERENCES park ON DELETE CASCADE,
    enterprise_id  bigint NOT NULL REFERENCES enterprise ON DELETE CASCADE,
    valid_from     timestamptz NOT NULL,
    valid_to       timestamptz,
    PRIMARY KEY (park_id, enterprise_id, valid_from)
);
INSERT INTO park_member_history (park_id, enterprise_id, valid_from)
SELECT park_id, id, '1970-01-01 00:00:00+00' FROM enterprise WHERE park_id IS NOT NULL;
