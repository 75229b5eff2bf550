import type { Policy } from '../compiled';
import { recordedOutcome, ShapeDecider } from './decide-shape';
import type { RecordedTraffic, WindowCoverage } from './recorded-traffic';
import { CHANGE_KINDS, changeKind, type ChangeKind, type DestinationChange, type ReplayReport } from './report-types';
import { DestinationTally, RuleTally } from './tally';
import type { TimeWindow } from './window';

export interface ReplayInput {
  policy: Policy;
  /** As given on the command line, for the report. */
  policiesDir: string;
  traffic: RecordedTraffic;
  window: TimeWindow;
  /** Expiry of the proposed rules is judged at this instant (the policy is proposed now). */
  now: Date;
}

/** Said in every report, because it bounds what a replay can know. */
export const GUARD_NOTE =
  'The destination guard is not replayed for names: no DNS lookups are made. IP-literal targets are ' +
  'checked against the proposed network ranges; a name is assumed to resolve where it did when recorded ' +
  '(refused again if the guard refused it, let through if it passed).';
export const NOW_NOTE = 'Rules are matched as of now: a rule past its expires date matches nothing.';

interface Tallies {
  changes: Record<ChangeKind, DestinationTally>;
  rules: RuleTally;
  records: ReplayReport['records'];
  unchanged: number;
}

/** Decides every shape of the window once and tallies the differences. */
async function tallyShapes(input: ReplayInput): Promise<Tallies> {
  const { policy, window, now } = input;
  const tallies: Tallies = {
    changes: Object.fromEntries(CHANGE_KINDS.map((k) => [k, new DestinationTally()])) as Record<ChangeKind, DestinationTally>,
    rules: new RuleTally(policy),
    records: { in_window: 0, replayed: 0, skipped_malformed: 0, skipped_undecided: 0, shapes: 0, decisions: 0 },
    unchanged: 0,
  };
  const { records } = tallies;
  const decider = new ShapeDecider(policy, now, (verdict) => tallies.rules.observe(verdict));
  for await (const verdict of input.traffic.shapes(window)) {
    if (!verdict.ok) {
      records.in_window += verdict.count;
      if (verdict.why === 'undecided') records.skipped_undecided += verdict.count;
      else records.skipped_malformed += verdict.count;
      continue;
    }
    const { shape } = verdict;
    records.in_window += shape.count;
    records.replayed += shape.count;
    records.shapes += 1;
    const recorded = recordedOutcome(shape);
    const proposed = decider.decide(shape);
    tallies.rules.add(shape, recorded, proposed);
    const kind = changeKind(recorded.outcome, proposed.outcome);
    if (kind === null) tallies.unchanged += shape.count;
    else tallies.changes[kind].add(shape, recorded, proposed);
  }
  records.decisions = decider.decisions;
  return tallies;
}

function notes(coverage: WindowCoverage, window: TimeWindow): string[] {
  const result = [GUARD_NOTE, NOW_NOTE];
  if (coverage.oldestMs !== null && coverage.oldestMs > window.sinceMs) {
    result.push(`The database holds records only since ${new Date(coverage.oldestMs).toISOString()}, later than the start of the window.`);
  }
  if (coverage.total === 0) result.push('No requests were recorded in the window: nothing was replayed.');
  return result;
}

const iso = (ms: number | null): string | null => (ms === null ? null : new Date(ms).toISOString());

/**
 * Re-decides the window's recorded requests under `policy` and reports what would change.
 * Reads the database and nothing else; every distinct request shape is decided once.
 */
export async function replayTraffic(input: ReplayInput): Promise<ReplayReport> {
  const started = performance.now();
  // One snapshot: both reads see the same records while a proxy or a shipper keeps writing.
  const { coverage, tallies } = await input.traffic.snapshot(async () => ({
    coverage: await input.traffic.coverage(input.window),
    tallies: await tallyShapes(input),
  }));
  const rows = Object.fromEntries(CHANGE_KINDS.map((k) => [k, tallies.changes[k].rows()])) as Record<ChangeKind, DestinationChange[]>;
  const totals = (k: ChangeKind) => ({ destinations: rows[k].length, requests: rows[k].reduce((sum, r) => sum + r.requests, 0) });
  const ruleHits = tallies.rules.changes();
  const neverMatching = tallies.rules.neverMatching(input.now);
  const { policy, window } = input;
  return {
    policy: { dir: input.policiesDir, version: policy.version, content_hash: policy.contentHash, files: [...policy.files], rules: policy.rules.length },
    db: input.traffic.label,
    window: {
      since: new Date(window.sinceMs).toISOString(),
      until: new Date(window.untilMs).toISOString(),
      first_record: iso(coverage.firstMs),
      last_record: iso(coverage.lastMs),
      covered_since: iso(coverage.oldestMs),
    },
    records: tallies.records,
    recorded_policy_versions: coverage.versions,
    summary: {
      newly_denied: totals('newly_denied'),
      newly_allowed: totals('newly_allowed'),
      newly_would_deny: totals('newly_would_deny'),
      no_longer_would_deny: totals('no_longer_would_deny'),
      unchanged_requests: tallies.unchanged,
      rule_hit_changes: ruleHits.length,
      never_matching_rules: neverMatching.length,
    },
    ...rows,
    rule_hits: ruleHits,
    never_matching: neverMatching,
    notes: notes(coverage, window),
    elapsed_ms: Math.round(performance.now() - started),
  };
}
