import { spawn } from 'node:child_process';
import { CLI, ensureBuilt, REPO_ROOT, ServeProcess, splitHostPort } from './helpers/serve-process';
import { HOUR, MINUTE } from './helpers/admin-fixture';
import { pgHistory } from './helpers/admin-engines';
import type { PgHistory } from './helpers/admin-engines';
import { describePg } from './helpers/postgres';

const PASSWORD = 'pw-not-for-logs-7731';

function spawnAdmin(args: string[], env: NodeJS.ProcessEnv): ServeProcess {
  ensureBuilt();
  const child = spawn(process.execPath, [CLI, 'admin', ...args], { cwd: REPO_ROOT, env: { PATH: process.env.PATH, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  return new ServeProcess(child);
}

/** The history's URL with a password (the test server trusts loopback, so any password connects). */
function withPassword(url: string): string {
  const parsed = new URL(url);
  parsed.password = PASSWORD;
  return parsed.toString();
}

describePg('tollgate admin --audit-url, a real process', () => {
  let h: PgHistory;
  beforeAll(async () => {
    h = await pgHistory('tollgate-admin-cmd-', 'node-a');
    const now = Date.now();
    await h.write([{ at: now - HOUR, host: 'a.example' }]);
    await h.replica('node-b').write([{ at: now - MINUTE, host: 'b.example', decision: 'deny' }]);
  });
  afterAll(async () => {
    await h.cleanup();
  });

  it('serves the shared history of two nodes on port 0, ready while PostgreSQL answers, and never logs the password', async () => {
    const proc = spawnAdmin(['--admin-listen', '127.0.0.1:0'], { TOLLGATE_AUDIT_URL: withPassword(h.url) });
    try {
      const line = await proc.waitForLog('listening');
      const port = splitHostPort(String(line.admin)).port;
      expect(port).toBeGreaterThan(0);
      expect(String(line.audit_url)).toContain(':***@');
      const base = `http://127.0.0.1:${port}`;
      const page = (await (await fetch(`${base}/api/requests`)).json()) as { items: Array<{ node: string; host: string }> };
      expect(page.items.map((r) => [r.node, r.host])).toEqual([['node-b', 'b.example'], ['node-a', 'a.example']]);
      const only = (await (await fetch(`${base}/api/requests?node=node-a`)).json()) as { items: unknown[] };
      expect(only.items).toHaveLength(1);
      const ready = await fetch(`${base}/readyz`);
      expect([ready.status, await ready.json()]).toEqual([200, { audit_database: 'postgres', audit_database_answers: true, ready: true }]);
      const policy = await fetch(`${base}/api/policy`);
      expect(policy.status).toBe(503);
      expect(((await policy.json()) as { error: string }).error).toMatch(/^no policy in admin mode/);
      const nodes = (await (await fetch(`${base}/api/nodes`)).json()) as { nodes: Array<{ node: string }> };
      expect(nodes.nodes.map((n) => n.node)).toEqual(['node-a', 'node-b']);
      // Each replica's chain head as its copy in the shared history stands (issue 17).
      const heads = (await (await fetch(`${base}/api/audit/head`)).json()) as { heads: Array<{ node: string; hash: string; id: number }> };
      expect(heads.heads.map((head) => [head.node, /^[0-9a-f]{64}$/.test(head.hash), head.id > 0])).toEqual([['node-a', true, true], ['node-b', true, true]]);
      expect((await fetch(`${base}/`)).status).toBe(200);
      proc.child.kill('SIGTERM');
      expect(await proc.exited).toEqual({ code: 0, signal: null });
    } finally {
      proc.child.kill('SIGKILL');
    }
    expect(JSON.stringify(proc.lines) + proc.stderr).not.toContain(PASSWORD);
  });

  it('refuses a non-loopback listen without TOLLGATE_ADMIN_TOKEN, before connecting', async () => {
    const proc = spawnAdmin(['--admin-listen', '0.0.0.0:0'], { TOLLGATE_AUDIT_URL: withPassword(h.url) });
    expect(await proc.exited).toEqual({ code: 1, signal: null });
    expect(proc.stderr).toContain('refusing to serve the admin UI on non-loopback 0.0.0.0 without TOLLGATE_ADMIN_TOKEN');
    expect(proc.stderr).not.toContain(PASSWORD);
  });

  it('asks for a URL, and names an unreachable database without its password', async () => {
    const none = spawnAdmin(['--admin-listen', '127.0.0.1:0'], {});
    expect(await none.exited).toEqual({ code: 1, signal: null });
    expect(none.stderr).toContain('needs --audit-url');
    const down = spawnAdmin(['--admin-listen', '127.0.0.1:0', '--audit-url', `postgres://u:${PASSWORD}@127.0.0.1:1/db`], {});
    expect(await down.exited).toEqual({ code: 1, signal: null });
    expect(down.stderr).toContain('cannot prepare the shared history at postgres://u:***@127.0.0.1:1/db');
    expect(down.stderr + JSON.stringify(down.lines)).not.toContain(PASSWORD);
  });
});
