-- Regions have no table of their own: a region is known once an enterprise is or was in it,
-- was asked into it, or an authority is bound to it (issue 15). Its authority reads its
-- (possibly still empty) roll-up from then on, and a past window stays readable after its
-- last member left.
CREATE VIEW known_region (region) AS
    SELECT region FROM region_member_history
    UNION SELECT region FROM region_registration
    UNION SELECT region FROM partner_client
          WHERE role = 'region_authority' AND coalesce(region, '') <> '';
