-- 003_index_consumer: what the log's SQLite index consumer (src/audit/log/index-consumer.ts) needs
-- (issue 14). Forward-only; the runner wraps this file in one transaction. Harmless to the store:
-- its writes behave exactly as under 002.

-- How far into the audit log this file has applied: the position of the next entry to read. The
-- consumer rewrites it in the same transaction as the rows, so a crash leaves both or neither.
-- No row: nothing applied yet (a new file, or a store written before the log existed).
CREATE TABLE index_position (
  id          INTEGER PRIMARY KEY CHECK (id = 1),
  segment     INTEGER NOT NULL,
  byte_offset INTEGER NOT NULL
) STRICT;

-- The consumer keeps the side tables itself, one upsert per key per batch (src/audit/log/
-- side-tables.ts), which is most of what it saves over a trigger per row. It inserts a row here
-- at the start of each of its transactions and deletes it before the commit, so the table is
-- empty in every committed state: no other connection ever sees the row (WAL readers see commits
-- only, and SQLite has one writer at a time), and a crash rolls it back with the rest. The switch
-- is therefore local to the consumer's own transaction, while every other writer (the store, a
-- restored backup, a `sqlite3` shell) keeps the side tables by the trigger, as 002 says.
CREATE TABLE side_tables_deferred (
  id INTEGER PRIMARY KEY CHECK (id = 1)
) STRICT;

-- 002's trigger, body unchanged, now skipped inside the consumer's transactions.
DROP TRIGGER requests_side_tables;
CREATE TRIGGER requests_side_tables AFTER INSERT ON requests
WHEN NOT EXISTS (SELECT 1 FROM side_tables_deferred)
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
