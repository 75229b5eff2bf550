/** The policy most proxy tests run on: loopback origins allowed by name, everything else denied. */
export const PROXY_TEST_POLICY = `version: 1
settings:
  default: deny
network:
  # Test origins listen on loopback, which the guard blocks unless exempted.
  allow_ranges: [127.0.0.0/8]
rules:
  - name: deny-paste
    action: deny
    hosts: [paste.test]
    ports: any
  - name: origin
    action: allow
    hosts: [origin.test, "*.origin.test", 127.0.0.1]
    ports: any
  - name: internal-names
    action: allow
    hosts: [private.test, metadata.test, mapped.test, mixed.test, gone.test, 10.0.0.0/8]
    ports: any
`;

/** Name -> answers for the table resolver; only loopback is ever connected to. */
export const PROXY_TEST_HOSTS: Record<string, string[]> = {
  'origin.test': ['127.0.0.1'],
  'www.origin.test': ['127.0.0.1'],
  'paste.test': ['127.0.0.1'],
  'private.test': ['10.0.0.5'],
  'metadata.test': ['169.254.169.254'],
  'mapped.test': ['::ffff:10.0.0.1'],
  'mixed.test': ['10.0.0.7', '127.0.0.1'],
};

/** The policy of tests that run `serve` as a process: loopback origins allowed by address, the rest denied. */
export const LOOPBACK_POLICY = `version: 1
settings:
  default: deny
network:
  allow_ranges: [127.0.0.0/8]
rules:
  - name: loopback-origin
    action: allow
    hosts: [127.0.0.1]
    ports: any
`;

/**
 * One client group, `workloads`, from these sources, allowed to `host` on any port; everything else
 * denied: the PROXY protocol tests check that the header's address is what decides the group.
 */
export function workloadsPolicy(sources: readonly string[], host: string): string {
  return `version: 1
settings:
  default: deny
network:
  allow_ranges: [127.0.0.0/8]
clients:
  workloads:
    sources: [${sources.join(', ')}]
rules:
  - name: workloads-to-origin
    action: allow
    hosts: [${host}]
    ports: any
    clients: [workloads]
`;
}
