-- Console sessions (issue 17): a refresh token kept in an httpOnly cookie lets the console get
-- new short access tokens while it is in use. Only the token's SHA-256 is stored. Each refresh
-- rotates it: the used row is marked, a new one of the same family (one sign-in) is added. A
-- used token presented again closes its whole family (it was copied). The identity's
-- token_epoch when the family began is kept: a password change, a disabled identity or
-- revoked tokens raise the epoch, which ends the session at its next refresh.
CREATE TABLE account_session (
    id          bigserial PRIMARY KEY,
    family      uuid NOT NULL,
    client_id   text NOT NULL REFERENCES partner_client ON DELETE CASCADE,
    token_hash  bytea NOT NULL UNIQUE,
    epoch       bigint NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz
);
CREATE INDEX account_session_family ON account_session (family);
CREATE INDEX account_session_client ON account_session (client_id);
