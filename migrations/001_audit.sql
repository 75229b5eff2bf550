-- 001_audit: the audit log (SPEC §4). Forward-only: never edit an applied migration, add 002_*.sql.
-- The runner (src/audit/migrate.ts) wraps this file in one transaction, so no BEGIN/COMMIT here.
--
-- STRICT makes SQLite reject a value of the wrong type instead of silently storing it (a text
-- port, a fractional byte count); it needs SQLite >= 3.37 to open the file.
-- AUTOINCREMENT keeps ids from ever being reused, even after the newest rows are deleted: an id is
-- handed to clients as X-Tollgate-Request-Id and must name one record forever, and keyset
-- pagination relies on new rows always sorting above old ones.
CREATE TABLE requests (
  id             INTEGER PRIMARY KEY AUTOINCREMENT,
  started_at_ms  INTEGER NOT NULL,          -- milliseconds since the Unix epoch, UTC
  ended_at_ms    INTEGER,                   -- NULL while the connection is open
  client_ip      TEXT    NOT NULL,
  client_port    INTEGER NOT NULL,
  clients        TEXT    NOT NULL DEFAULT '[]' CHECK (json_valid(clients)),  -- JSON array of group names
  user           TEXT,
  kind           TEXT    NOT NULL CHECK (kind IN ('connect', 'http')),
  method         TEXT,
  scheme         TEXT,
  host           TEXT,
  port           INTEGER,
  path           TEXT,
  resolved_ip    TEXT,
  decision       TEXT    NOT NULL CHECK (decision IN ('allow', 'deny')),
  would_deny     INTEGER NOT NULL DEFAULT 0 CHECK (would_deny IN (0, 1)),
  rule           TEXT,
  rule_source    TEXT,
  reason         TEXT    NOT NULL,
  status         INTEGER,
  bytes_up       INTEGER NOT NULL DEFAULT 0, -- client -> destination
  bytes_down     INTEGER NOT NULL DEFAULT 0, -- destination -> client
  error          TEXT,
  policy_version TEXT
) STRICT;

-- Newest-first keyset pagination (ORDER BY id DESC, WHERE id < ?) walks the rowid B-tree
-- backwards, so it needs no index of its own. The indexes below serve the SPEC §5 filters and
-- stats; each one costs a little on every insert, so only the common ones are here.
CREATE INDEX requests_started_at ON requests (started_at_ms);
CREATE INDEX requests_host ON requests (host);
CREATE INDEX requests_decision ON requests (decision, id);
-- Graceful shutdown completes the records still open; few rows are open at any time, so a partial
-- index finds them without scanning the whole log.
CREATE INDEX requests_open ON requests (id) WHERE ended_at_ms IS NULL;

-- One row, rewritten by the /readyz probe: a real write is the only test that the disk still
-- accepts writes (full disk, read-only remount), which taking a lock alone would not show.
CREATE TABLE heartbeat (
  id       INTEGER PRIMARY KEY CHECK (id = 1),
  at_ms    INTEGER NOT NULL
) STRICT;
