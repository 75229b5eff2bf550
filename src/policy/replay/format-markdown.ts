import {
  clientIps, count, neverMatchingWhy, outcomeChange, plural, ruleChange, scopeLine, SECTION_TITLES, shortTime, summaryLine,
} from './format-shared';
import { CHANGE_KINDS, type ChangeKind, type DestinationChange, type ReplayReport } from './report-types';

/**
 * The report as a pull-request comment. The first line is a hidden marker, so a CI job can find
 * its previous comment and update it instead of adding one per push.
 */
export const MARKDOWN_MARKER = '<!-- tollgate-policy-replay -->';

/** GitHub caps a comment at 65,536 characters; long tables are cut to this many rows. */
export const DEFAULT_MARKDOWN_ROWS = 50;

/**
 * Inline code for a table cell. Names come from the audit database too, so nothing in them may
 * end the code span (a backtick) or the cell (a pipe: GFM reads `\|` as a pipe even in code).
 */
function code(text: string): string {
  return `\`${cell(text.replace(/`/g, "'"))}\``;
}

function cell(text: string): string {
  return text.replace(/\|/g, '\\|').replace(/[\r\n]+/g, ' ');
}

function table(header: string[], align: string[], rows: string[][]): string[] {
  return [`| ${header.join(' | ')} |`, `| ${align.join(' | ')} |`, ...rows.map((r) => `| ${r.join(' | ')} |`)];
}

function cut<T>(items: T[], limit: number, noun: string): { shown: T[]; more: string[] } {
  if (items.length <= limit) return { shown: items, more: [] };
  return { shown: items.slice(0, limit), more: ['', `_…and ${plural(items.length - limit, noun)} more (see \`--format json\`)._`] };
}

function destinationSection(kind: ChangeKind, rows: DestinationChange[], limit: number): string[] {
  const title = `### ${SECTION_TITLES[kind]}`;
  if (rows.length === 0) return [title, '', '_None._', ''];
  const { shown, more } = cut(rows, limit, 'destination');
  const body = table(
    ['destination', 'requests', 'client groups', 'client IPs', 'last seen', 'outcome', 'rule (recorded → proposed)'],
    ['---', '---:', '---', '---', '---', '---', '---'],
    shown.map((r) => [
      code(r.destination), count(r.requests), cell(r.client_groups.join(', ') || '-'), cell(clientIps(r)),
      shortTime(r.last_seen), cell(outcomeChange(r)), ruleChange(r, code),
    ]),
  );
  return [title, '', ...body, ...more, ''];
}

function ruleHitSection(report: ReplayReport, limit: number): string[] {
  const title = '### Rule hit changes';
  if (report.rule_hits.length === 0) return [title, '', '_None: every rule decides as many requests as before._', ''];
  const { shown, more } = cut(report.rule_hits, limit, 'rule');
  const sign = (n: number): string => (n > 0 ? `+${count(n)}` : count(n));
  const body = table(
    ['rule', 'source', 'recorded', 'proposed', 'change'],
    ['---', '---', '---:', '---:', '---:'],
    shown.map((h) => [code(h.rule), h.source === null ? '-' : code(h.source), count(h.recorded), count(h.proposed), sign(h.change)]),
  );
  return [title, '', ...body, ...more, ''];
}

function neverMatchingSection(report: ReplayReport, limit: number): string[] {
  const title = '### Rules that would never match';
  if (report.never_matching.length === 0) return [title, '', '_None: every rule decides at least one recorded request._', ''];
  const { shown, more } = cut(report.never_matching, limit, 'rule');
  const body = table(
    ['rule', 'source', 'action', 'why'],
    ['---', '---', '---', '---'],
    shown.map((r) => [code(r.rule), code(r.source), r.action, cell(neverMatchingWhy(r))]),
  );
  return [title, '', ...body, ...more, ''];
}

export function formatMarkdown(report: ReplayReport, limit = DEFAULT_MARKDOWN_ROWS): string {
  const denied = report.summary.newly_denied.destinations;
  const headline = denied > 0 ? `${plural(denied, 'destination')} newly denied` : 'no new denials';
  const sections = CHANGE_KINDS.filter((k) => k === 'newly_denied' || k === 'newly_allowed' || report[k].length > 0);
  const lines = [
    MARKDOWN_MARKER,
    `## tollgate policy replay: ${headline}`,
    '',
    `**${summaryLine(report)}**`,
    '',
    scopeLine(report, code),
    '',
    ...sections.flatMap((k) => destinationSection(k, report[k], limit)),
    ...ruleHitSection(report, limit),
    ...neverMatchingSection(report, limit),
    // Separate paragraphs: consecutive `>` lines would run together into one.
    ...report.notes.flatMap((n, i) => (i === 0 ? [`> ${cell(n)}`] : ['>', `> ${cell(n)}`])),
  ];
  return `${lines.join('\n')}\n`;
}
