import type { Socket } from 'node:net';
import type { VolumeSpace } from '../src/audit/disk-watermark';
import { openAuditStore } from '../src/audit/store';
import { rawConnect, readAll, readUntil } from './helpers/proxy-harness';
import { startServed } from './helpers/served-proxy';
import type { ServedProxy } from './helpers/served-proxy';

/**
 * `--min-free-disk` and `--audit-fsync` on a served proxy (issue 14). A test cannot fill a real
 * disk, so the volume's free space comes from an injected statfs (STYLE habit 5); everything
 * else is real: the proxy, the writer thread, the admin API, the audit file.
 */

const GiB = 1024 ** 3;
const BLOCK = 4096;

/** A 100 GiB volume whose free space the test sets. */
function fakeVolume(): { statfs: () => VolumeSpace; setFree: (bytes: number) => void } {
  let free = 50 * GiB;
  return {
    statfs: () => ({ bsize: BLOCK, bavail: Math.floor(free / BLOCK), blocks: (100 * GiB) / BLOCK }),
    setFree: (bytes) => {
      free = bytes;
    },
  };
}

interface Readiness {
  ready: boolean;
  reason?: string;
  audit_disk: { free_bytes: number | null; min_free_bytes: number; low: boolean };
  audit: { fsync: boolean };
}

/** The proxy a test started, closed after it (both describes). */
let served: ServedProxy | null = null;

afterEach(async () => {
  await served?.close();
  served = null;
});

describe('serve --min-free-disk', () => {
  test('below the watermark requests get 503 and /readyz, /metrics and the log say so; it recovers', async () => {
    const volume = fakeVolume();
    const live = await startServed({
      config: { minFreeDisk: { bytes: GiB, percent: null } },
      deps: { statfs: volume.statfs, diskCheckIntervalMs: 20 },
    });
    served = live;
    expect((await live.get('/before')).status).toBe(200);
    // A tunnel open before the disk runs low: its completion must still reach the log.
    const tunnel: Socket = await rawConnect(live.running.proxyAddress.port);
    tunnel.write(`CONNECT 127.0.0.1:${live.origin.port} HTTP/1.1\r\nHost: 127.0.0.1:${live.origin.port}\r\n\r\n`);
    expect(await readUntil(tunnel, '\r\n\r\n')).toMatch(/^HTTP\/1\.1 200/);

    volume.setFree(100 * 1024 ** 2);
    await live.waitForLog((line) => line.msg.startsWith('low on disk: 100 MiB free, below --min-free-disk 1024 MiB'));
    const refused = await live.get('/during');
    expect(refused.status).toBe(503);
    expect(refused.body).toMatch(/audit log cannot be written/);
    const ready = await live.admin('/readyz');
    expect(ready.status).toBe(503);
    expect(ready.body).toMatchObject({ ready: false, reason: expect.stringMatching(/^low on disk/), audit_disk: { free_bytes: 100 * 1024 ** 2, min_free_bytes: GiB, low: true } });
    const metrics = (await live.admin('/metrics')).text;
    expect(metrics).toMatch(/^tollgate_audit_disk_low 1$/m);
    expect(metrics).toMatch(new RegExp(`^tollgate_audit_disk_free_bytes ${100 * 1024 ** 2}$`, 'm'));
    expect(metrics).toMatch(new RegExp(`^tollgate_audit_disk_min_free_bytes ${GiB}$`, 'm'));

    tunnel.end();
    await readAll(tunnel);
    volume.setFree(5 * GiB);
    await live.waitForLog((line) => line.msg.startsWith('disk space recovered'));
    expect((await live.get('/after')).status).toBe(200);
    expect((await live.admin('/readyz')).status).toBe(200);
    expect((await live.admin('/metrics')).text).toMatch(/^tollgate_audit_disk_low 0$/m);
    const records = await live.records();
    expect(records.map((r) => r.path).filter((p) => p !== null)).toEqual(['/after', '/before']);
    // Completed while the disk was low: completions are never refused.
    expect(records.find((r) => r.kind === 'connect')?.ended_at).not.toBeNull();
    expect(live.lines.filter((line) => line.msg.startsWith('low on disk'))).toHaveLength(1);
  });

  test('a start already below the watermark refuses the first request', async () => {
    const volume = fakeVolume();
    // The default: the smaller of 1 GiB and 5% (5 GiB of this volume), so 1 GiB; one byte short.
    volume.setFree(GiB - BLOCK);
    served = await startServed({ config: { minFreeDisk: { bytes: GiB, percent: 5 } }, deps: { statfs: volume.statfs } });
    expect((await served.get('/first')).status).toBe(503);
    expect((await served.admin('/readyz')).status).toBe(503);
  });

  test('0 turns the watermark off', async () => {
    const volume = fakeVolume();
    volume.setFree(0);
    served = await startServed({ deps: { statfs: volume.statfs } });
    expect((await served.get('/any')).status).toBe(200);
    expect((await served.admin('/readyz')).body).toMatchObject({ ready: true, audit_disk: { low: false, free_bytes: null } });
  });
});

describe('serve --audit-fsync', () => {
  test('the writer thread\'s connection runs synchronous=FULL, and /readyz says so', async () => {
    served = await startServed({ config: { auditFsync: true } });
    expect(((await served.admin('/readyz')).body as Readiness).audit.fsync).toBe(true);
    expect((await served.get('/fsynced')).status).toBe(200);
  });

  test('off by default: synchronous=NORMAL', async () => {
    served = await startServed();
    expect(((await served.admin('/readyz')).body as Readiness).audit.fsync).toBe(false);
  });

  test('the store reads the setting back from its own connection', () => {
    const store = openAuditStore(':memory:', { fsync: true });
    try {
      expect(store.health().fsync).toBe(true);
      expect(store.db.pragma('synchronous', { simple: true })).toBe(2);
    } finally {
      store.close();
    }
  });
});
