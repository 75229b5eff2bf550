-- 002_reader: what the admin console reading the shared history needs (issue 15). Forward-only.
--
-- Ids in the shared history follow arrival, not start time (a replica's backlog arrives late), so
-- a time filter becomes an id range by reading the window's min and max id. With the id in the
-- index, that is an index-only scan of the window's entries instead of a heap fetch per record.
CREATE INDEX requests_started_id ON requests (started_at_ms, id);
DROP INDEX requests_started_at;
