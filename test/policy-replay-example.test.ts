import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { checkPolicies } from '../src/policy/check';
import { MARKDOWN_MARKER } from '../src/policy/replay/format-markdown';

/**
 * examples/policy-repo: the policy repository a team copies. Its policies must be valid, and its
 * workflow must check them and post a replay (GitHub Actions does not run here: no Actions
 * runner on CI, so the workflow is checked by structure).
 */
const EXAMPLE = join(__dirname, '..', 'examples', 'policy-repo');

interface Step {
  name?: string;
  uses?: string;
  run?: string;
  if?: string;
  with?: Record<string, unknown>;
}

interface Workflow {
  on: { pull_request?: unknown };
  permissions: Record<string, string>;
  jobs: Record<string, { steps: Step[] }>;
}

const workflow = parse(readFileSync(join(EXAMPLE, '.github', 'workflows', 'policy.yml'), 'utf8')) as Workflow;
const steps = Object.values(workflow.jobs).flatMap((job) => job.steps);
const runs = (text: string): Step[] => steps.filter((s) => (s.run ?? '').includes(text));

describe('examples/policy-repo', () => {
  test('its policies pass `policy check`, with no warnings', () => {
    const result = checkPolicies(join(EXAMPLE, 'policies'));
    expect(result.ok).toBe(true);
    expect(result.lines).toHaveLength(1);
    expect(result.lines[0]).toMatch(/^ok: 4 files, 8 rules, default deny, mode enforce /);
  });

  test('the workflow runs on pull requests with node 20 and may comment', () => {
    expect(workflow.on.pull_request).toBeDefined();
    expect(workflow.permissions['pull-requests']).toBe('write');
    expect(steps.map((s) => s.uses).filter(Boolean)).toEqual(
      expect.arrayContaining([expect.stringMatching(/^actions\/checkout@/), expect.stringMatching(/^actions\/setup-node@/)]),
    );
    expect(steps.find((s) => s.uses?.startsWith('actions/setup-node@'))?.with?.['node-version']).toBe(20);
    expect(runs('npm install --global')).toHaveLength(1);
  });

  test('it checks the policies, then replays with markdown output and fails on new denials', () => {
    const check = steps.findIndex((s) => (s.run ?? '').includes('tollgate policy check --policies policies'));
    const replay = steps.findIndex((s) => /tollgate policy replay --db \S+ --policies policies/.test(s.run ?? ''));
    expect(check).toBeGreaterThan(-1);
    expect(replay).toBeGreaterThan(check);
    expect(steps[replay].run).toContain('--format markdown');
    expect(steps[replay].run).toContain('--fail-on-new-denials');
    expect(steps[replay].run).toMatch(/> replay\.md$/);
  });

  test('it fetches a snapshot in a placeholder step and posts the replay as a comment', () => {
    expect(steps.some((s) => s.name === 'Fetch the audit snapshot' && (s.run ?? '').includes('audit-snapshot.db'))).toBe(true);
    const comment = steps.find((s) => s.uses?.startsWith('actions/github-script@'));
    expect(comment?.if).toContain('!cancelled()');
    expect(String(comment?.with?.script)).toContain("fs.readFileSync('replay.md'");
    expect(String(comment?.with?.script)).toContain(`const marker = '${MARKDOWN_MARKER}';`);
  });

  test('the README says how the team works', () => {
    const readme = readFileSync(join(EXAMPLE, 'README.md'), 'utf8');
    expect(readme).toContain('tollgate policy check --policies policies');
    expect(readme).toContain('--format markdown --fail-on-new-denials');
    expect(readme).toContain('VACUUM INTO');
  });
});
