-- 008_console: the admin console's own tables in the shared history (issue 19, SPEC §6 "Incident
-- console"): saved views, and who looked (exports and view changes with the admin's identity).
-- `tollgate admin` writes them, so the console role needs INSERT and DELETE here (README-facets.md,
-- "Least-privilege roles"). Forward-only; the runner wraps this file in one transaction.
CREATE TABLE console_views (
  id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  name          text   NOT NULL UNIQUE,
  query         text   NOT NULL,
  created_by    text   NOT NULL,
  created_at_ms bigint NOT NULL
);

CREATE TABLE console_events (
  id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  at_ms        bigint NOT NULL,
  actor        text   NOT NULL,
  actor_source text   NOT NULL,
  action       text   NOT NULL,
  detail       jsonb  NOT NULL
);
