-- Registry, second step: parks ("fields"), industrial chains ("lines") with supplier tiers,
-- shift calendars, ideal cycle times, and the history of every fact an indicator depends on, so
-- a past period is computed with the registry as it was then.
CREATE TABLE park (
    id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code    text NOT NULL UNIQUE,
    name    text NOT NULL,
    region  text NOT NULL DEFAULT ''
);
ALTER TABLE enterprise ADD COLUMN park_id bigint REFERENCES park ON DELETE SET NULL;

CREATE TABLE chain (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code       text NOT NULL UNIQUE,
    name       text NOT NULL,
    leader_id  bigint NOT NULL REFERENCES enterprise ON DELETE CASCADE
);
CREATE TABLE chain_member (
    chain_id       bigint NOT NULL REFERENCES chain ON DELETE CASCADE,
    enterprise_id  bigint NOT NULL REFERENCES enterprise ON DELETE CASCADE,
    tier           smallint NOT NULL CHECK (tier BETWEEN 1 AND 9),
    PRIMARY KEY (chain_id, enterprise_id)
);

ALTER TABLE site ADD COLUMN shifts text NOT NULL DEFAULT '24h';
ALTER TABLE site ADD COLUMN workdays smallint[] NOT NULL DEFAULT '{0,1,2,3,4,5,6}';
ALTER TABLE equipment ADD COLUMN ideal_cycle_s double precision CHECK (ideal_cycle_s > 0);

-- Validity intervals [valid_from, valid_to); valid_to NULL = still valid. The first version of
-- an entity is valid from 1970-01-01 ("always"): the registry describes the plant as it was until a change
-- is recorded.
CREATE TABLE equipment_history (
    equipment_id  bigint NOT NULL REFERENCES equipment ON DELETE CASCADE,
    valid_from    timestamptz NOT NULL,
    valid_to      timestamptz,
    control_type  text NOT NULL,
    declared_nc   boolean NOT NULL,
    PRIMARY KEY (equipment_id, valid_from)
);
CREATE TABLE process_history (
    process_step_id  bigint NOT NULL REFERENCES process_step ON DELETE CASCADE,
    valid_from       timestamptz NOT NULL,
    valid_to         timestamptz,
    is_key           boolean NOT NULL,
    key_reason       text NOT NULL DEFAULT '',
    equipment_ids    bigint[] NOT NULL DEFAULT '{}',
    PRIMARY KEY (process_step_id, valid_from)
);

INSERT INTO equipment_history (equipment_id, valid_from, control_type, declared_nc)
SELECT id, '1970-01-01 00:00:00+00', control_type, declared_nc FROM equipment;

INSERT INTO process_history (process_step_id, valid_from, is_key, key_reason, equipment_ids)
SELECT p.id, '1970-01-01 00:00:00+00', p.is_key, p.key_reason,
       coalesce(array_agg(pe.equipment_id ORDER BY pe.equipment_id)
                FILTER (WHERE pe.equipment_id IS NOT NULL), '{}')
FROM process_step p LEFT JOIN process_equipment pe ON pe.process_step_id = p.id
GROUP BY p.id;
