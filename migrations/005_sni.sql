-- 005_sni: the server name a TLS client named in its ClientHello inside a CONNECT tunnel (issue 17,
-- SPEC §6 Trust, the record's `sni`). NULL for plain HTTP, for a tunnel whose first bytes were not
-- read (`tls: any`), and for every record written before this migration. Forward-only; adding a
-- NULL column rewrites no row.
ALTER TABLE requests ADD COLUMN sni TEXT;
