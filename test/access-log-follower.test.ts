import fs from 'node:fs';
import path from 'node:path';
import { AccessFollower } from '../src/audit/access-log/access-follower';
import type { AccessFollowerOptions, AccessLine } from '../src/audit/access-log/access-follower';
import { readAccessPosition } from '../src/audit/access-log/access-position';
import { FileSink } from '../src/audit/access-log/access-sink';
import { SegmentLog } from '../src/audit/log/segment-log';
import type { NewEntry } from '../src/audit/log/entry-codec';
import { getRequest } from '../src/audit/query';
import { completion, openFacts } from './helpers/audit-log-fixtures';
import { catchUpIndex } from './helpers/audit-index';
import { tempAuditFolder, withReader } from './helpers/audit-index-fixtures';

let dbFile: string;
let logDir: string;
let remove: () => void;
let accessFile: string;
let positionFile: string;
let log: SegmentLog;
const followers: AccessFollower[] = [];

beforeEach(() => {
  ({ dbFile, logDir, remove } = tempAuditFolder());
  accessFile = path.join(path.dirname(dbFile), 'access.log');
  positionFile = path.join(path.dirname(dbFile), '.access.log.position');
  log = SegmentLog.open({ dir: logDir });
});
afterEach(() => {
  for (const f of followers.splice(0)) f.close();
  log.close();
  remove();
});

function follower(options: Partial<AccessFollowerOptions> = {}): AccessFollower {
  const f = new AccessFollower({ logDir, dbFile, sink: new FileSink(accessFile), positionFile, node: 'node-a', start: { segment: 0, offset: 0 }, ...options });
  followers.push(f);
  return f;
}

function stop(f: AccessFollower): void {
  f.close();
  followers.splice(followers.indexOf(f), 1);
}

const open = (n: number): NewEntry => ({ type: 'open', open: openFacts(n) });
const complete = (id: number): NewEntry => ({ type: 'complete', id, completion: completion(id) });
const finished = (n: number): NewEntry => ({ type: 'finished', open: openFacts(n, { decision: 'deny' }), completion: completion(n, { status: 403 }) });

/** Every line of a file, parsed; throws on a line that is not JSON. */
function lines(file: string = accessFile): AccessLine[] {
  const text = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '';
  if (text !== '') expect(text.endsWith('\n')).toBe(true);
  return text.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as AccessLine);
}

const idsOf = (ls: AccessLine[]): number[] => ls.map((l) => l.id);

describe('access log follower', () => {
  test('one line per completed record, none for an open, each equal to the admin API record', () => {
    const [a, b] = log.appendBatch([open(1), open(2), finished(3)]);
    const f = follower();
    f.catchUp();
    expect(idsOf(lines())).toEqual([3]);
    log.appendBatch([complete(b)]);
    f.catchUp();
    log.appendBatch([complete(a), complete(a)]);
    f.catchUp();
    const written = lines();
    expect(idsOf(written)).toEqual([3, b, a]);
    catchUpIndex(dbFile);
    withReader(dbFile, (db) => {
      for (const line of written) {
        const { msg, ...record } = line;
        expect(msg).toBe('access');
        expect(record).toEqual(getRequest(db, line.id, 'node-a'));
      }
    });
  });

  test('an open held across a restart: re-read from the stored replay position, nothing before it written twice', () => {
    const [a, b] = log.appendBatch([open(1), open(2)]);
    log.appendBatch([complete(b), finished(3)]);
    const first = follower();
    first.catchUp();
    expect(idsOf(lines())).toEqual([b, b + 1]);
    expect(readAccessPosition(positionFile)).toMatchObject({ replay: { offset: expect.any(Number) } });
    stop(first);
    log.appendBatch([complete(a)]);
    follower().catchUp();
    const written = lines();
    expect(idsOf(written)).toEqual([b, b + 1, a]);
    expect(written[2]).toMatchObject({ host: 'host1.example.com', bytes_up: a });
  });

  test('lines written after the stored position (a crash before it was stored) and a torn line are cut off and written once', () => {
    const [a, b, c] = log.appendBatch([open(1), open(2), open(3)]);
    log.appendBatch([complete(a)]);
    const first = follower();
    first.catchUp();
    const stored = fs.readFileSync(positionFile);
    log.appendBatch([complete(b), complete(c)]);
    first.catchUp();
    stop(first);
    // The crash: the last batch's lines are in the file but its position was not stored, and a
    // half-written line follows them.
    fs.writeFileSync(positionFile, stored);
    fs.appendFileSync(accessFile, '{"msg":"access","id":99,"host":"tor');
    follower().catchUp();
    expect(idsOf(lines())).toEqual([a, b, c]);
  });

  test('a torn last line in a file with no stored position is cut before the first line is appended', () => {
    fs.writeFileSync(accessFile, '{"earlier":1}\n{"half');
    log.appendBatch([finished(1)]);
    follower().catchUp();
    const text = fs.readFileSync(accessFile, 'utf8').split('\n');
    expect(text[0]).toBe('{"earlier":1}');
    expect(JSON.parse(text[1])).toMatchObject({ msg: 'access', host: 'host1.example.com' });
    expect(text).toHaveLength(3);
  });

  test('past maxOpenRecords the oldest open is let go and its record read from the index, once the index has it', () => {
    const [a, b] = log.appendBatch([open(1), open(2)]);
    log.appendBatch([complete(a), complete(b)]);
    const f = follower({ maxOpenRecords: 1 });
    expect(f.step()).toBe(2);
    // a's completion waits for the index, and b's, behind it, with it.
    expect(lines()).toEqual([]);
    catchUpIndex(dbFile);
    f.catchUp();
    expect(idsOf(lines())).toEqual([a, b]);
    expect(f.counters).toMatchObject({ lines: 2, released: 1 });
    withReader(dbFile, (db) => expect(lines()[0]).toEqual({ msg: 'access', ...getRequest(db, a, 'node-a') }));
  });

  test('reopen after a rename: earlier lines stay in the renamed file, later ones go to a new file', () => {
    log.appendBatch([finished(1)]);
    const f = follower();
    f.catchUp();
    fs.renameSync(accessFile, `${accessFile}.1`);
    log.appendBatch([finished(2)]);
    f.reopen();
    f.catchUp();
    expect(lines(`${accessFile}.1`).map((l) => l.host)).toEqual(['host1.example.com']);
    expect(lines().map((l) => l.host)).toEqual(['host2.example.com']);
  });

  test('hostile text (quotes, newlines, NUL, a lone surrogate) stays one valid JSON line', () => {
    const host = 'a"b\\c\nd\r\0e\u2028\ud800';
    log.appendBatch([{ type: 'finished', open: openFacts(1, { host, path: '/"\n' }), completion: completion(1, { error: 'x\0"y' }) }]);
    follower().catchUp();
    const text = fs.readFileSync(accessFile, 'utf8');
    expect(text.split('\n')).toHaveLength(2);
    expect(lines()[0]).toMatchObject({ host, path: '/"\n', error: 'x\0"y' });
  });
});
