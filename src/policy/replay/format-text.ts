import {
  clientIps, count, neverMatchingWhy, outcomeChange, plural, ruleChange, scopeLine, SECTION_TITLES, shortTime, summaryLine,
} from './format-shared';
import { CHANGE_KINDS, type ChangeKind, type ReplayReport } from './report-types';

/** The report for a terminal: one block per section, the biggest changes first. */

function destinationLines(report: ReplayReport, kind: ChangeKind, limit: number): string[] {
  const rows = report[kind];
  const title = SECTION_TITLES[kind].toLowerCase();
  if (rows.length === 0) return [`${title}: none`];
  const total = report.summary[kind];
  const lines = [`${title}: ${plural(total.destinations, 'destination')}, ${plural(total.requests, 'request')}`];
  for (const r of rows.slice(0, limit)) {
    lines.push(
      `  ${r.destination}  ${plural(r.requests, 'request')}, last seen ${shortTime(r.last_seen)}`,
      `    clients: ${r.client_groups.length > 0 ? `${r.client_groups.join(', ')}; ` : ''}${clientIps(r)}`,
      `    ${outcomeChange(r)}, rule ${ruleChange(r)}`,
    );
  }
  if (rows.length > limit) lines.push(`  …and ${plural(rows.length - limit, 'destination')} more (--format json lists all)`);
  return lines;
}

function ruleLines(report: ReplayReport, limit: number): string[] {
  const lines = [`rule hit changes: ${report.rule_hits.length === 0 ? 'none' : ''}`.trimEnd()];
  for (const h of report.rule_hits.slice(0, limit)) {
    const change = h.change > 0 ? `+${count(h.change)}` : count(h.change);
    lines.push(`  ${h.rule}${h.source ? ` (${h.source})` : ''}: ${count(h.recorded)} → ${count(h.proposed)} (${change})`);
  }
  lines.push(`rules that would never match: ${report.never_matching.length === 0 ? 'none' : ''}`.trimEnd());
  for (const r of report.never_matching.slice(0, limit)) lines.push(`  ${r.rule} (${r.source}, ${r.action}): ${neverMatchingWhy(r)}`);
  return lines;
}

export function formatText(report: ReplayReport, limit: number): string {
  const sections = CHANGE_KINDS.filter((k) => k === 'newly_denied' || k === 'newly_allowed' || report[k].length > 0);
  const lines = [
    `tollgate policy replay: ${report.policy.dir} (${report.policy.version}) against ${report.db}`,
    scopeLine(report),
    summaryLine(report),
    '',
    ...sections.flatMap((k) => destinationLines(report, k, limit)),
    ...ruleLines(report, limit),
    '',
    ...report.notes.map((n) => `note: ${n}`),
  ];
  return `${lines.join('\n')}\n`;
}
