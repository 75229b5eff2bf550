-- 001_console: what the admin console keeps of its own (issue 19, SPEC §6 "Incident console"), in a
-- file of its own beside the audit index (`<db name>.console.db`): the index is rebuilt from the
-- audit log whenever it is lost, and saved views and the record of who looked must not go with it.
-- Forward-only: add 002_*.sql, never edit this one.

-- Named filter sets shared by every admin: `query` is the filters as a URL query string.
CREATE TABLE console_views (
  id            INTEGER PRIMARY KEY AUTOINCREMENT,
  name          TEXT    NOT NULL UNIQUE,
  query         TEXT    NOT NULL,
  created_by    TEXT    NOT NULL,
  created_at_ms INTEGER NOT NULL
) STRICT;

-- Who looked: every export and every change to the views, with the admin's identity and its
-- source (token, session, proxy_header, loopback). Appended only; ids never reused.
CREATE TABLE console_events (
  id           INTEGER PRIMARY KEY AUTOINCREMENT,
  at_ms        INTEGER NOT NULL,
  actor        TEXT    NOT NULL,
  actor_source TEXT    NOT NULL,
  action       TEXT    NOT NULL,
  detail       TEXT    NOT NULL
) STRICT;
