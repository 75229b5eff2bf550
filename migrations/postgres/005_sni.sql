-- 005_sni: the server name a TLS client named in its ClientHello inside a CONNECT tunnel (issue 17,
-- SPEC §6 Trust, the record's `sni`); NULL for plain HTTP, an unchecked tunnel, and every record
-- shipped before. Forward-only; a NULL column rewrites no row. The shipper's INSERT on requests is
-- granted on the table, not per column, so it needs no new GRANT.
ALTER TABLE requests ADD COLUMN sni text;
