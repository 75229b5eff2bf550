-- 007_chain: the tamper-evident chain in the shared history (issue 17, SPEC §6 Trust). Each
-- replica's log entries are shipped as written, hash included, in the same transaction as the rows
-- they make, so `tollgate audit verify --audit-url` recomputes every replica's chain from
-- PostgreSQL alone and checks each row against the entries that made it (an edited row, a
-- deleted or inserted one, entries removed or reordered). Rows cannot be re-encoded into the
-- exact bytes that were hashed (PostgreSQL text holds no NUL, old entries lack later fields), so
-- the entries are kept whole: about as many bytes again as the rows (README).
-- Forward-only. Numbered after 006 so the field migration of issue 18 can take 006.
CREATE TABLE audit_chain (
  store_id uuid   NOT NULL REFERENCES audit_stores (store_id),
  -- The entry's place in its store's chain as shipped: 0, 1, 2, … with no gap.
  seq      bigint NOT NULL,
  -- The record id the entry carries (a checkpoint's: the last chained record before it).
  local_id bigint NOT NULL,
  -- The log entry's payload exactly as written (tag, id, time, hash, JSON body).
  entry    bytea  NOT NULL,
  PRIMARY KEY (store_id, seq)
);
-- No index on local_id: prune finds where to cut by walking the primary key from the copy's start
-- (what it walks is what it deletes), and every entry shipped would pay for one.

ALTER TABLE audit_stores
  -- Entries shipped into audit_chain: the next entry's seq.
  ADD COLUMN chain_entries   bigint NOT NULL DEFAULT 0,
  -- The chain's head as shipped (GET /api/audit/head on `tollgate admin`): record id and hash.
  ADD COLUMN chain_head_id   bigint,
  ADD COLUMN chain_hash      bytea,
  -- Rows of this store shipped before its chain was (local_id up to this): not verifiable.
  ADD COLUMN chain_after_local_id bigint,
  -- `audit prune` cut the chain: a record whose entry is below chain_cut_seq (the copy's length at
  -- the cut) and that started before chain_cut_ms is gone by design; any other missing row is a break.
  ADD COLUMN chain_cut_ms    bigint,
  ADD COLUMN chain_cut_seq   bigint;
