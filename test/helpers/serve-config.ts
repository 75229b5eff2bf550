import type { ServeConfig } from '../../src/config';
import { MIN_FREE_DISK_OFF } from '../../src/config-size';
import { readDescriptorLimit } from '../../src/descriptors';

/**
 * A ServeConfig for in-process `startServing` tests: both listeners on loopback port 0, short
 * timeouts, generous limits, no retention, watermark or fsync. Tests name their policies folder
 * and audit file, and override what they are about.
 */
export function testServeConfig(overrides: Pick<ServeConfig, 'policiesDir' | 'dbFile'> & Partial<ServeConfig>): ServeConfig {
  return {
    listen: { host: '127.0.0.1', port: 0 },
    adminListen: { host: '127.0.0.1', port: 0 },
    adminToken: null,
    dnsTimeoutMs: 2000,
    connectTimeoutMs: 2000,
    drainTimeoutMs: 2000,
    drainGraceMs: 0,
    tunnelIdleTimeoutMs: 60_000,
    tunnelMaxLifetimeMs: 0,
    requestIdleTimeoutMs: 30_000,
    maxTunnels: 100,
    maxTunnelsPerSource: 100,
    maxClientConnections: 1000,
    descriptorLimit: readDescriptorLimit(),
    usersFile: null,
    retainMs: 0,
    minFreeDisk: MIN_FREE_DISK_OFF,
    auditFsync: false,
    auditKeyFile: null,
    auditUrl: null,
    node: 'test-node',
    accessLog: null,
    proxyProtocolFrom: [],
    adminAuthProxy: [],
    workers: 1,
    maxClientConnectionsAuto: false,
    inspectCa: null,
    inspectTrust: null,
    ...overrides,
  };
}
