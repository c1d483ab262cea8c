-- Chains the leader builds (issue 15): invitations a supplier accepts or declines, and the
-- history of membership, so a chain's figure over a window counts the suppliers that were its
-- members throughout it. chain_member stays the membership of now.
CREATE TABLE chain_invitation (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    chain_id       bigint NOT NULL REFERENCES chain ON DELETE CASCADE,
    enterprise_id  bigint NOT NULL REFERENCES enterprise ON DELETE CASCADE,
    tier           smallint NOT NULL CHECK (tier BETWEEN 1 AND 9),
    status         text NOT NULL DEFAULT 'invited'
                   CHECK (status IN ('invited', 'accepted', 'declined')),
    invited_by     text NOT NULL,
    invited_at     timestamptz NOT NULL DEFAULT now(),
    decided_by     text,
    decided_at     timestamptz
);
CREATE UNIQUE INDEX chain_invitation_open ON chain_invitation (chain_id, enterprise_id)
    WHERE status = 'invited';

-- [valid_from, valid_to); valid_to NULL = a member now. Members named by a registry file are
-- members "always" (1970) unless they were members before.
CREATE TABLE chain_member_history (
    chain_id       bigint NOT NULL REFERENCES chain ON DELETE CASCADE,
    enterprise_id  bigint NOT NULL REFERENCES enterprise ON DELETE CASCADE,
    tier           smallint NOT NULL,
    valid_from     timestamptz NOT NULL,
    valid_to       timestamptz,
    PRIMARY KEY (chain_id, enterprise_id, valid_from)
);
INSERT INTO chain_member_history (chain_id, enterprise_id, tier, valid_from)
SELECT chain_id, enterprise_id, tier, '1970-01-01 00:00:00+00' FROM chain_member;
