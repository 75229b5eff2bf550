-- 001_fleet: the fleet's shared audit history in PostgreSQL (issue 15, SPEC §6). Forward-only:
-- never edit an applied migration, add 002_*.sql. The runner (src/fleet/pg-migrate.ts) holds an
-- advisory lock while it applies, and wraps each file in one transaction with its
-- schema_migrations row, so replicas upgraded one by one never apply a file twice.

-- One row per local store that ever shipped: its own UUID (the `store-id` file in its log folder)
-- is the key; `node` is the name people see. Two stores claiming one name are both kept (the
-- console flags the name). The ship position is the store's log position after the last entry
-- shipped, committed in the same transaction as the rows it covers.
CREATE TABLE audit_stores (
  store_id        uuid    PRIMARY KEY,
  node            text    NOT NULL,
  first_contact_ms bigint NOT NULL,
  last_contact_ms bigint  NOT NULL,
  policy_version  text,
  ship_segment    bigint  NOT NULL DEFAULT 0,
  ship_offset     bigint  NOT NULL DEFAULT 0,
  shipped_entries bigint  NOT NULL DEFAULT 0,
  -- The newest local id shipped and when it started: the console's "last record" per node.
  last_local_id   bigint,
  last_record_ms  bigint
);
CREATE INDEX audit_stores_node ON audit_stores (node);

-- The records of every store. `id` is the shared history's own (the order records arrived in,
-- which the API's newest-first pages and cursors follow); (store_id, local_id) is the record's
-- identity, so a batch shipped twice lands once. Columns as the SQLite store's (001_audit.sql),
-- with PostgreSQL types: clients is text[], would_deny boolean.
CREATE TABLE requests (
  id             bigint  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  store_id       uuid    NOT NULL REFERENCES audit_stores (store_id),
  local_id       bigint  NOT NULL,
  node           text    NOT NULL,
  started_at_ms  bigint  NOT NULL,
  ended_at_ms    bigint,
  client_ip      text    NOT NULL,
  client_port    integer NOT NULL,
  clients        text[]  NOT NULL DEFAULT '{}',
  "user"         text,
  kind           text    NOT NULL CHECK (kind IN ('connect', 'http')),
  method         text,
  scheme         text,
  host           text,
  port           integer,
  path           text,
  resolved_ip    text,
  decision       text    NOT NULL CHECK (decision IN ('allow', 'deny')),
  would_deny     boolean NOT NULL DEFAULT false,
  rule           text,
  rule_source    text,
  reason         text    NOT NULL,
  status         integer,
  bytes_up       bigint  NOT NULL DEFAULT 0,
  bytes_down     bigint  NOT NULL DEFAULT 0,
  error          text,
  policy_version text,
  UNIQUE (store_id, local_id)
);

-- Newest-first pages walk an index on (filter column, id) backwards and stop after a page:
-- the same plan as SQLite's (col, rowid) indexes (src/audit/request-plan.ts).
CREATE INDEX requests_started_at ON requests (started_at_ms);
CREATE INDEX requests_host ON requests (host, id);
CREATE INDEX requests_client_ip ON requests (client_ip, id);
CREATE INDEX requests_decision ON requests (decision, id);
CREATE INDEX requests_node ON requests (node, id);
CREATE INDEX requests_would_deny ON requests (id) WHERE would_deny;
CREATE INDEX requests_rule_started ON requests (rule, started_at_ms);
CREATE INDEX requests_clients ON requests USING gin (clients);
CREATE INDEX requests_open ON requests (id) WHERE ended_at_ms IS NULL;

-- Per UTC minute of started_at: decision counts (a day's totals read 1,440 rows, not a day of
-- records). Kept by the shipper in the transaction that inserts the records, and by prune.
CREATE TABLE request_minutes (
  minute     bigint PRIMARY KEY,              -- started_at_ms / 60000
  allowed    bigint NOT NULL DEFAULT 0,
  denied     bigint NOT NULL DEFAULT 0,
  would_deny bigint NOT NULL DEFAULT 0
);

-- The first record of each destination, and of each (client address, destination) pair, across
-- the fleet: "what is new since yesterday". Kept when old records are pruned.
CREATE TABLE first_seen_hosts (
  host        text   PRIMARY KEY,
  first_id    bigint NOT NULL,
  first_at_ms bigint NOT NULL
);
CREATE INDEX first_seen_hosts_at ON first_seen_hosts (first_at_ms);

CREATE TABLE first_seen_client_hosts (
  client_ip   text   NOT NULL,
  host        text   NOT NULL,
  first_id    bigint NOT NULL,
  first_at_ms bigint NOT NULL,
  PRIMARY KEY (client_ip, host)
);
CREATE INDEX first_seen_client_hosts_at ON first_seen_client_hosts (first_at_ms);
