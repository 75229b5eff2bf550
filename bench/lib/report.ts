/** The bench's result as a markdown table, written to bench/results/ and printed. */

export interface IdleTunnelResult {
  tunnels: number;
  targetKiBPerTunnel: number;
  baselineKiB: number;
  withTunnelsKiB: number;
  afterCloseKiB: number;
  establishMs: number;
  fdLimit: number;
  baseFds: number;
  fdsWithTunnels: number;
  samples: number;
  nodeArgs: string[];
  fdNote: string;
}

export function kiBPerTunnel(result: IdleTunnelResult): number {
  return (result.withTunnelsKiB - result.baselineKiB) / result.tunnels;
}

const mib = (kib: number): string => `${(kib / 1024).toFixed(1)} MiB`;

export function renderMarkdown(result: IdleTunnelResult, when: Date): string {
  const perTunnel = kiBPerTunnel(result);
  const verdict = perTunnel < result.targetKiBPerTunnel ? 'met' : 'NOT met';
  const rows: Array<[string, string]> = [
    ['idle tunnels held', result.tunnels.toLocaleString('en-US')],
    ['proxy RSS, baseline (after a warm-up)', mib(result.baselineKiB)],
    ['proxy RSS, with the tunnels open', mib(result.withTunnelsKiB)],
    ['**RSS delta per tunnel**', `**${perTunnel.toFixed(1)} KiB**`],
    ['target', `< ${result.targetKiBPerTunnel} KiB per tunnel: ${verdict}`],
    ['proxy RSS, after closing them all', mib(result.afterCloseKiB)],
    ['time to establish them', `${(result.establishMs / 1000).toFixed(1)} s`],
    ['proxy open fds: baseline / with tunnels / limit', `${result.baseFds} / ${result.fdsWithTunnels} / ${result.fdLimit}`],
  ];
  return [
    `# Idle CONNECT tunnels: proxy memory`,
    '',
    `Measured ${when.toISOString()} on Node ${process.version}, ${result.nodeArgs.length ? `proxy node flags \`${result.nodeArgs.join(' ')}\`` : 'no extra node flags'}. ` +
      'Produced by `npm run bench:tunnels` (bench/idle-tunnels.ts).',
    '',
    '| measure | value |',
    '| --- | --- |',
    ...rows.map(([name, value]) => `| ${name} | ${value} |`),
    '',
    'How it is measured:',
    '- `tollgate serve` runs as its own process (`node dist/cli.js serve`); the echo origin runs in another,',
    '  and the bench process holds the client sockets. All traffic is on 127.0.0.1.',
    '- Each tunnel gets its 200 and carries one small echo round trip, then stays idle.',
    `- RSS is VmRSS from /proc, sampled ${result.samples} times over about 3 s; the median is reported.`,
    '  The proxy is not made to collect garbage, so this is the RSS the OS sees, garbage included.',
    '  Kernel socket buffers are not part of RSS.',
    '- RSS after closing rarely falls: with nothing allocating, V8 does not collect, and freed pages are',
    '  not handed back at once. That alone is not a leak.',
    `- ${result.fdNote}`,
    '',
  ].join('\n');
}
