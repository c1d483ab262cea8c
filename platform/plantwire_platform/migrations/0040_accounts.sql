-- Accounts (issue 15): people sign in with a password, machines (partner clients) with a secret;
-- both are identities of partner_client, so one token verification serves every API. New roles:
-- enterprise viewers, chain-leader analysts (of the chain leader's enterprise), and park or
-- region authorities (bound to a park or a region instead of an enterprise).
ALTER TABLE partner_client DROP CONSTRAINT partner_client_role_check;
ALTER TABLE partner_client DROP CONSTRAINT partner_client_check;
ALTER TABLE partner_client ADD COLUMN park_id bigint REFERENCES park ON DELETE CASCADE;
ALTER TABLE partner_client ADD COLUMN region text;
ALTER TABLE partner_client ADD CONSTRAINT partner_client_role_check CHECK (role IN (
    'platform_admin', 'enterprise_admin', 'enterprise_viewer', 'chain_analyst',
    'park_authority', 'region_authority', 'partner'));
ALTER TABLE partner_client ADD CONSTRAINT partner_client_binding_check CHECK (
    (enterprise_id IS NULL) = (role IN ('platform_admin', 'park_authority', 'region_authority'))
    AND (park_id IS NOT NULL) = (role = 'park_authority')
    AND (coalesce(region, '') <> '') = (role = 'region_authority'));

-- A person's password, hashed with Argon2id (the hash names its parameters).
CREATE TABLE account_password (
    client_id   text PRIMARY KEY REFERENCES partner_client ON DELETE CASCADE,
    hash        text NOT NULL,
    changed_at  timestamptz NOT NULL DEFAULT now()
);
