import { watch } from 'node:fs';
import type { FSWatcher } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import type { ParsedHash } from './password-hash';
import { loadUsersFile } from './users-file';

const RELOAD_DEBOUNCE_MS = 250;

/**
 * The users file in force. It reloads like the policies (watched, debounced, and on SIGHUP),
 * all or nothing: an invalid edit keeps the last good file and says so in the log.
 */
export class UsersHolder {
  private current: ReadonlyMap<string, ParsedHash>;
  private watcher: FSWatcher | null = null;
  private timer: NodeJS.Timeout | null = null;

  private constructor(
    readonly file: string,
    initial: ReadonlyMap<string, ParsedHash>,
    private readonly log: Logger,
    private readonly onChange: () => void,
  ) {
    this.current = initial;
  }

  /** Load the file; throws with FILE:LINE problems when it is invalid at start. */
  static open(file: string, log: Logger, onChange: () => void): UsersHolder {
    const loaded = loadUsersFile(file);
    if (!loaded.ok) throw new Error(`invalid users file:\n${loaded.problems.join('\n')}`);
    return new UsersHolder(file, loaded.users, log, onChange);
  }

  readonly users = (): ReadonlyMap<string, ParsedHash> => this.current;

  reload(): void {
    const loaded = loadUsersFile(this.file);
    if (!loaded.ok) {
      this.log.error({ problems: loaded.problems }, 'users file reload failed; keeping the last good one');
      return;
    }
    this.current = loaded.users;
    this.onChange();
    this.log.info({ users: loaded.users.size }, 'users file loaded');
  }

  /** Watch the folder, not the file: editors replace files by renaming over them. */
  watch(): void {
    const name = path.basename(this.file);
    this.watcher = watch(path.dirname(this.file), (_event, changed) => {
      if (changed !== null && changed !== name) return;
      if (this.timer) clearTimeout(this.timer);
      this.timer = setTimeout(() => this.reload(), RELOAD_DEBOUNCE_MS);
    });
    this.watcher.on('error', (err) => this.log.warn({ err }, 'users file watch failed'));
  }

  close(): void {
    if (this.timer) clearTimeout(this.timer);
    this.watcher?.close();
  }
}
