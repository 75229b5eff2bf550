import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { runCli } from './helpers/serve-process';

/** `tollgate policy check` and `policy test` on rules with `tls: inspect` (SPEC §6), through the built CLI. */

const POLICY = `version: 1
settings:
  default: deny
rules:
  - name: our-org
    action: allow
    hosts: [github.com]
    paths: ["/our-org/**"]
    tls: inspect
  - name: npm
    action: allow
    hosts: [registry.npmjs.org]
  - name: plain-only
    action: allow
    hosts: [old.example]
    ports: [80]
    tls: inspect
`;

let dir: string;

beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'tollgate-inspect-cli-'));
  writeFileSync(path.join(dir, 'p.yaml'), POLICY);
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

test('policy check warns of an inspecting rule for port 80 only', () => {
  const run = runCli('policy', 'check', '--policies', dir);
  expect(run.status).toBe(0);
  expect(run.stdout).toContain('p.yaml:13: warning: rule "plain-only": "tls: inspect" on a rule for port 80 only');
});

test('policy test shows that a CONNECT is inspected', () => {
  const run = runCli('policy', 'test', '--policies', dir, 'github.com:443');
  expect(run.status).toBe(0);
  expect(run.stdout).toContain('  match  our-org (p.yaml:5): matched');
  expect(run.stdout).toContain('tls: inspect (the tunnel\'s TLS is terminated with a certificate from the inspection CA; each request inside is decided on its own: try https://github.com:443/PATH)');
});

test('policy test https://… decides the CONNECT, then the request inside the inspected tunnel', () => {
  const allowed = runCli('policy', 'test', '--policies', dir, 'https://github.com/our-org/repo?tab=1');
  expect(allowed.status).toBe(0);
  expect(allowed.stdout).toContain('inside the tunnel:\nGET github.com:443/our-org/repo\n  match  our-org (p.yaml:5): matched\ndecision: allow');
  const denied = runCli('policy', 'test', '--policies', dir, '--method', 'POST', '--json', 'https://github.com/their-org/repo');
  expect(denied.status).toBe(1);
  expect(JSON.parse(denied.stdout)).toMatchObject({
    decision: 'deny', rule: '(default)', inspected: true,
    target: { host: 'github.com', port: 443, path: '/their-org/repo' },
    tunnel: { decision: 'allow', rule: 'our-org', tls: 'inspect' },
  });
});

test('policy test https://… on a tunnel that is not inspected says so, and its CONNECT decides', () => {
  const run = runCli('policy', 'test', '--policies', dir, 'https://registry.npmjs.org/left-pad');
  expect(run.status).toBe(0);
  expect(run.stdout).toContain('not inspected (tls: any): requests inside the tunnel are not decided one by one');
  expect(run.stdout).not.toContain('inside the tunnel:');
  const json = runCli('policy', 'test', '--policies', dir, '--json', 'https://registry.npmjs.org/left-pad');
  expect(JSON.parse(json.stdout)).toMatchObject({ decision: 'allow', rule: 'npm', inspected: false, tls: 'any' });
});
