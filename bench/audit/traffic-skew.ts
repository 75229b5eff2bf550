/**
 * What gives the synthetic audit records of generate.ts and index-records.ts the skew of real
 * traffic: 20 client addresses in 3 groups, and Zipf popularity for picking hosts and clients.
 */

export interface BenchClient {
  ip: string;
  groups: string[];
}

export const CLIENTS: BenchClient[] = [
  ...Array.from({ length: 8 }, (_, i) => ({ ip: `10.0.8.${10 + i}`, groups: ['ci-runners'] })),
  ...Array.from({ length: 4 }, (_, i) => ({ ip: `10.0.12.${5 + i}`, groups: ['payments', 'prod'] })),
  ...Array.from({ length: 8 }, (_, i) => ({ ip: `10.1.${i}.20`, groups: ['dev'] })),
];

/** Cumulative Zipf(s) weights of n items, normalised to end at 1, for picking by binary search. */
function cumulative(n: number, s: number): Float64Array {
  const out = new Float64Array(n);
  let sum = 0;
  for (let i = 0; i < n; i += 1) {
    sum += 1 / Math.pow(i + 1, s);
    out[i] = sum;
  }
  for (let i = 0; i < n; i += 1) out[i] /= sum;
  return out;
}

/** Index in [0, n), item i with weight 1/(i+1)^s; one draw of `rand` per pick. */
export function zipfPicker(n: number, s: number, rand: () => number): () => number {
  const cdf = cumulative(n, s);
  return () => {
    const u = rand();
    let lo = 0;
    let hi = n - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cdf[mid] < u) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
}
