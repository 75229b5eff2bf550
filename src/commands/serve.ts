import { parseArgs } from 'node:util';
import { ConfigError, resolveServeConfig, SERVE_OPTIONS } from '../config';
import type { ServeOptionName } from '../config';
import { createLogger } from '../log';
import { startServing } from '../serve';
import type { ShutdownOutcome } from '../serve';

function serveHelp(): string {
  const rows = Object.values(SERVE_OPTIONS).map(
    (o) => `  --${o.flag.padEnd(22)} ${o.env.padEnd(31)} ${o.help} (default ${o.fallback})`,
  );
  return [
    'usage: tollgate serve [options]',
    '',
    '  flag                     environment variable            meaning',
    ...rows,
    `  ${''.padEnd(24)} TOLLGATE_ADMIN_TOKEN            admin API token; required for a non-loopback admin address`,
    '',
    'Signals: SIGTERM/SIGINT drain and exit 0 (1 when the audit log could not take the last',
    'completions); SIGHUP reloads the policies; SIGUSR1 reopens the --access-log file.',
    '',
  ].join('\n');
}

/** `tollgate serve`: run until SIGTERM/SIGINT. */
export async function runServe(args: string[]): Promise<number> {
  const specs: ReadonlyArray<{ flag: string; boolean?: true }> = Object.values(SERVE_OPTIONS);
  const options = Object.fromEntries(
    specs.map((o) => [o.flag, { type: o.boolean === true ? ('boolean' as const) : ('string' as const) }]),
  );
  let parsed;
  try {
    parsed = parseArgs({ args, options: { ...options, help: { type: 'boolean', short: 'h' } }, strict: true });
  } catch (err) {
    process.stderr.write(`tollgate serve: ${(err as Error).message}\n\n${serveHelp()}`);
    return 2;
  }
  const values = parsed.values as Record<string, string | boolean | undefined>;
  if (values.help) {
    process.stdout.write(serveHelp());
    return 0;
  }
  const flags: Partial<Record<ServeOptionName, string>> = {};
  for (const [name, spec] of Object.entries(SERVE_OPTIONS) as Array<[ServeOptionName, { flag: string }]>) {
    const value = values[spec.flag];
    if (typeof value === 'string') flags[name] = value;
    // A boolean flag given on the command line is on, whatever the variable says.
    if (value === true) flags[name] = 'true';
  }
  const log = createLogger();
  try {
    const config = resolveServeConfig(flags, process.env);
    // Registered before the start: Node's own SIGUSR1 action would start the inspector.
    let reopenAccessLog = (): void => undefined;
    if (config.accessLog !== null) process.on('SIGUSR1', () => reopenAccessLog());
    const running = await startServing(config, log);
    reopenAccessLog = () => running.reopenAccessLog();
    return await untilStopped(running.shutdown, () => running.reload(), log);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    log.fatal(err.message);
    process.stderr.write(`tollgate serve: ${err.message}\n`);
    return 1;
  }
}

function untilStopped(shutdown: () => Promise<ShutdownOutcome>, reload: () => void, log: ReturnType<typeof createLogger>): Promise<number> {
  return new Promise((resolve) => {
    process.on('SIGHUP', () => reload());
    const stop = (signal: string): void => {
      log.info({ signal }, 'stopping');
      process.removeAllListeners('SIGTERM');
      process.removeAllListeners('SIGINT');
      shutdown().then(
        (outcome) => resolve(outcome.recordsCompleted ? 0 : 1),
        (err: unknown) => {
          log.error({ err }, 'shutdown failed');
          resolve(1);
        },
      );
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
}
