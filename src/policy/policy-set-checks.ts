import { suggestion } from './closest-name';
import { isOverBroad } from './host-match';
import { quotePattern } from './idn-pattern';
import { idnWarnings } from './idn-warnings';
import { parseLiteral, rangeContains } from './ip-range';
import { sourceOf, type Problem } from './problems';
import type { PolicyFileSpec, RuleSpec } from './schema';
import type { ParentProxy } from './types';

/**
 * Checks that need every file at once: names unique across the folder, one settings block,
 * rules naming only client groups that exist somewhere. Problems fail the load; warnings do not.
 */
export function checkPolicySet(files: readonly PolicyFileSpec[]): Problem[] {
  return [...checkSettings(files), ...checkUniqueNames(files), ...checkClientReferences(files)];
}

function checkSettings(files: readonly PolicyFileSpec[]): Problem[] {
  const problems: Problem[] = [];
  let first: string | null = null;
  for (const { file, settings } of files) {
    if (settings === null) continue;
    if (first === null) first = sourceOf(file, settings.line);
    else problems.push({ file, line: settings.line, message: `a second "settings" block (the first is at ${first}); keep settings in one file` });
  }
  return problems;
}

function checkUniqueNames(files: readonly PolicyFileSpec[]): Problem[] {
  const problems: Problem[] = [];
  const rules = new Map<string, string>();
  const clients = new Map<string, string>();
  for (const { file, rules: fileRules, clients: fileClients } of files) {
    for (const { name, line } of fileRules) noteName(problems, rules, 'rule', name, file, line);
    for (const { name, line } of fileClients) noteName(problems, clients, 'client group', name, file, line);
  }
  return problems;
}

function noteName(problems: Problem[], seen: Map<string, string>, kind: string, name: string, file: string, line: number): void {
  const first = seen.get(name);
  if (first === undefined) seen.set(name, sourceOf(file, line));
  else problems.push({ file, line, message: `duplicate ${kind} name "${name}" (first defined at ${first}); ${kind} names must be unique across all files` });
}

function checkClientReferences(files: readonly PolicyFileSpec[]): Problem[] {
  const known = files.flatMap((f) => f.clients.map((c) => c.name));
  const problems: Problem[] = [];
  for (const { file, rules } of files) {
    for (const rule of rules) {
      for (const ref of rule.clients ?? []) {
        if (known.includes(ref.value)) continue;
        const message = `rule "${rule.name}": unknown client group "${ref.value}"${suggestion(ref.value, known)}`;
        problems.push({ file, line: ref.line, message });
      }
    }
  }
  return problems;
}

/** Legal but probably not what the author meant. */
export function policySetWarnings(files: readonly PolicyFileSpec[]): Problem[] {
  const warnings: Problem[] = exposedParentWarnings(files);
  const authOff = (files.find((f) => f.settings !== null)?.settings?.auth ?? 'off') === 'off';
  for (const { file, rules, clients } of files) {
    for (const client of clients.filter((c) => c.sources.length === 0 && c.users.length === 0)) {
      warnings.push({ file, line: client.line, message: `client group "${client.name}" has neither "sources" nor "users", so no request belongs to it` });
    }
    for (const client of clients.filter((c) => c.users.length > 0 && authOff)) {
      warnings.push({ file, line: client.line, message: `client group "${client.name}" names users, but settings.auth is off: no request is authenticated` });
    }
    for (const rule of rules) {
      warnings.push(...hostWarnings(file, rule));
      if (rule.mode === 'report' && rule.action === 'allow') {
        warnings.push({ file, line: rule.line, message: `rule "${rule.name}": "mode: report" has no effect on an allow rule` });
      }
      if (rule.tls === 'inspect' && rule.ports !== 'any' && rule.ports.every(([low, high]) => low === 80 && high === 80)) {
        warnings.push({ file, line: rule.line, message: `rule "${rule.name}": "tls: inspect" on a rule for port 80 only: it inspects CONNECT tunnels, and plain HTTP is decided request by request without it` });
      }
    }
  }
  return warnings;
}

function hostWarnings(file: string, rule: RuleSpec): Problem[] {
  const warnings: Problem[] = [];
  rule.hosts.forEach((entry, i) => {
    if (entry.kind !== 'name') return;
    const shown = quotePattern(entry.pattern, entry.written);
    if (isOverBroad(entry.pattern)) warnings.push({ file, line: rule.line, message: `rule "${rule.name}": host pattern ${shown} is very broad` });
    if (entry.written === undefined) return;
    const line = rule.hostLines[i] ?? rule.line;
    for (const message of idnWarnings(entry.written, shown)) warnings.push({ file, line, message: `rule "${rule.name}": ${message}` });
  });
  return warnings;
}

/**
 * Before `parent_ranges` existed a parent's address had to be listed in `allow_ranges`, which
 * also lets every client CONNECT to the parent itself. Only IP-literal parents can be checked
 * here: a name's addresses are known only when it is resolved.
 */
function exposedParentWarnings(files: readonly PolicyFileSpec[]): Problem[] {
  const parents = new Map<string, ParentProxy>();
  for (const { settings, rules } of files) {
    for (const parent of [settings?.upstream, ...rules.map((r) => r.via?.parent)]) {
      if (parent && parent.hostKind !== 'name') parents.set(parent.label, parent);
    }
  }
  const warnings: Problem[] = [];
  for (const { file, network } of files) {
    for (const { range, line } of network.allowRanges) {
      for (const parent of parents.values()) {
        const address = parseLiteral(parent.host);
        if (address === null || !rangeContains(range, address)) continue;
        const message = `allow_ranges entry ${range.cidr} covers upstream proxy ${parent.label}, so clients may also connect to it as a destination; list the parent in network.parent_ranges instead`;
        warnings.push({ file, line, message });
      }
    }
  }
  return warnings;
}
