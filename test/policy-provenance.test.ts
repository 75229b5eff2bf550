import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadPolicy, type Policy } from '../src/policy/load';

/**
 * policy_version says where a policy came from: the git commit of the policies folder (with
 * -dirty when the loaded files differ from it), or the content hash outside git.
 */
const hasGit = spawnSync('git', ['--version']).status === 0;
const ALLOW = (host: string): string => `version: 1\nrules:\n  - name: to-${host.split('.')[0]}\n    action: allow\n    hosts: [${host}]\n`;

let repo: string;
let policies: string;

function git(...args: string[]): string {
  const run = spawnSync('git', ['-C', repo, ...args], { encoding: 'utf8' });
  if (run.status !== 0) throw new Error(`git ${args.join(' ')}: ${run.stderr}`);
  return run.stdout.trim();
}

function load(dir = policies): Policy {
  const loaded = loadPolicy(dir);
  if (!loaded.ok) throw new Error(JSON.stringify(loaded.problems));
  return loaded.policy;
}

function write(name: string, text: string, dir = policies): void {
  writeFileSync(join(dir, name), text);
}

beforeEach(() => {
  repo = mkdtempSync(join(tmpdir(), 'tollgate-provenance-'));
  policies = join(repo, 'policies');
  mkdirSync(policies);
  write('10-a.yaml', ALLOW('a.example'));
});

afterEach(() => {
  rmSync(repo, { recursive: true, force: true });
});

test('outside a git work tree: the content hash', () => {
  const policy = load();
  expect(policy.version).toMatch(/^sha256:[0-9a-f]{12}$/);
  expect(policy.contentHash).toBe(policy.version);
});

(hasGit ? describe : describe.skip)('inside a git work tree', () => {
  let head: string;

  beforeEach(() => {
    git('init', '--quiet');
    // Local config only: the test must not depend on, or touch, the user's global git config.
    git('config', 'user.email', 'test@example.invalid');
    git('config', 'user.name', 'tollgate test');
    git('config', 'commit.gpgsign', 'false');
    write('README.md', 'team notes\n', repo);
    git('add', '.');
    git('commit', '--quiet', '-m', 'policies');
    head = git('rev-parse', 'HEAD').slice(0, 12);
  });

  test('a clean folder: git: and the commit; the content hash is kept alongside', () => {
    const policy = load();
    expect(policy.version).toBe(`git:${head}`);
    expect(policy.contentHash).toMatch(/^sha256:[0-9a-f]{12}$/);
  });

  test('an edited policy file: -dirty, and a commit makes it clean again', () => {
    write('10-a.yaml', ALLOW('b.example'));
    expect(load().version).toBe(`git:${head}-dirty`);
    git('commit', '--quiet', '-am', 'b');
    const next = git('rev-parse', 'HEAD').slice(0, 12);
    expect(next).not.toBe(head);
    expect(load().version).toBe(`git:${next}`);
  });

  test.each([
    ['a new, untracked policy file', () => write('20-b.yaml', ALLOW('b.example'))],
    ['a deleted policy file', () => { write('20-b.yaml', ALLOW('b.example')); git('add', '.'); git('commit', '--quiet', '-m', 'b'); rmSync(join(policies, '20-b.yaml')); }],
    ['a git-ignored policy file (loaded, but in no commit)', () => { write('.gitignore', 'local-*.yaml\n', repo); write('local-x.yaml', ALLOW('x.example')); }],
    ['a staged, uncommitted edit', () => { write('10-a.yaml', ALLOW('c.example')); git('add', '.'); }],
  ])('%s: -dirty', (_name, change) => {
    change();
    expect(load().version).toMatch(/^git:[0-9a-f]{12}-dirty$/);
  });

  test.each([
    ['a change outside the folder', () => write('README.md', 'changed\n', repo)],
    ['a file the load does not read', () => { write('notes.txt', 'x'); write('.10-a.yaml.swp', 'x'); }],
  ])('%s: still clean', (_name, change) => {
    change();
    expect(load().version).toBe(`git:${head}`);
  });

  test('the folder at the root of its own repository', () => {
    rmSync(join(repo, '.git'), { recursive: true, force: true });
    repo = policies;
    try {
      git('init', '--quiet');
      git('config', 'user.email', 'test@example.invalid');
      git('config', 'user.name', 'tollgate test');
      git('config', 'commit.gpgsign', 'false');
      git('add', '.');
      git('commit', '--quiet', '-m', 'at the root');
      expect(load().version).toBe(`git:${git('rev-parse', 'HEAD').slice(0, 12)}`);
      write('10-a.yaml', ALLOW('d.example'));
      expect(load().version).toMatch(/-dirty$/);
    } finally {
      repo = join(policies, '..');
    }
  });

  test('a repository with no commit yet: the content hash', () => {
    rmSync(join(repo, '.git'), { recursive: true, force: true });
    git('init', '--quiet');
    expect(load().version).toMatch(/^sha256:/);
  });

  test('GIT_DIR in the environment (a git hook) does not redirect the lookup', () => {
    const saved = process.env.GIT_DIR;
    process.env.GIT_DIR = join(tmpdir(), 'no-such-repository');
    try {
      expect(load().version).toBe(`git:${head}`);
    } finally {
      if (saved === undefined) delete process.env.GIT_DIR;
      else process.env.GIT_DIR = saved;
    }
  });

  test('without git on the PATH: the content hash', () => {
    const saved = process.env.PATH;
    process.env.PATH = join(repo, 'no-bin');
    try {
      expect(load().version).toMatch(/^sha256:[0-9a-f]{12}$/);
    } finally {
      process.env.PATH = saved;
    }
  });
});
