import { SERVE_OPTIONS } from '../config';
import { runAdmin } from '../commands/admin';
import { runAuditPrune, runAuditVerify } from '../commands/audit';
import { runCaInit } from '../commands/ca';
import { runPolicyCheck, runPolicyReplay, runPolicyUnused } from '../commands/policy';
import { runPolicySuggest } from '../commands/policy-suggest';
import { runPolicyTest } from '../commands/policy-test';
import { runUsers } from '../commands/users';

/**
 * What the generator can write, by section name. `serve` keeps its options as data
 * (SERVE_OPTIONS), so they become a table; the other commands keep theirs in a help text beside
 * their parseArgs options, so their section is that text, exactly as `--help` prints it.
 */

/** The section that documents `tollgate serve`'s options. */
export const SERVE_SECTION = 'serve-options';

interface CommandHelp {
  /** The words after `tollgate`, as `tollgate --help` lists them. */
  readonly command: string;
  /** Prints the help: the command's run function with the arguments cli.ts would pass it. */
  readonly printHelp: () => number | Promise<number>;
  /** What a person types for it, shown above the text. */
  readonly typed: string;
}

function help(command: string, run: (args: string[]) => number | Promise<number>): CommandHelp {
  return { command, printHelp: () => run(['--help']), typed: `tollgate ${command} --help` };
}

/** Every command but serve. A new command in cli.ts needs a line here (test/docs-tables.test.ts says so). */
const COMMAND_HELPS: readonly CommandHelp[] = [
  help('admin', runAdmin),
  help('policy check', runPolicyCheck),
  help('policy test', runPolicyTest),
  help('policy replay', runPolicyReplay),
  help('policy unused', runPolicyUnused),
  help('policy suggest', runPolicySuggest),
  help('audit prune', runAuditPrune),
  help('audit verify', runAuditVerify),
  help('ca init', runCaInit),
  // `users` reads its subcommand first: `users --help` is the help of `users add`.
  { command: 'users add', printHelp: () => runUsers(['--help']), typed: 'tollgate users --help' },
];

/** `policy check` -> `help-policy-check`. */
export function helpSectionName(command: string): string {
  return `help-${command.split(' ').join('-')}`;
}

/** The commands whose sections are help texts, for the check that none is missing. */
export const HELP_COMMANDS: readonly string[] = COMMAND_HELPS.map((c) => c.command);

/** A Markdown table cell: code in backticks; in prose, what Markdown would read as emphasis or HTML is escaped. */
function cell(text: string, code = false): string {
  if (code) return `\`${text.replace(/\|/g, '\\|')}\``;
  return text.replace(/[|*_<\\]/g, (c) => `\\${c}`);
}

export function serveOptionsTable(): string {
  const rows = Object.values(SERVE_OPTIONS).map((o) => {
    return `| ${cell(`--${o.flag}`, true)} | ${cell(o.env, true)} | ${o.fallback === '' ? 'none' : cell(o.fallback, true)} | ${cell(o.help)} |`;
  });
  return [
    '<!-- from SERVE_OPTIONS in src/config.ts: edit it there, then run npm run docs -->',
    '| flag | environment variable | default | meaning |',
    '| --- | --- | --- | --- |',
    ...rows,
  ].join('\n');
}

/** What `run(['--help'])` writes to stdout, caught in this process (no build, no child). */
async function captureHelp(command: CommandHelp): Promise<string> {
  const chunks: string[] = [];
  const write = process.stdout.write;
  process.stdout.write = ((chunk: string | Uint8Array): boolean => {
    chunks.push(typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8'));
    return true;
  }) as typeof process.stdout.write;
  let code: number;
  try {
    code = await command.printHelp();
  } finally {
    process.stdout.write = write;
  }
  if (code !== 0) throw new Error(`${command.typed} exited ${code}`);
  return chunks.join('');
}

function helpBlock(command: CommandHelp, text: string): string {
  const source = `<!-- from ${command.typed} (src/commands): edit the help there, then run npm run docs -->`;
  return [source, '```text', `$ ${command.typed}`, text.replace(/\n+$/, ''), '```'].join('\n');
}

/** Every section the generator writes, by name. */
export async function renderSections(): Promise<Map<string, string>> {
  const sections = new Map<string, string>([[SERVE_SECTION, serveOptionsTable()]]);
  for (const command of COMMAND_HELPS) sections.set(helpSectionName(command.command), helpBlock(command, await captureHelp(command)));
  return sections;
}
