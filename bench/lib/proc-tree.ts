import { readdirSync, readFileSync } from 'node:fs';

/**
 * CPU time and memory of a process together with its descendants, from /proc. squid and
 * tinyproxy may run helpers beside the process the bench started; counting the whole tree keeps
 * the comparison with tollgate's single process fair.
 */

/** Linux reports utime/stime in clock ticks; USER_HZ is 100 on every mainstream kernel build. */
const TICKS_PER_SECOND = 100;

interface StatLine {
  ppid: number;
  cpuTicks: number;
}

/** Fields of /proc/PID/stat after the command name (which may itself contain spaces and ')'). */
function readStat(pid: number): StatLine | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  // man 5 proc: after ")" come state(3) ppid(4) ... utime(14) stime(15), numbered from pid = 1.
  return { ppid: Number(fields[1]), cpuTicks: Number(fields[11]) + Number(fields[12]) };
}

/** `pid` and every live descendant. */
export function processTree(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = readStat(Number(entry));
    if (stat === null) continue;
    const siblings = children.get(stat.ppid) ?? [];
    siblings.push(Number(entry));
    children.set(stat.ppid, siblings);
  }
  const tree: number[] = [];
  const queue = [pid];
  while (queue.length > 0) {
    const next = queue.shift() as number;
    tree.push(next);
    queue.push(...(children.get(next) ?? []));
  }
  return tree;
}

/** User + system CPU seconds of one process, all its threads included (0 once it has exited). */
export function processCpuSeconds(pid: number): number {
  return (readStat(pid)?.cpuTicks ?? 0) / TICKS_PER_SECOND;
}

/** User + system CPU seconds used so far by the tree (processes that already exited are not counted). */
export function treeCpuSeconds(pid: number): number {
  let ticks = 0;
  for (const member of processTree(pid)) ticks += readStat(member)?.cpuTicks ?? 0;
  return ticks / TICKS_PER_SECOND;
}

/** Resident memory of the tree in KiB (VmRSS summed; pages shared between members count twice). */
export function treeRssKiB(pid: number): number {
  let total = 0;
  for (const member of processTree(pid)) {
    try {
      const match = /^VmRSS:\s+(\d+)/m.exec(readFileSync(`/proc/${member}/status`, 'utf8'));
      total += match ? Number(match[1]) : 0;
    } catch {
      // Exited between the listing and the read.
    }
  }
  return total;
}

/** Open fds of the tree. */
export function treeFds(pid: number): number {
  let total = 0;
  for (const member of processTree(pid)) {
    try {
      total += readdirSync(`/proc/${member}/fd`).length;
    } catch {
      // Exited, or not ours to read.
    }
  }
  return total;
}
