import fs from 'node:fs';
import net from 'node:net';
import { once } from 'node:events';
import path from 'node:path';
import { LogAuditStore } from '../src/audit/log-store';
import type { NumberedLog } from '../src/audit/group-commit';
import type { BatchOutcome } from '../src/audit/connection';
import type { AuditStateChange } from '../src/audit/write-health';
import { auditLogDir } from '../src/audit/log/segment-files';
import { prepareEntry } from '../src/audit/log/entry-codec';
import type { PreparedEntry } from '../src/audit/log/entry-codec';
import { BlockMerge, BLOCK_IDS } from '../src/cluster/block-merge';
import { SpoolAudit } from '../src/cluster/spool-audit';
import { listSpoolFiles, newSpoolName, SpoolWriter } from '../src/cluster/spool';
import { decodePrimaryFrame, encodeBatchFrame, FrameReader } from '../src/cluster/wire';
import type { BatchMember } from '../src/cluster/worker-batches';
import { createLogger } from '../src/log';
import { completion, openFacts, readAll, tempLogDir } from './helpers/audit-log-fixtures';

/**
 * The spooled mode of `--workers` (cluster/block-merge.ts, spool-audit.ts, spool.ts): workers
 * give their records ids from blocks and spool them, the primary appends them in id order. Real
 * log files in a temp folder, and each worker's audit channel a real loopback socket.
 */

const quiet = createLogger(process.env.TEST_LOG ?? 'silent');

/** Both ends of a loopback TCP connection: the primary's, then the worker's. */
async function socketPair(): Promise<[net.Socket, net.Socket]> {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as net.AddressInfo;
  const accepted = once(server, 'connection') as Promise<[net.Socket]>;
  const worker = net.connect(port, '127.0.0.1');
  const [[primary]] = await Promise.all([accepted, once(worker, 'connect')]);
  server.close();
  return [primary, worker];
}

interface Worker {
  audit: SpoolAudit;
  member: BatchMember;
  /** The worker's end of its channel. */
  socket: net.Socket;
  /** While true, frames are spooled but never reach the primary (a channel that lost them). */
  dropping: boolean;
  spoolName: string;
  spool: FlakySpool;
}

/** A real spool file whose next writes fail on demand, as on a full volume (ENOSPC). */
class FlakySpool extends SpoolWriter {
  failing = false;
  override append(frame: Buffer, seq: number): void {
    if (this.failing) throw Object.assign(new Error('ENOSPC: no space left on device, write (test)'), { code: 'ENOSPC' });
    super.append(frame, seq);
  }
}

describe('BlockMerge and SpoolAudit', () => {
  let remove: () => void;
  let dbFile: string;
  let store: LogAuditStore;
  let merge: BlockMerge;
  const sockets: net.Socket[] = [];
  const broken: number[] = [];

  beforeEach(() => {
    const temp = tempLogDir();
    remove = temp.remove;
    dbFile = path.join(path.dirname(temp.dir), 'audit.db');
    store = new LogAuditStore(dbFile, {});
    merge = new BlockMerge(store, store, quiet);
    broken.length = 0;
  });

  afterEach(() => {
    for (const socket of sockets.splice(0)) socket.destroy();
    store.close();
    remove();
  });

  async function startWorker(slot: number, log: NumberedLog = store): Promise<Worker> {
    const [primarySide, workerSide] = await socketPair();
    sockets.push(primarySide, workerSide);
    const member: BatchMember = { slot, channel: primarySide, records: 0, open: new Set(), committing: new Set(), settled: false, endedBySettle: new Set() };
    const spoolName = newSpoolName(slot);
    const spool = new FlakySpool(log.spool, spoolName);
    const worker: Worker = { audit: undefined as unknown as SpoolAudit, member, socket: workerSide, dropping: false, spoolName, spool };
    worker.audit = new SpoolAudit((frame) => {
      if (!worker.dropping) workerSide.write(frame);
      return true;
    }, spool, true);
    let firstBlock: () => void = () => undefined;
    const gotBlock = new Promise<void>((resolve) => {
      firstBlock = resolve;
    });
    const frames = new FrameReader((frame) => {
      const decoded = decodePrimaryFrame(frame);
      if (decoded.kind === 'block') {
        worker.audit.block(decoded.block);
        firstBlock();
      } else if (decoded.kind === 'sync') worker.audit.sync(decoded.token);
    });
    workerSide.on('data', (chunk: Buffer) => frames.push(chunk));
    workerSide.on('error', () => undefined);
    primarySide.on('error', () => undefined);
    merge.attach(member, () => broken.push(slot), spoolName);
    await gotBlock;
    return worker;
  }

  async function record(worker: Worker, n: number, completions: Array<[number, number]> = []): Promise<number[]> {
    const outcome: BatchOutcome = await worker.audit.commitBatch([openFacts(n, { host: `w${worker.member.slot}-${n}.test` })], completions.map(([id, m]) => [id, completion(m)]), []);
    return outcome.ids as number[];
  }

  /** The log's entries in the order written. */
  function logEntries(): Array<{ type: string; id: number; host: string | null }> {
    return readAll(auditLogDir(dbFile)).entries.map(({ entry }) => ({ type: entry.type, id: entry.id, host: entry.type === 'complete' ? null : entry.open.host }));
  }

  const completionOf = (id: number): PreparedEntry => prepareEntry({ type: 'complete', id, completion: completion(id) });

  /** The real store behind, refusing appends while `failing` (as a full disk refuses them). */
  function refusingLog(): NumberedLog & { failing: boolean } {
    const log = {
      failing: false,
      spool: store.spool,
      reserveIds: (count: number) => store.reserveIds(count),
      commitNumbered: (entries: readonly PreparedEntry[]) => {
        if (log.failing) throw new Error('EIO (test)');
        store.commitNumbered(entries);
      },
    };
    return log;
  }

  async function until(what: () => boolean): Promise<void> {
    for (let i = 0; i < 1_500 && !what(); i += 1) await new Promise((resolve) => setTimeout(resolve, 10));
    expect(what()).toBe(true);
  }

  test('two workers\' records reach the one log in id order, each once, with completions after their opens', async () => {
    const a = await startWorker(1);
    const b = await startWorker(2);
    const acked: number[] = [];
    const open: Array<[Worker, number]> = [];
    // A fixed interleaving, long enough that each worker goes through several blocks.
    for (let n = 0; n < 400; n += 1) {
      const worker = (n * 7) % 3 === 0 ? a : b;
      const mine = open.filter(([w]) => w === worker).slice(0, 2);
      for (const entry of mine) open.splice(open.indexOf(entry), 1);
      const [id] = await record(worker, n, mine.map(([, id]) => [id, n]));
      acked.push(id);
      open.push([worker, id]);
    }
    await merge.flush();
    const entries = logEntries();
    const records = entries.filter((e) => e.type !== 'complete').map((e) => e.id);
    expect(records).toEqual([...acked].sort((x, y) => x - y));
    expect(new Set(records).size).toBe(400);
    for (let i = 1; i < records.length; i += 1) expect(records[i]).toBeGreaterThan(records[i - 1]);
    const opened = new Map(entries.map((e, at) => [e.type === 'open' ? e.id : -1, at]));
    entries.forEach((e, at) => {
      if (e.type === 'complete') expect(opened.get(e.id)).toBeLessThan(at);
    });
    expect(entries.filter((e) => e.type === 'complete')).toHaveLength(400 - open.length);
    expect(a.member.records + b.member.records).toBe(400);
    expect(broken).toEqual([]);
  });

  test('a read barrier brings in what both workers answered, though each holds a block it has barely used', async () => {
    const a = await startWorker(1);
    const b = await startWorker(2);
    const [first] = await record(a, 1);
    const [second] = await record(b, 2);
    // B's block comes after A's: its record waits for A's block until the barrier gives it back.
    expect(second).toBeGreaterThan(first + BLOCK_IDS - 1);
    await merge.flush();
    expect(logEntries().map((e) => e.id)).toEqual([first, second]);
  });

  test('records held behind a quiet worker\'s block reach the log without it: it is asked to give the block back', async () => {
    const a = await startWorker(1);
    const b = await startWorker(2);
    const [held] = await record(a, 1);
    const later: number[] = [];
    for (let n = 2; n < 7; n += 1) later.push(...(await record(b, n)));
    // No barrier and nothing more from A: the merge's nudge alone moves them.
    await until(() => logEntries().length === 6);
    expect(logEntries().map((e) => e.id)).toEqual([held, ...later]);
  });

  test('a dead worker\'s batches that only its spool holds are appended, once; its spool goes', async () => {
    const a = await startWorker(1);
    const acked: number[] = [];
    for (let n = 0; n < 3; n += 1) acked.push(...(await record(a, n)));
    // From here its frames reach the spool and never the channel, as when a process dies between
    // its spool write and its socket write.
    a.dropping = true;
    for (let n = 3; n < 10; n += 1) acked.push(...(await record(a, n)));
    a.socket.end();
    // Its exit and a drain's settling of every worker both ask: settled once (one settling), and
    // without the 5 s wait for records held behind another worker (the bug's symptom; the bound
    // leaves room for a slow machine).
    const started = Date.now();
    const settling = merge.settle(a.member);
    expect(merge.settle(a.member)).toBe(settling);
    await settling;
    expect(Date.now() - started).toBeLessThan(4_500);
    expect(logEntries().filter((e) => e.type === 'open').map((e) => e.id)).toEqual(acked);
    expect(listSpoolFiles(store.spool, a.spoolName)).toEqual([]);
    // What it left open (all ten) is completed for it.
    expect(logEntries().filter((e) => e.type === 'complete')).toHaveLength(10);
    expect(a.member.settled).toBe(true);
  });

  test('records workers spooled that the log lacks are appended at the next start, with the completions the log lacks, once', () => {
    const writer = new SpoolWriter(store.spool, newSpoolName(1));
    const first = store.reserveIds(8);
    const entries = Array.from({ length: 8 }, (_, i) => Object.assign(prepareEntry({ type: 'open', open: openFacts(i) }), { id: first + i }));
    // The first three reached the log before the primary was killed, the first of them completed;
    // the rest only the spool, with completions of a record in the log and of one that is not.
    store.commitNumbered(entries.slice(0, 3));
    store.commitNumbered([completionOf(first)]);
    writer.append(encodeBatchFrame(1, [...entries.slice(0, 5), completionOf(first)]), 1);
    writer.append(encodeBatchFrame(2, [...entries.slice(5), completionOf(first + 1), completionOf(first + 6)]), 2);
    writer.close();
    store.close();
    const changes: AuditStateChange[] = [];
    store = new LogAuditStore(dbFile, { onStateChange: (change) => changes.push(change) });
    const log = logEntries();
    expect(log.filter((e) => e.type === 'open').map((e) => e.id)).toEqual(entries.map((e) => e.id));
    // The first's completion is in the log already: not written twice.
    expect(log.filter((e) => e.type === 'complete').map((e) => e.id)).toEqual([first, first + 1, first + 6]);
    expect(listSpoolFiles(store.spool)).toEqual([]);
    expect(changes.map((c) => [c.event, c.message])).toEqual([['spooled', 'audit log: appended 5 records and 2 completions that workers spooled and the log lacked']]);
    // Those completed are not left open for the start's left-open pass: 8 opened, 3 completed.
    expect(store.completeOpenRecords(new Date(), 'shutdown: proxy stopped')).toBe(5);
    // Ids go on past them, never again handed out.
    expect(store.reserveIds(1)).toBeGreaterThan(first + 7);
  });

  test('the next start\'s cut-off is the log\'s highest record id, though its newest segment holds only a completion', () => {
    const writer = new SpoolWriter(store.spool, newSpoolName(1));
    const first = store.reserveIds(4);
    const entries = Array.from({ length: 4 }, (_, i) => Object.assign(prepareEntry({ type: 'open', open: openFacts(i) }), { id: first + i }));
    store.commitNumbered(entries.slice(0, 3));
    writer.append(encodeBatchFrame(1, entries), 1);
    writer.close();
    store.close();
    store = new LogAuditStore(dbFile, {});
    expect(logEntries().map((e) => e.id)).toEqual([first, first + 1, first + 2, first + 3]);
    store.close();
    // A new segment (each start begins one) whose only entry completes the oldest record.
    store = new LogAuditStore(dbFile, {});
    store.commitNumbered([prepareEntry({ type: 'complete', id: first, completion: completion(0) })]);
    fs.mkdirSync(store.spool, { recursive: true });
    const again = new SpoolWriter(store.spool, newSpoolName(2));
    again.append(encodeBatchFrame(1, entries), 1);
    again.close();
    store.close();
    store = new LogAuditStore(dbFile, {});
    expect(logEntries().filter((e) => e.type === 'open').map((e) => e.id)).toEqual(entries.map((e) => e.id));
  });

  test('a torn spool end is skipped and said; the whole batches before it are appended', () => {
    const writer = new SpoolWriter(store.spool, newSpoolName(2));
    const first = store.reserveIds(2);
    const [one, two] = [0, 1].map((i) => Object.assign(prepareEntry({ type: 'open', open: openFacts(i) }), { id: first + i }));
    writer.append(encodeBatchFrame(1, [one]), 1);
    writer.close();
    const file = listSpoolFiles(store.spool)[0].file;
    fs.appendFileSync(file, encodeBatchFrame(2, [two]).subarray(0, 20));
    store.close();
    const changes: AuditStateChange[] = [];
    store = new LogAuditStore(dbFile, { onStateChange: (change) => changes.push(change) });
    expect(logEntries().map((e) => e.id)).toEqual([one.id]);
    expect(changes.map((c) => c.message)).toEqual([`audit log: appended 1 records and 0 completions that workers spooled and the log lacked; torn ends skipped in ${path.basename(file)}`]);
  });

  test('a record id outside the worker\'s blocks is refused: the worker is replaced', async () => {
    const a = await startWorker(1);
    const entry = Object.assign(prepareEntry({ type: 'open', open: openFacts(1) }), { id: 10 ** 9 });
    a.socket.write(encodeBatchFrame(1, [entry]));
    await until(() => broken.length === 1);
    expect(broken).toEqual([1]);
    expect(logEntries()).toEqual([]);
  });

  test('while the log refuses, merged records are held in order and written once it takes them again', async () => {
    const flaky = refusingLog();
    merge = new BlockMerge(flaky, store, quiet);
    const a = await startWorker(1, flaky);
    const acked = [...(await record(a, 1))];
    await merge.flush();
    flaky.failing = true;
    for (let n = 2; n < 6; n += 1) acked.push(...(await record(a, n)));
    await merge.flush();
    expect(logEntries().map((e) => e.id)).toEqual(acked.slice(0, 1));
    flaky.failing = false;
    await until(() => logEntries().length === 5);
    expect(logEntries().map((e) => e.id)).toEqual(acked);
  });

  test('a worker whose spool write failed on its block\'s last ids gives the whole block back: the others\' records are not held for good', async () => {
    let reserving = true;
    const starved: NumberedLog = {
      spool: store.spool,
      reserveIds: (count) => {
        if (!reserving) throw new Error('audit log unavailable (test)');
        return store.reserveIds(count);
      },
      commitNumbered: (entries) => store.commitNumbered(entries),
    };
    merge = new BlockMerge(starved, store, quiet);
    const a = await startWorker(1, starved);
    const b = await startWorker(2, starved);
    // No more blocks for anyone: A uses its block to the last id, and that last batch cannot be spooled.
    reserving = false;
    const acked: number[] = [];
    for (let n = 0; n < BLOCK_IDS - 1; n += 1) acked.push(...(await record(a, n)));
    a.spool.failing = true;
    await expect(record(a, BLOCK_IDS)).rejects.toThrow('audit spool cannot be written');
    a.spool.failing = false;
    const [fromB] = await record(b, 1000);
    await merge.flush();
    expect(logEntries().map((e) => e.id)).toEqual([...acked, fromB]);
  });

  test('completions of a batch that could not be spooled go with the next', async () => {
    const a = await startWorker(1);
    const [first] = await record(a, 1);
    a.spool.failing = true;
    await expect(record(a, 2, [[first, 200]])).rejects.toThrow('audit spool cannot be written');
    a.spool.failing = false;
    const [third] = await record(a, 3);
    await merge.flush();
    expect(logEntries().map((e) => [e.type, e.id])).toEqual([['open', first], ['complete', first], ['open', third]]);
  });

  test('what a dead worker left open is completed after its records, even while the log refuses them for a time', async () => {
    const flaky = refusingLog();
    merge = new BlockMerge(flaky, store, quiet);
    const a = await startWorker(1, flaky);
    flaky.failing = true;
    const opened = [...(await record(a, 1)), ...(await record(a, 2))];
    a.socket.end();
    const settling = merge.settle(a.member);
    await until(() => a.member.settled);
    flaky.failing = false;
    await settling;
    await until(() => logEntries().length === 4);
    expect(logEntries().map((e) => [e.type, e.id])).toEqual([['open', opened[0]], ['open', opened[1]], ['complete', opened[0]], ['complete', opened[1]]]);
    // Removed once the log had all of it.
    await until(() => listSpoolFiles(store.spool, a.spoolName).length === 0);
  });

  test('a worker still starting holds nothing back: its first block is given when it asks', async () => {
    // A process forked but not yet reading its channel (it starts in hundreds of milliseconds).
    const [starting] = await socketPair();
    sockets.push(starting);
    starting.on('error', () => undefined);
    merge.attach({ slot: 1, channel: starting, records: 0, open: new Set(), committing: new Set(), settled: false, endedBySettle: new Set() }, () => broken.push(1), newSpoolName(1));
    const b = await startWorker(2);
    const [id] = await record(b, 1);
    await merge.flush();
    expect(logEntries().map((e) => e.id)).toEqual([id]);
    // Neither a block nor the barrier's sync went to it: it was not waited for.
    expect(starting.bytesWritten).toBe(0);
  });

  test('a read barrier waits for a worker that died with batches only its spool holds', async () => {
    const a = await startWorker(1);
    a.dropping = true;
    const [id] = await record(a, 1);
    a.socket.destroy();
    await until(() => a.member.channel.destroyed || !a.member.channel.writable);
    const flushing = merge.flush();
    // The pool settles it when the process's exit is reported, a moment later.
    setTimeout(() => void merge.settle(a.member), 50);
    await flushing;
    expect(logEntries().filter((e) => e.type === 'open').map((e) => e.id)).toEqual([id]);
  });

  test('a closed spool file goes only once its last batch is in the log, not with the record ids before it', () => {
    const writer = new SpoolWriter(store.spool, newSpoolName(3));
    const first = store.reserveIds(1);
    const big = (n: number): PreparedEntry => ({ ...completionOf(first), body: 'x'.repeat(600 * 1024), bodyBytes: 600 * 1024, id: first + n });
    writer.append(encodeBatchFrame(1, [Object.assign(prepareEntry({ type: 'open', open: openFacts(0) }), { id: first })]), 1);
    writer.append(encodeBatchFrame(2, [big(0)]), 2);
    // Past 1 MiB: the file is closed, its last batch (3) holding only a completion; the next begins one.
    writer.append(encodeBatchFrame(3, [big(0)]), 3);
    writer.append(encodeBatchFrame(4, [completionOf(first)]), 4);
    expect(listSpoolFiles(store.spool).map((f) => f.n)).toEqual([1, 2]);
    // Its only record (batch 1) is in the log, its last completion not yet.
    writer.appended(2);
    expect(listSpoolFiles(store.spool).map((f) => f.n)).toEqual([1, 2]);
    writer.appended(3);
    expect(listSpoolFiles(store.spool).map((f) => f.n)).toEqual([2]);
    writer.close();
  });
});
