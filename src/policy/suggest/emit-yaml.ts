import { Document, Scalar, YAMLMap, YAMLSeq } from 'yaml';
import { plural } from '../replay/format-shared';
import { POLICY_VERSION } from '../schema';
import type { SuggestedRule } from './build-rules';
import { LEFT_OUT_REASONS, type LeftOutDestination, type LeftOutReason, type SuggestSummary } from './types';

/**
 * The suggestion as one policy file, built with yaml's Document API: hosts come from workloads,
 * so every value is a node the library quotes and every comment is text it prefixes line by line
 * (never YAML assembled from strings). Hosts are double-quoted whatever they hold, so no reader
 * (YAML 1.1 included) takes `yes` or `1e3` for anything but a name.
 */

/** Listed per reason in the closing comment; the summary holds them all. */
const MAX_LISTED = 50;
const MAX_LISTED_CLIENTS = 5;

const REASON_TITLES: Readonly<Record<LeftOutReason, string>> = {
  explicit_deny: 'denied (or trialled in report mode) by an explicit deny rule: a suggestion never undoes one',
  guard: 'refused by the destination guard (private or blocked addresses): allow a range in network.allow_ranges by hand if meant',
  sni: 'refused by the SNI check (tls:): a rule here would not change that',
  already_allowed: 'already allowed by an existing rule',
  default_deny: 'denied by settings.default in enforce mode (not reported traffic): write a rule by hand if meant',
  below_min_requests: 'seen fewer times than --min-requests',
  invalid_host: 'not expressible as a policy host entry',
};

/** Comment text stays printable ASCII: a host or a file name cannot bend a line of it. */
const printable = (text: string): string => text.replace(/[^\x20-\x7e]/g, '?');

function quoted(value: string): Scalar {
  const node = new Scalar(value);
  node.type = Scalar.QUOTE_DOUBLE;
  return node;
}

function flowSeq(items: ReadonlyArray<string | number | Scalar>): YAMLSeq {
  const seq = new YAMLSeq();
  seq.flow = true;
  for (const item of items) seq.items.push(item instanceof Scalar ? item : new Scalar(item));
  return seq;
}

function ruleComment(rule: SuggestedRule): string {
  const ips = [...rule.clientIps].sort();
  const shown = ips.slice(0, MAX_LISTED_CLIENTS).join(', ') + (ips.length > MAX_LISTED_CLIENTS ? ', ...' : '');
  const lines = [
    `${plural(rule.requests, 'request')} to ${plural(rule.destinations, 'destination')} ` +
      `from ${plural(ips.length, 'client')} (${shown}), last seen ${new Date(rule.lastSeenMs).toISOString()}`,
  ];
  if (rule.globOf !== null) {
    lines.push(`glob: ${rule.globOf.length} hosts of ${rule.family} were seen (the glob also covers ${rule.family} itself): ${rule.globOf.slice(0, 10).join(', ')}${rule.globOf.length > 10 ? ', ...' : ''}`);
  }
  if (rule.ungrouped) lines.push('REVIEW: for every client: these clients are in no client group (define one, then add clients:)');
  if (rule.ipLiteral) lines.push('REVIEW: an IP-literal destination; addresses change hands, prefer the name the workload can use');
  return lines.map((line) => ` ${printable(line)}`).join('\n');
}

function ruleNode(rule: SuggestedRule): YAMLMap {
  const map = new YAMLMap();
  map.set('name', rule.name);
  map.set('action', 'allow');
  if (rule.group !== null) map.set('clients', flowSeq([rule.group]));
  map.set('hosts', flowSeq(rule.hosts.map(quoted)));
  map.set('ports', flowSeq(rule.ports));
  if (rule.methods !== null) map.set('methods', flowSeq(rule.methods));
  if (rule.paths !== null) {
    const paths = new YAMLSeq();
    for (const path of rule.paths) paths.items.push(quoted(path));
    map.set('paths', paths);
  }
  map.commentBefore = ruleComment(rule);
  return map;
}

function header(summary: SuggestSummary, label: string, now: Date): string {
  const { suggested } = summary;
  return [
    `Suggested by \`tollgate policy suggest\` at ${now.toISOString()} from ${label},`,
    `traffic from ${summary.window.since} to ${summary.window.until}, policy ${summary.policy.version}:`,
    `${plural(summary.rules, 'allow rule')} for ${plural(suggested.requests, 'request')} to ${plural(suggested.destinations, 'destination')}`,
    'that the current policy only reports (would_deny) or allows by default.',
    'Save it in the policies folder under a name that sorts after every other file (for example',
    '90-suggested.yaml), so the existing rules, explicit denies first, still decide before these.',
    'Review each rule (IP literals and ** globs say so), then replay with settings.mode: enforce.',
  ].map((line) => ` ${printable(line)}`).join('\n');
}

function leftOutLine(row: LeftOutDestination): string {
  return `    ${row.destination}  ${plural(row.requests, 'request')}, by ${row.rules.join(', ')}`;
}

function closing(summary: SuggestSummary): string {
  const lines: string[] = [];
  for (const reason of LEFT_OUT_REASONS) {
    const rows = summary.left_out.filter((r) => r.reason === reason);
    if (rows.length === 0) continue;
    lines.push(`  ${REASON_TITLES[reason]}:`, ...rows.slice(0, MAX_LISTED).map(leftOutLine));
    if (rows.length > MAX_LISTED) lines.push(`    ... and ${rows.length - MAX_LISTED} more`);
  }
  const result = lines.length > 0 ? ['Left out:', ...lines] : ['Nothing was left out.'];
  const tunnelled = summary.records.inside_tunnels;
  if (tunnelled > 0) {
    result.push(`${tunnelled} requests inside inspected tunnels (kind https) were not read on their own: their tunnel's`, 'CONNECT record stands for them, and a rule written for it covers them (it has no methods or paths).');
  }
  return result.map((line) => ` ${printable(line)}`).join('\n');
}

/** The YAML text of the suggestion file. */
export function emitYaml(rules: readonly SuggestedRule[], summary: SuggestSummary, label: string, now: Date): string {
  const doc = new Document();
  const top = new YAMLMap();
  top.set('version', POLICY_VERSION);
  const seq = new YAMLSeq();
  for (const rule of rules) seq.items.push(ruleNode(rule));
  top.set('rules', seq);
  doc.contents = top;
  doc.commentBefore = header(summary, label, now);
  doc.comment = closing(summary);
  return doc.toString({ lineWidth: 0 });
}
