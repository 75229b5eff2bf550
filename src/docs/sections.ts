import { SERVE_OPTIONS } from '../config';
import type { ServeOptionName } from '../config';
import { ADMIN_HELP } from '../commands/admin';
import { PRUNE_HELP, VERIFY_HELP } from '../commands/audit';
import { INIT_HELP } from '../commands/ca';
import { CHECK_HELP, REPLAY_HELP, UNUSED_HELP } from '../commands/policy';
import { SUGGEST_HELP } from '../commands/policy-suggest';
import { TEST_HELP } from '../commands/policy-test';
import { USERS_HELP } from '../commands/users';

/**
 * What the generator can write, by section name. `serve` keeps its options as data
 * (SERVE_OPTIONS), so they become a table; the other commands keep theirs in a help text beside
 * their parseArgs options, so their section is that text, the constant `--help` prints.
 */

/** The section that documents `tollgate serve`'s options. */
export const SERVE_SECTION = 'serve-options';

/** README's table of timeouts and limits, which SPEC §1 names as their reference. */
export const LIMITS_SECTION = 'serve-limits';

/** The options of that table: SPEC §1's list, then the drain grace and client cap beside them. */
export const LIMIT_OPTIONS: readonly ServeOptionName[] = [
  'dnsTimeout', 'connectTimeout', 'requestIdleTimeout', 'tunnelIdleTimeout', 'tunnelMaxLifetime',
  'maxTunnels', 'maxTunnelsPerSource', 'maxClientConnections', 'drainTimeout', 'drainGrace',
];

interface CommandHelp {
  /** The words after `tollgate`, as `tollgate --help` lists them. */
  readonly command: string;
  /** The help text the command prints for --help. */
  readonly text: string;
  /** What a person types for it, shown above the text. */
  readonly typed: string;
}

function help(command: string, text: string): CommandHelp {
  return { command, text, typed: `tollgate ${command} --help` };
}

/** Every command but serve. A new command in cli.ts needs a line here (test/docs-tables.test.ts says so). */
const COMMAND_HELPS: readonly CommandHelp[] = [
  help('admin', ADMIN_HELP),
  help('policy check', CHECK_HELP),
  help('policy test', TEST_HELP),
  help('policy replay', REPLAY_HELP),
  help('policy unused', UNUSED_HELP),
  help('policy suggest', SUGGEST_HELP),
  help('audit prune', PRUNE_HELP),
  help('audit verify', VERIFY_HELP),
  help('ca init', INIT_HELP),
  // `users` reads its subcommand first: `users --help` is the help of `users add`.
  { command: 'users add', text: USERS_HELP, typed: 'tollgate users --help' },
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

/** `names`' rows of SERVE_OPTIONS as a Markdown table (every option when omitted). */
export function serveOptionsTable(names: readonly ServeOptionName[] = Object.keys(SERVE_OPTIONS) as ServeOptionName[]): string {
  const rows = names.map((name) => SERVE_OPTIONS[name]).map((o) => {
    return `| ${cell(`--${o.flag}`, true)} | ${cell(o.env, true)} | ${o.fallback === '' ? 'none' : cell(o.fallback, true)} | ${cell(o.help)} |`;
  });
  return [
    '<!-- from SERVE_OPTIONS in src/config.ts: edit it there, then run npm run docs -->',
    '| flag | environment variable | default | meaning |',
    '| --- | --- | --- | --- |',
    ...rows,
  ].join('\n');
}

function helpBlock(command: CommandHelp): string {
  const source = `<!-- from ${command.typed} (src/commands): edit the help there, then run npm run docs -->`;
  return [source, '```text', `$ ${command.typed}`, command.text.replace(/\n+$/, ''), '```'].join('\n');
}

/** Every section the generator writes, by name. */
export function renderSections(): Map<string, string> {
  const sections = new Map<string, string>([[SERVE_SECTION, serveOptionsTable()], [LIMITS_SECTION, serveOptionsTable(LIMIT_OPTIONS)]]);
  for (const command of COMMAND_HELPS) sections.set(helpSectionName(command.command), helpBlock(command));
  return sections;
}
