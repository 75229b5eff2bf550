-- 006_tunnel_id: requests inside an inspected tunnel (issue 18, SPEC §6 "TLS inspection"). Each is
-- recorded with kind 'https' and `tunnel_id`, the id of its tunnel's (CONNECT) record; tunnel_id
-- is NULL for every other record and for every record written before this migration.
-- Forward-only; the runner wraps this file in one transaction.
--
-- 001 allows kind IN ('connect', 'http') only, and SQLite cannot change a CHECK constraint: ALTER
-- TABLE adds, renames and drops columns, and editing the schema text in place (writable_schema)
-- is refused on better-sqlite3's connections, which run in SQLite's defensive mode. So the table
-- is rebuilt as SQLite's documentation describes (lang_altertable.html, "Making Other Kinds Of
-- Table Schema Changes"): a new table, every row copied with its id, the old one dropped, the new
-- one renamed, then 001's and 002's indexes and 002's delete trigger made again. It is one pass
-- over the file, once: the README gives the time measured per million records.
--
-- Columns keep their order (peer_ip and sni where 004 and 005 appended them); carry-over.ts
-- copies rows by column name, so the order matters to nothing but a reader's eye.
CREATE TABLE requests_006 (
  id             INTEGER PRIMARY KEY AUTOINCREMENT,
  started_at_ms  INTEGER NOT NULL,
  ended_at_ms    INTEGER,
  client_ip      TEXT    NOT NULL,
  client_port    INTEGER NOT NULL,
  clients        TEXT    NOT NULL DEFAULT '[]' CHECK (json_valid(clients)),
  user           TEXT,
  kind           TEXT    NOT NULL CHECK (kind IN ('connect', 'http', 'https')),
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
  bytes_up       INTEGER NOT NULL DEFAULT 0,
  bytes_down     INTEGER NOT NULL DEFAULT 0,
  error          TEXT,
  policy_version TEXT,
  peer_ip        TEXT,
  sni            TEXT,
  tunnel_id      INTEGER
) STRICT;

INSERT INTO requests_006 (id, started_at_ms, ended_at_ms, client_ip, client_port, clients, user, kind, method,
    scheme, host, port, path, resolved_ip, decision, would_deny, rule, rule_source, reason, status, bytes_up,
    bytes_down, error, policy_version, peer_ip, sni)
  SELECT id, started_at_ms, ended_at_ms, client_ip, client_port, clients, user, kind, method,
    scheme, host, port, path, resolved_ip, decision, would_deny, rule, rule_source, reason, status, bytes_up,
    bytes_down, error, policy_version, peer_ip, sni
  FROM requests ORDER BY id;

-- AUTOINCREMENT: an id is never handed out twice, even one whose record retention has deleted,
-- so the new table's sequence is the old one's, not the highest id copied.
DELETE FROM sqlite_sequence WHERE name = 'requests_006';
INSERT INTO sqlite_sequence (name, seq) SELECT 'requests_006', seq FROM sqlite_sequence WHERE name = 'requests';

-- Dropped first so that nothing can fire it; DROP TABLE would drop it anyway.
DROP TRIGGER requests_side_tables_delete;
DROP TABLE requests;
-- RENAME also renames the table's sqlite_sequence row.
ALTER TABLE requests_006 RENAME TO requests;

-- 001's and 002's indexes, as they were (their comments say why each is there).
CREATE INDEX requests_started_at ON requests (started_at_ms);
CREATE INDEX requests_host ON requests (host);
CREATE INDEX requests_decision ON requests (decision, id);
CREATE INDEX requests_open ON requests (id) WHERE ended_at_ms IS NULL;
CREATE INDEX requests_client_ip ON requests (client_ip);
CREATE INDEX requests_would_deny ON requests (id) WHERE would_deny = 1;
CREATE INDEX requests_rule_started ON requests (rule, started_at_ms);

-- `/api/requests?tunnel_id=N` (a tunnel's page lists the requests inside it) walks this index
-- backwards (an index on (col) is one on (col, rowid)). Partial: only inspected requests have a
-- tunnel, so every other insert leaves it untouched.
CREATE INDEX requests_tunnel_id ON requests (tunnel_id) WHERE tunnel_id IS NOT NULL;

-- 002's delete trigger, as it was (retention relies on it; 003 kept it).
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
