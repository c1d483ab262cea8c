-- One gateway reads one site: no two sites of an enterprise (one Sparkplug group) share an
-- edge node id. Two such sites made the ingest give one gateway's machines to both (the roster
-- merged their devices; a machine code both had was bound to the lower equipment id).
-- The registry refuses them (docs/registry.md); this is the database's own guard. Deferred to
-- the commit, so that one document may swap the gateways of two sites.
--
-- A database that already holds such sites is not changed: which site the gateway reads is the
-- operator's to say. The migration stops, naming them, and runs once one site of each pair has
-- its own edge node (UPDATE site SET edge_node_id = ... WHERE id = ..., or a registry file
-- naming both sites with their edge nodes: plantwire platform registry import).
DO $$
DECLARE
    found text;
BEGIN
    SELECT string_agg(format('enterprise %s, edge node %s: sites %s', x.code, d.edge_node_id,
                             d.sites), '; ' ORDER BY x.code, d.edge_node_id)
      INTO found
      FROM (SELECT enterprise_id, edge_node_id,
                   string_agg(format('%s (id %s)', code, id), ', ' ORDER BY code) AS sites
              FROM site GROUP BY enterprise_id, edge_node_id HAVING count(*) > 1) d
      JOIN enterprise x ON x.id = d.enterprise_id;
    IF found IS NOT NULL THEN
        RAISE EXCEPTION 'sites of one enterprise share an edge node (one gateway reads one site): %', found
            USING HINT = 'give one site of each its own edge node (UPDATE site SET edge_node_id = '
                         '''...'' WHERE id = ...; or plantwire platform registry import a file naming '
                         'both sites with their edge nodes), then migrate again';
    END IF;
END $$;

ALTER TABLE site ADD CONSTRAINT site_edge_node_unique UNIQUE (enterprise_id, edge_node_id)
    DEFERRABLE INITIALLY DEFERRED;
