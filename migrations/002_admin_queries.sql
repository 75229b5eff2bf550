-- 002_admin_queries: indexes and side tables for the admin API's filters, stats, first-seen view
-- and rule hit counts (SPEC §5). Forward-only; the runner wraps this file in one transaction.
--
-- Every side table is filled by the AFTER INSERT trigger below, in plain SQL (no application
-- function), so any connection that inserts a record keeps them right: the store, a restored
-- backup, a `sqlite3` shell. Existing records are backfilled at the end of this file.
--
-- An index on (col) is an index on (col, rowid) in SQLite, so `col = ? AND id < ? ORDER BY id
-- DESC LIMIT n` is a backwards range walk that stops after n entries (every newest-first page,
-- src/audit/request-plan.ts), and `col = ? AND id BETWEEN ? AND ?` counts a window without
-- reading the table (src/audit/stats.ts).
--
-- Every index and side table costs pages on every insert: each commit appends every page it
-- changed to the write-ahead log, and the proxy writes one record per request on its event loop.
-- Measured in WAL frames per insert: 5.7 with 001 alone, 10.7 with this file. So only what pays
-- for itself is here. There is no index on `status`: it is set when a record completes, so it
-- would cost pages on both writes, and status filters are dense enough for a rowid walk.
-- bench/results/audit.md has the measurements.
CREATE INDEX requests_client_ip ON requests (client_ip);
-- would_deny is rare and only `= 1` is worth an index: a partial index costs nothing otherwise.
CREATE INDEX requests_would_deny ON requests (id) WHERE would_deny = 1;
-- Rule hit counts and last hit per rule in a window, answered from the index alone.
CREATE INDEX requests_rule_started ON requests (rule, started_at_ms);

-- The client groups of each record (`requests.clients` is a JSON array, which no index reaches).
CREATE TABLE request_clients (
  client     TEXT    NOT NULL,
  request_id INTEGER NOT NULL,
  PRIMARY KEY (client, request_id)
) STRICT, WITHOUT ROWID;

-- Per UTC minute of started_at: the id range of its records and their decision counts (the
-- counts ride on a row the insert rewrites anyway, so they cost no extra page). Ids follow
-- insertion order and a record is inserted when it is decided, so ids and start times almost
-- agree but not exactly (an allowed CONNECT is inserted after DNS and connect, the clock can
-- step, a reopened file gets records carried over). A time window becomes an id range certain
-- to hold every record of the window: the union of its minutes' ranges. Queries still test
-- started_at_ms; the range only bounds the walk.
CREATE TABLE request_minutes (
  minute     INTEGER PRIMARY KEY,           -- started_at_ms / 60000
  first_id   INTEGER NOT NULL,
  last_id    INTEGER NOT NULL,
  allowed    INTEGER NOT NULL DEFAULT 0,
  denied     INTEGER NOT NULL DEFAULT 0,
  would_deny INTEGER NOT NULL DEFAULT 0
) STRICT;

-- The first record ever of each destination, and of each (client address, destination) pair:
-- "what is new since yesterday" without scanning the whole log. Kept when old records are deleted.
CREATE TABLE first_seen_hosts (
  host        TEXT    PRIMARY KEY,
  first_id    INTEGER NOT NULL,
  first_at_ms INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
CREATE INDEX first_seen_hosts_at ON first_seen_hosts (first_at_ms);

CREATE TABLE first_seen_client_hosts (
  client_ip   TEXT    NOT NULL,
  host        TEXT    NOT NULL,
  first_id    INTEGER NOT NULL,
  first_at_ms INTEGER NOT NULL,
  PRIMARY KEY (client_ip, host)
) STRICT, WITHOUT ROWID;
CREATE INDEX first_seen_client_hosts_at ON first_seen_client_hosts (first_at_ms);

-- "First" is the earliest start time, not the first insert: a record inserted late (a slow
-- CONNECT) with an earlier start replaces the entry.
CREATE TRIGGER requests_side_tables AFTER INSERT ON requests
BEGIN
  INSERT INTO request_clients (client, request_id)
    SELECT value, NEW.id FROM json_each(NEW.clients) WHERE type = 'text'
    ON CONFLICT DO NOTHING;
  INSERT INTO request_minutes (minute, first_id, last_id, allowed, denied, would_deny)
    VALUES (NEW.started_at_ms / 60000, NEW.id, NEW.id, NEW.decision = 'allow', NEW.decision = 'deny', NEW.would_deny)
    ON CONFLICT (minute) DO UPDATE SET
      first_id = min(first_id, excluded.first_id),
      last_id = max(last_id, excluded.last_id),
      allowed = allowed + excluded.allowed,
      denied = denied + excluded.denied,
      would_deny = would_deny + excluded.would_deny;
  INSERT INTO first_seen_hosts (host, first_id, first_at_ms)
    SELECT NEW.host, NEW.id, NEW.started_at_ms WHERE NEW.host IS NOT NULL
    ON CONFLICT (host) DO UPDATE SET first_id = excluded.first_id, first_at_ms = excluded.first_at_ms
      WHERE excluded.first_at_ms < first_seen_hosts.first_at_ms;
  INSERT INTO first_seen_client_hosts (client_ip, host, first_id, first_at_ms)
    SELECT NEW.client_ip, NEW.host, NEW.id, NEW.started_at_ms WHERE NEW.host IS NOT NULL
    ON CONFLICT (client_ip, host) DO UPDATE SET first_id = excluded.first_id, first_at_ms = excluded.first_at_ms
      WHERE excluded.first_at_ms < first_seen_client_hosts.first_at_ms;
END;

-- A retention job that deletes records must not leave group rows pointing at nothing, nor
-- counts that no record backs. A minute keeps its id range (wider than what remains is still
-- correct: it only bounds a walk). Decisions are never updated, so no UPDATE trigger.
CREATE TRIGGER requests_side_tables_delete AFTER DELETE ON requests
BEGIN
  DELETE FROM request_clients
    WHERE request_id = OLD.id AND client IN (SELECT value FROM json_each(OLD.clients));
  UPDATE request_minutes SET
      allowed = allowed - (OLD.decision = 'allow'),
      denied = denied - (OLD.decision = 'deny'),
      would_deny = would_deny - OLD.would_deny
    WHERE minute = OLD.started_at_ms / 60000;
END;

-- Backfill from the records written before this migration.
INSERT INTO request_clients (client, request_id)
  SELECT j.value, r.id FROM requests AS r, json_each(r.clients) AS j WHERE j.type = 'text'
  ON CONFLICT DO NOTHING;
INSERT INTO request_minutes (minute, first_id, last_id, allowed, denied, would_deny)
  SELECT started_at_ms / 60000, min(id), max(id), sum(decision = 'allow'), sum(decision = 'deny'), sum(would_deny)
  FROM requests GROUP BY started_at_ms / 60000;
-- A bare column next to min() takes its value from the row holding the minimum (SQLite).
INSERT INTO first_seen_hosts (host, first_at_ms, first_id)
  SELECT host, min(started_at_ms), id FROM requests WHERE host IS NOT NULL GROUP BY host;
INSERT INTO first_seen_client_hosts (client_ip, host, first_at_ms, first_id)
  SELECT client_ip, host, min(started_at_ms), id FROM requests WHERE host IS NOT NULL
  GROUP BY client_ip, host;
