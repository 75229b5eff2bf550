import { EventEmitter } from 'node:events';
import type { AuditStateChange } from '../../src/audit/store';

/** The audit store's state changes as events, so tests await a change instead of sleeping. */
export class AuditChanges extends EventEmitter {
  readonly seen: AuditStateChange[] = [];
  readonly listener = (change: AuditStateChange): void => {
    this.seen.push(change);
    this.emit(change.event, change);
    this.emit('any', change);
  };

  /** The next change of this kind, from now on. */
  next(event: AuditStateChange['event'], limitMs = 5000): Promise<AuditStateChange> {
    return this.waitFor(event, () => false, limitMs);
  }

  /**
   * Resolves once `count` changes have been seen, counting those already seen: the writer
   * thread reports its changes as messages, which may arrive before or after the answer
   * that showed the new state.
   */
  seenCount(count: number, limitMs = 5000): Promise<AuditStateChange> {
    return this.waitFor('any', () => this.seen.length >= count, limitMs);
  }

  events(): string[] {
    return this.seen.map((change) => change.event);
  }

  private waitFor(event: string, already: () => boolean, limitMs: number): Promise<AuditStateChange> {
    if (already()) return Promise.resolve(this.seen[this.seen.length - 1]);
    return new Promise((resolve, reject) => {
      const onEvent = (change: AuditStateChange): void => {
        if (!already() && event === 'any') return;
        clearTimeout(timer);
        this.off(event, onEvent);
        resolve(change);
      };
      const timer = setTimeout(() => {
        this.off(event, onEvent);
        reject(new Error(`no "${event}" state change within ${limitMs} ms; seen: ${JSON.stringify(this.seen)}`));
      }, limitMs);
      this.on(event, onEvent);
    });
  }
}
