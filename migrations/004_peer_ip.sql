-- 004_peer_ip: the load balancer a request came through (issue 16, SPEC §6 `peer_ip`). With
-- `serve --proxy-protocol-from`, client_ip/client_port are the client a PROXY protocol header
-- named and peer_ip the address that connected; NULL for a direct connection and for every
-- record written before this migration. Forward-only; adding a NULL column rewrites no row.
ALTER TABLE requests ADD COLUMN peer_ip TEXT;
