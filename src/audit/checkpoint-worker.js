'use strict';
/** The checkpointer's thread (checkpointer.ts starts it and explains the checkpoints). */
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.driver);
const done = new Int32Array(workerData.done);
const finish = () => { Atomics.store(done, 0, 1); Atomics.notify(done, 0); };
let db = null;
try {
  db = new Database(workerData.file, { fileMustExist: true });
  // Never wait: a RESTART that waits for readers holds the write lock meanwhile, and the proxy's
  // commits would wait behind it. Busy means "next tick".
  db.pragma('busy_timeout = 0');
} catch {
  // Unopenable: no checkpoints; the store's own writes report the file's state.
}
const checkpoint = () => {
  if (db === null) return;
  try {
    const [passive] = db.pragma('wal_checkpoint(PASSIVE)');
    if (passive.log > workerData.restartFrames) db.pragma('wal_checkpoint(RESTART)');
  } catch {
    // Busy, full or gone: the store notices on its own writes; the next tick tries again.
  }
};
const timer = setInterval(checkpoint, workerData.intervalMs);
parentPort.on('message', (message) => {
  if (message !== 'stop') return;
  clearInterval(timer);
  try { if (db !== null) db.close(); } catch {}
  finish();
  parentPort.close();
});
