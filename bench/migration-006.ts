import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import Database from 'better-sqlite3';

/**
 * What migration 006 (kind https, tunnel_id) costs at the first start of the release that brings
 * it: SQLite cannot widen 001's CHECK on kind, so the file's `requests` table is rebuilt once
 * (migrations/006_tunnel_id.sql). A file migrated to 005 is filled with N plausible records
 * (one in three with an sni), then 006 is applied as the runner applies it (one IMMEDIATE
 * transaction, WAL) and timed.
 * Usage: tsc -p bench/tsconfig.json && node bench/dist/migration-006.js [--records 1000000]
 */

const MIGRATIONS = path.resolve(__dirname, '..', '..', 'migrations');

function fill(db: Database.Database, records: number): void {
  const insert = db.prepare(`INSERT INTO requests (started_at_ms, ended_at_ms, client_ip, client_port, clients, kind, method, host,
      port, resolved_ip, decision, rule, rule_source, reason, status, bytes_up, bytes_down, policy_version, sni)
    VALUES (?, ?, ?, 40000, '["ci-runners"]', 'connect', 'CONNECT', ?, 443, '140.82.112.3', 'allow', 'github', '20-allow.yaml:7',
      'matched rule "github" (allow)', 200, 1234, 56789, 'sha256:3f2a9c1e0b7d', ?)`);
  const batch = db.transaction((from: number, to: number) => {
    for (let i = from; i < to; i += 1) {
      const host = `h${i % 500}.example.com`;
      insert.run(1.74e12 + i * 50, 1.74e12 + i * 50 + 30, `10.0.${i % 50}.1`, host, i % 3 === 0 ? host : null);
    }
  });
  for (let from = 0; from < records; from += 100_000) batch(from, Math.min(records, from + 100_000));
}

function main(): void {
  const { values } = parseArgs({ options: { records: { type: 'string', default: '1000000' } } });
  const records = Number(values.records);
  const dir = mkdtempSync(path.join(tmpdir(), 'tollgate-migration-006-'));
  try {
    const file = path.join(dir, 'audit.db');
    const sqlOf = (name: string): string => readFileSync(path.join(MIGRATIONS, name), 'utf8');
    const before = readdirSync(MIGRATIONS).filter((name) => /^00[1-5]_.*\.sql$/.test(name)).sort();
    const db = new Database(file);
    db.pragma('journal_mode = WAL');
    for (const name of before) db.transaction(() => db.exec(sqlOf(name))).immediate();
    fill(db, records);
    db.close();
    const megabytes = statSync(file).size / 1e6;

    const again = new Database(file);
    again.pragma('journal_mode = WAL');
    const started = process.hrtime.bigint();
    again.transaction(() => again.exec(sqlOf('006_tunnel_id.sql'))).immediate();
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    const count = again.prepare('SELECT count(*) FROM requests').pluck().get() as number;
    again.close();
    if (count !== records) throw new Error(`expected ${records} records after 006, found ${count}`);
    console.log(`migration 006 on ${records} records (${megabytes.toFixed(0)} MB file): ${(ms / 1000).toFixed(2)} s`
      + ` (${cpus().length} cores, load ${loadavg()[0].toFixed(2)})`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

main();
