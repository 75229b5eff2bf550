-- 006_tunnel_id: requests inside an inspected tunnel (issue 18, SPEC §6 "TLS inspection"), recorded
-- with kind 'https' and linked to their tunnel's record. Forward-only; the runner wraps this file in
-- one transaction.
--
-- The link is stored as the replica's own id for the tunnel (`tunnel_local_id`, like `local_id`):
-- the shared history's id of the tunnel's row is only known once that row has arrived, which may
-- be in the same batch or, after a replica's outage, later. Readers turn it into the API's
-- `tunnel_id` through (store_id, local_id), the key every row already has (src/fleet/pg-records.ts),
-- so the shipper writes the value it has and needs no new grant: its INSERT on requests is granted
-- on the whole table. NULL for every other record and every record shipped before; a NULL column
-- rewrites no row.
ALTER TABLE requests ADD COLUMN tunnel_local_id bigint;

-- A tunnel's requests, newest first, for `/api/requests?tunnel_id=N`: the walk's slice query is
-- `store_id = $ AND tunnel_local_id = $ AND id in [lo, hi) ORDER BY id DESC`. Partial: only
-- inspected requests have a tunnel, so every other insert leaves it untouched.
CREATE INDEX requests_tunnel ON requests (tunnel_local_id, store_id, id) WHERE tunnel_local_id IS NOT NULL;

-- 001 allows kind IN ('connect', 'http'). The new check is wider, so every row already there
-- passes it: NOT VALID skips the scan of the whole history (under this ALTER's exclusive lock,
-- shippers and readers would wait for it), and PostgreSQL checks every row written from now on.
ALTER TABLE requests DROP CONSTRAINT requests_kind_check;
ALTER TABLE requests ADD CONSTRAINT requests_kind_check CHECK (kind IN ('connect', 'http', 'https')) NOT VALID;
