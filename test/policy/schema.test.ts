import { join } from 'node:path';
import { formatProblem, loadPolicy } from '../../src/policy/load';
import { FIXTURES } from './helpers';

/** Each bad fixture folder and exactly the `FILE:LINE: message` lines it must produce. */
const BAD_FIXTURES: ReadonlyArray<[string, string[]]> = [
  ['bad-unknown-key', ['policy.yaml:5: rule "typo": unknown key "hots"; did you mean "hosts"?']],
  ['bad-unknown-top', ['policy.yaml:2: top level: unknown key "rule"; did you mean "rules"?']],
  ['bad-duplicate-rule', ['20-b.yaml:6: duplicate rule name "same" (first defined at 10-a.yaml:3); rule names must be unique across all files']],
  ['bad-duplicate-client', ['20-b.yaml:5: duplicate client group name "ci" (first defined at 10-a.yaml:3); client group names must be unique across all files']],
  ['bad-second-settings', ['50-team.yaml:3: a second "settings" block (the first is at 00-settings.yaml:2); keep settings in one file']],
  ['bad-cidr', ['policy.yaml:5: network.deny_ranges: "198.51.100.0/33" has a bad prefix length (0-32)']],
  ['bad-host-bits', ['policy.yaml:5: client "ci": sources: "10.0.8.1/22" has host bits set; did you mean "10.0.8.0/22"?']],
  ['bad-glob', ['policy.yaml:7: rule "braces": host pattern "{a,b}.example": only letters, digits, "-", "_" and the wildcards "*", "**" and "?" are allowed']],
  ['bad-globstar', ['policy.yaml:5: rule "partial-globstar": host pattern "a**.example": "**" must be a whole label, as in "**.example.com"']],
  ['bad-users', ['policy.yaml:5: client "ci-runners": user name "bad name" may hold only letters, digits, ".", "_", "@" and "-"']],
  ['bad-settings-auth', ['policy.yaml:4: settings.auth must be off or optional or required, got "sometimes"']],
  ['bad-upstream', ['policy.yaml:3: settings.upstream: "https://parent.example:3128" must be http://[user:password@]host:port (with the port)']],
  ['bad-idn', ['policy.yaml:5: rule "books": host pattern "bü\\u{200d}cher.example": label "bü\\u{200d}cher" cannot be converted to punycode (IDNA refuses it: a character that is not allowed in names, or a mix of right-to-left and left-to-right letters)']],
  ['bad-version', ['policy.yaml:1: version must be 1, got 2']],
  ['bad-no-version', ['policy.yaml:1: missing "version"; start the file with "version: 1"']],
  ['bad-action', ['policy.yaml:4: rule "allw": action must be allow or deny, got "alow"; did you mean "allow"?']],
  ['bad-expires', ['policy.yaml:6: rule "temp": expires must be a date written YYYY-MM-DD, e.g. 2026-12-31; got "2026-02-30"']],
  ['bad-port', ['policy.yaml:6: rule "ports": ports: bad port 70000; a port is 1-65535, a range like "8000-8999", or write "ports: any"']],
  ['bad-port-scalar', ['policy.yaml:6: rule "ports": ports must be a list; write [443] for a single value']],
  ['bad-unknown-client', ['20-rules.yaml:6: rule "ci": unknown client group "ci-runner"; did you mean "ci-runners"?']],
  ['bad-alias', ['policy.yaml:5: rule "unquoted-star": hosts entry: YAML aliases are not supported; quote values that start with "*", e.g. "*.github.com"']],
  ['bad-yaml', ['policy.yaml:5: YAML syntax: Map keys must be unique']],
  ['bad-methods', ['policy.yaml:6: rule "tunnel": rules with "methods" apply to plain HTTP only, so CONNECT never matches; to match tunnels, drop "methods"']],
  ['bad-methods-type', ['policy.yaml:6: rule "get-only": methods must be a list; write [GET] for a single value']],
  ['bad-paths', ['policy.yaml:8: rule "api": path pattern "repos/**" must start with "/", e.g. "/repos/**"']],
  ['bad-missing-hosts', ['policy.yaml:3: rule "nohosts": missing "hosts"; use ["**"] for every name (IP literals need "0.0.0.0/0", "::/0")']],
  ['bad-host-port', ['policy.yaml:5: rule "hp": host "github.com:443" has a port; write "github.com" and put 443 in "ports"']],
  ['bad-partial', ['20-bad.yaml:6: rule "bad": unknown key "port"; did you mean "ports"?']],
  ['no-yaml', ['no-yaml: no policy files (*.yaml, *.yml) in the folder; every request would be denied']],
];

describe('invalid policy folders are refused with FILE:LINE problems', () => {
  test.each(BAD_FIXTURES)('%s', (fixture, expected) => {
    const result = loadPolicy(join(FIXTURES, fixture));
    expect(result.ok).toBe(false);
    expect(result.ok ? [] : result.problems.map(formatProblem)).toEqual(expected);
  });
});
