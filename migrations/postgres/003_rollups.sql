-- 003_rollups: what makes a time window cheap on the shared history (issue 15). Forward-only.
--
-- 1. request_minutes gets each minute's id range, as SQLite's has (migrations/002_admin_queries.sql).
--    Ids follow arrival, not start time, so a since/until filter becomes the id range
--    [min(first_id), max(last_id)] over the window's minutes: certain to hold every record of the
--    window (rows are still tested on started_at_ms), read from a few thousand rows instead of
--    the window's whole (started_at_ms, id) index range. Prune leaves a minute's range as it
--    was (wider than what remains only widens a walk).
-- 2. Hourly rollups for /api/stats's top lists: per UTC hour of started_at, the records per
--    destination (with their decisions), per client address and per client group. A day's top
--    lists read 24 hours of rollups plus the records of the two partly covered edge hours.
--
-- The shipper keeps all of them in the statement that inserts the records (src/fleet/pg-ship.ts),
-- prune subtracts what it deletes (src/fleet/pg-prune.ts). first_id/last_id are NOT NULL on
-- purpose: a replica still running an older tollgate cannot insert a minute without them, so it
-- stops shipping (its backlog waits on its disk) until it is upgraded, rather than shipping
-- records the rollups would never count.

ALTER TABLE request_minutes ADD COLUMN first_id bigint, ADD COLUMN last_id bigint;
UPDATE request_minutes AS m SET first_id = r.first_id, last_id = r.last_id
  FROM (SELECT started_at_ms / 60000 AS minute, min(id) AS first_id, max(id) AS last_id FROM requests GROUP BY 1) AS r
 WHERE m.minute = r.minute;
-- A minute counted with no record left cannot happen (prune removes a minute when its counts reach
-- zero); if one did, an empty range keeps it harmless rather than failing every replica's start.
UPDATE request_minutes SET first_id = 1, last_id = 0 WHERE first_id IS NULL;
ALTER TABLE request_minutes ALTER COLUMN first_id SET NOT NULL, ALTER COLUMN last_id SET NOT NULL;

CREATE TABLE request_hour_hosts (
  hour       bigint NOT NULL,                -- started_at_ms / 3600000
  host       text   NOT NULL,
  allowed    bigint NOT NULL DEFAULT 0,
  denied     bigint NOT NULL DEFAULT 0,
  would_deny bigint NOT NULL DEFAULT 0,
  PRIMARY KEY (hour, host)
);

CREATE TABLE request_hour_clients (
  hour      bigint NOT NULL,
  client_ip text   NOT NULL,
  requests  bigint NOT NULL DEFAULT 0,
  PRIMARY KEY (hour, client_ip)
);

-- A record in several groups counts once in each (as SQLite's request_clients makes it).
CREATE TABLE request_hour_groups (
  hour         bigint NOT NULL,
  client_group text   NOT NULL,
  requests     bigint NOT NULL DEFAULT 0,
  PRIMARY KEY (hour, client_group)
);

INSERT INTO request_hour_hosts (hour, host, allowed, denied, would_deny)
  SELECT started_at_ms / 3600000, host, count(*) FILTER (WHERE decision = 'allow'), count(*) FILTER (WHERE decision = 'deny'),
    count(*) FILTER (WHERE would_deny)
  FROM requests WHERE host IS NOT NULL GROUP BY 1, 2;
INSERT INTO request_hour_clients (hour, client_ip, requests)
  SELECT started_at_ms / 3600000, client_ip, count(*) FROM requests GROUP BY 1, 2;
INSERT INTO request_hour_groups (hour, client_group, requests)
  SELECT r.started_at_ms / 3600000, g.client_group, count(*)
  FROM requests AS r CROSS JOIN LATERAL (SELECT DISTINCT unnest(r.clients) AS client_group) AS g GROUP BY 1, 2;

-- Roles that keep request_minutes (the shipper, whoever prunes) keep the rollups too, with the same
-- privileges, so an upgrade needs no new GRANT (README: least-privilege roles).
DO $$
DECLARE
  g record;
BEGIN
  FOR g IN
    SELECT grantee, privilege_type FROM information_schema.role_table_grants
     WHERE table_schema = current_schema() AND table_name = 'request_minutes'
       AND privilege_type IN ('SELECT', 'INSERT', 'UPDATE', 'DELETE')
       AND grantee <> (SELECT tableowner FROM pg_tables WHERE schemaname = current_schema() AND tablename = 'request_minutes')
  LOOP
    EXECUTE format('GRANT %s ON request_hour_hosts, request_hour_clients, request_hour_groups TO %s', g.privilege_type,
      CASE WHEN g.grantee = 'PUBLIC' THEN 'PUBLIC' ELSE quote_ident(g.grantee) END);
  END LOOP;
END
$$;
