import type { FacetRow } from './facets';
import { assembleStats, bucketSecondsFor, ranked } from './stats';
import type { SeriesPoint, Stats, StatsWindow } from './stats';

/**
 * /api/stats with filters beyond the time window (SPEC §6: the same filters as /api/requests).
 * The per-minute counts and hourly rollups hold no host, rule or status breakdown to filter, so
 * the filtered set's records are read (each engine's walk, as for facets) and counted here: the
 * same answer shape as the unfiltered stats, exact, at the cost of reading every match.
 */
export class StatsTally {
  private readonly bucketMs: number;
  private readonly first: number;
  private readonly points: SeriesPoint[] = [];
  private readonly hosts = new Map<string, number>();
  private readonly denied = new Map<string, number>();
  private readonly clients = new Map<string, number>();
  private readonly groups = new Map<string, number>();

  constructor(private readonly window: StatsWindow) {
    this.bucketMs = bucketSecondsFor(window) * 1000;
    this.first = Math.floor(window.sinceMs / this.bucketMs);
    for (let b = this.first; b * this.bucketMs < window.untilMs; b += 1) {
      this.points.push({ t: new Date(b * this.bucketMs).toISOString(), allowed: 0, denied: 0, would_deny: 0 });
    }
  }

  add(rows: readonly FacetRow[]): void {
    const bump = (map: Map<string, number>, key: string): void => void map.set(key, (map.get(key) ?? 0) + 1);
    for (const row of rows) {
      // The walk tests the window on every row; this only guards the bucket arithmetic.
      if (row.started_at_ms < this.window.sinceMs || row.started_at_ms >= this.window.untilMs) continue;
      const point = this.points[Math.floor(row.started_at_ms / this.bucketMs) - this.first];
      if (row.decision === 'deny') point.denied += 1;
      else point.allowed += 1;
      if (row.would_deny) point.would_deny += 1;
      if (row.host !== null) {
        bump(this.hosts, row.host);
        if (row.decision === 'deny') bump(this.denied, row.host);
      }
      bump(this.clients, row.client_ip);
      for (const group of new Set(row.clients)) bump(this.groups, group);
    }
  }

  stats(top: number): Stats {
    const hosts = (counts: Map<string, number>) => ranked(counts, top).map(({ key, count }) => ({ host: key, count }));
    const clients = (counts: Map<string, number>) => ranked(counts, top).map(({ key, count }) => ({ client: key, count }));
    return assembleStats(this.window, this.bucketMs / 1000, this.points, {
      top_hosts: hosts(this.hosts),
      top_denied_hosts: hosts(this.denied),
      top_clients: clients(this.clients),
      top_client_groups: clients(this.groups),
    });
  }
}
