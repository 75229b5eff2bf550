-- 003_index_consumer: what the log's SQLite index consumer (src/audit/log/index-consumer.ts) needs,
-- and side tables kept by the application instead of a trigger (issue 14). Forward-only; the
-- runner wraps this file in one transaction.

-- How far into the audit log this file has applied: the position of the next entry to read. The
-- consumer rewrites it in the same transaction as the rows, so a crash leaves both or neither.
-- No row: nothing applied yet (a new file, or a store written before the log existed).
CREATE TABLE index_position (
  id          INTEGER PRIMARY KEY CHECK (id = 1),
  segment     INTEGER NOT NULL,
  byte_offset INTEGER NOT NULL
) STRICT;

-- 002's AFTER INSERT trigger ran four statements per inserted row, and most of an insert's cost
-- was there (issue 14, better-sqlite3, WAL, 001's indexes: 37-39 µs per record with it, 9.9
-- without). Even a trigger that does nothing costs a trigger frame per row: 16-17 µs per insert
-- with one whose WHEN is false against 10 with none (bench/results/log-append.md). So it goes, and
-- every writer of `requests` in this code base keeps the side tables itself, aggregating what it
-- inserted in one transaction into one upsert per key (src/audit/log/side-tables.ts): the store's
-- commitBatch and single inserts (connection.ts), a carried-over file (carry-over.ts), the index
-- consumer (log/index-db.ts), the benchmarks' generators. The results are 002's, row for row.
--
-- The price, chosen knowingly: a row inserted by anything else (a `sqlite3` shell, a script, a
-- restored partial dump) no longer reaches request_clients, request_minutes or first_seen_*, so
-- the admin API's group filters, stats and first-seen view miss it. rebuildSideTables() in
-- side-tables.ts (002's backfill statements) refills the tables from `requests` if that happens.
--
-- 002's AFTER DELETE trigger stays: retention deletes rows one statement per batch, rarely, and
-- relies on it (src/audit/retention.ts).
DROP TRIGGER requests_side_tables;
