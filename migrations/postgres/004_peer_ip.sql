-- 004_peer_ip: the load balancer a request came through (issue 16, SPEC §6 `peer_ip`): the
-- address that connected when a PROXY protocol header named the client; NULL for a direct
-- connection and for every record shipped before. Forward-only; a NULL column rewrites no row.
ALTER TABLE requests ADD COLUMN peer_ip text;
