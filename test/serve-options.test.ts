import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ConfigError, parseBoolean, parseDuration, parseMinFreeDisk, parseWholeNumber, resolveServeConfig } from '../src/config';
import { minFreeBytes, parseSize } from '../src/config-size';
import { PROXY_TEST_POLICY } from './helpers/policies';
import { spawnServe, splitHostPort } from './helpers/serve-process';
import type { ServeProcess } from './helpers/serve-process';

/** The audit-log options of `serve` (issue 14): --retain, --min-free-disk, --audit-fsync. */

const GiB = 1024 ** 3;

describe('whole-number flags (parseWholeNumber)', () => {
  test('take decimal digits within the bounds, spaces and leading zeros allowed', () => {
    expect(parseWholeNumber('30', '--days', 1, 3650)).toBe(30);
    expect(parseWholeNumber(' 030 ', '--days', 1, 3650)).toBe(30);
    expect(parseWholeNumber('3650', '--days', 1, 3650)).toBe(3650);
  });

  test.each(['0', '3651', '', '1.5', '+1', '-1', '1e3', '0x10', 'ten'])('refuse %j with the bounds', (text) => {
    expect(() => parseWholeNumber(text, '--days', 1, 3650)).toThrow(new ConfigError(`--days: expected a whole number from 1 to 3650, got "${text}"`));
  });
});

describe('--retain durations', () => {
  test.each([
    ['14d', 14 * 86_400_000],
    ['1.5d', 129_600_000],
    ['36h', 36 * 3_600_000],
    ['20s', 20_000],
    ['2w', 14 * 86_400_000],
    ['250ms', 250],
    ['90', 90_000],
    ['0', 0],
  ])('%s', (text, ms) => {
    expect(parseDuration(text, '--retain')).toBe(ms);
  });

  test.each(['14 days', '2y', '-1d', 'd', '1e9d', '9999999999999999d'])('refuses %s', (text) => {
    expect(() => parseDuration(text, '--retain')).toThrow(ConfigError);
  });
});

describe('--min-free-disk sizes', () => {
  test.each([
    ['512MiB', 512 * 1024 ** 2],
    ['1GiB', GiB],
    ['1 GiB', GiB],
    ['1gib', GiB],
    ['500MB', 500_000_000],
    ['2GB', 2_000_000_000],
    ['64KiB', 65_536],
    ['1048576', 1_048_576],
    ['1.5GiB', 1.5 * GiB],
  ])('%s', (text, bytes) => {
    expect(parseSize(text, '--min-free-disk')).toBe(bytes);
  });

  test.each(['1G', '512M', 'lots', '-1GiB', '1 GiB GiB', ''])('refuses %j with a message naming the spellings', (text) => {
    expect(() => parseSize(text, '--min-free-disk')).toThrow(/512MiB, 1GiB or 500MB/);
  });

  test.each([
    ['1GiB', { bytes: GiB, percent: null }],
    ['10%', { bytes: null, percent: 10 }],
    ['1GiB,5%', { bytes: GiB, percent: 5 }],
    ['5%, 1GiB', { bytes: GiB, percent: 5 }],
    ['0', { bytes: null, percent: null }],
    ['0%', { bytes: null, percent: null }],
  ])('watermark %s', (text, limit) => {
    expect(parseMinFreeDisk(text, '--min-free-disk')).toEqual(limit);
  });

  test.each(['101%', '5%,6%', '1GiB,2GiB', '%'])('refuses watermark %s', (text) => {
    expect(() => parseMinFreeDisk(text, '--min-free-disk')).toThrow(ConfigError);
  });

  test('the default is the smaller of 1 GiB and 5% of the volume', () => {
    const limit = resolveServeConfig({}, {}).minFreeDisk;
    expect(minFreeBytes(limit, 10 * GiB)).toBe(Math.floor(0.5 * GiB));
    expect(minFreeBytes(limit, 100 * GiB)).toBe(GiB);
    expect(minFreeBytes(parseMinFreeDisk('0', 'x'), 100 * GiB)).toBe(0);
  });
});

describe('--audit-fsync', () => {
  test.each([['1', true], ['true', true], ['YES', true], ['on', true], ['0', false], ['false', false], ['', false]])('%j', (text, on) => {
    expect(parseBoolean(text, '--audit-fsync')).toBe(on);
  });

  test('refuses a word that is neither', () => {
    expect(() => parseBoolean('sometimes', '--audit-fsync')).toThrow(/expected 1 or 0/);
  });
});

describe('resolveServeConfig', () => {
  test('defaults: keep everything, 1 GiB or 5%, no fsync', () => {
    const config = resolveServeConfig({}, {});
    expect(config).toMatchObject({ retainMs: 0, minFreeDisk: { bytes: GiB, percent: 5 }, auditFsync: false });
  });

  test('environment variables', () => {
    const config = resolveServeConfig({}, { TOLLGATE_RETAIN: '14d', TOLLGATE_MIN_FREE_DISK: '10%', TOLLGATE_AUDIT_FSYNC: '1' });
    expect(config).toMatchObject({ retainMs: 14 * 86_400_000, minFreeDisk: { bytes: null, percent: 10 }, auditFsync: true });
  });

  test('flags win over the environment', () => {
    const config = resolveServeConfig({ retain: '20s', minFreeDisk: '512MiB', auditFsync: 'true' }, { TOLLGATE_RETAIN: '14d', TOLLGATE_AUDIT_FSYNC: '0' });
    expect(config).toMatchObject({ retainMs: 20_000, minFreeDisk: { bytes: 512 * 1024 ** 2, percent: null }, auditFsync: true });
  });

  test('a bad value names its option', () => {
    expect(() => resolveServeConfig({}, { TOLLGATE_RETAIN: '2 weeks' })).toThrow(/--retain/);
    expect(() => resolveServeConfig({}, { TOLLGATE_MIN_FREE_DISK: '1G' })).toThrow(/--min-free-disk/);
    expect(() => resolveServeConfig({}, { TOLLGATE_AUDIT_FSYNC: 'maybe' })).toThrow(/--audit-fsync/);
  });
});

describe('the serve command line', () => {
  const procs: ServeProcess[] = [];
  let dir: string;

  beforeAll(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'tollgate-serve-options-'));
    mkdirSync(path.join(dir, 'policies'));
    writeFileSync(path.join(dir, 'policies', 'policy.yaml'), PROXY_TEST_POLICY);
  });

  afterAll(async () => {
    for (const proc of procs) {
      proc.child.kill('SIGTERM');
      await proc.exited;
    }
    rmSync(dir, { recursive: true, force: true });
  });

  function start(args: string[], env: NodeJS.ProcessEnv = {}): ServeProcess {
    const db = path.join(dir, `audit-${procs.length}.db`);
    const proc = spawnServe(['--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--policies', path.join(dir, 'policies'), '--db', db, ...args], env);
    procs.push(proc);
    return proc;
  }

  async function readiness(proc: ServeProcess): Promise<{ audit: { fsync: boolean } }> {
    const { admin } = await proc.waitForLog('listening');
    const { host, port } = splitHostPort(String(admin));
    return (await (await fetch(`http://${host}:${port}/readyz`)).json()) as { audit: { fsync: boolean } };
  }

  test('--audit-fsync alone turns fsync on; --retain 14d takes days and silences the warning', async () => {
    const proc = start(['--audit-fsync', '--retain', '14d']);
    expect((await readiness(proc)).audit.fsync).toBe(true);
    expect(proc.lines.some((line) => /--retain is 0/.test(line.msg))).toBe(false);
  });

  test('TOLLGATE_AUDIT_FSYNC=1, and the warning when nothing is ever deleted', async () => {
    const proc = start([], { TOLLGATE_AUDIT_FSYNC: '1' });
    expect((await readiness(proc)).audit.fsync).toBe(true);
    expect(proc.lines.some((line) => /--retain is 0: audit records are kept for ever/.test(line.msg))).toBe(true);
  });

  test('a bad size is refused at start with the option named', async () => {
    const proc = start(['--min-free-disk', '1G']);
    expect((await proc.exited).code).toBe(1);
    expect(proc.stderr).toMatch(/--min-free-disk: expected a size such as 512MiB/);
  });
});
