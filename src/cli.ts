#!/usr/bin/env node
import { runAdmin } from './commands/admin';
import { runAuditPrune, runAuditVerify } from './commands/audit';
import { runCaInit } from './commands/ca';
import { runPolicyCheck, runPolicyReplay, runPolicyUnused } from './commands/policy';
import { runPolicySuggest } from './commands/policy-suggest';
import { runPolicyTest } from './commands/policy-test';
import { runServe } from './commands/serve';
import { runUsers } from './commands/users';

const USAGE = `tollgate - an egress proxy with policies as code and an audit trail

usage:
  tollgate serve [options]                 run the proxy and the admin UI
  tollgate admin --audit-url URL [--admin-listen HOST:PORT]
                                           the admin UI and API alone, on the fleet's
                                           shared history in PostgreSQL
  tollgate policy check [--policies DIR]   validate policy files
  tollgate policy test [options] TARGET    explain the decision for one request
  tollgate policy replay --db FILE|--audit-url URL --policies DIR [options]
                                           replay recorded traffic against proposed policies
                                           and report what would change (text, markdown, json)
  tollgate policy unused --db FILE|--audit-url URL [options]
                                           rules with no recorded hits, and expiring rules
  tollgate policy suggest --db FILE|--audit-url URL --policies DIR [options]
                                           allow rules (YAML) for recorded traffic the policies
                                           only report or allow by default (adoption)
  tollgate audit prune --audit-url URL --older-than DURATION
                                           delete old records of the shared history (PostgreSQL)
  tollgate audit verify --db FILE|--audit-url URL [--expect-head HASH] [--audit-key FILE]
                                           check the audit log's chain of hashes (tampering)
  tollgate ca init --out DIR [--name CN] [--days N] [--permit DOMAIN ...]
                                           create the CA that TLS inspection (serve
                                           --inspect-ca DIR) signs leaf certificates with
  tollgate users add NAME                  print a users-file line (password from stdin or a prompt)

Run "tollgate <command> --help" for a command's options.
`;

/** Dispatch to one function per subcommand; each returns the process exit code. */
async function main(argv: string[]): Promise<number> {
  const [command, sub, ...rest] = argv;
  if (command === 'serve') return runServe(argv.slice(1));
  if (command === 'admin') return runAdmin(argv.slice(1));
  if (command === 'users') return runUsers(argv.slice(1));
  if (command === 'audit' && sub === 'prune') return runAuditPrune(rest);
  if (command === 'audit' && sub === 'verify') return runAuditVerify(rest);
  if (command === 'ca' && sub === 'init') return runCaInit(rest);
  if (command === 'policy' && sub === 'check') return runPolicyCheck(rest);
  if (command === 'policy' && sub === 'test') return runPolicyTest(rest);
  if (command === 'policy' && sub === 'replay') return runPolicyReplay(rest);
  if (command === 'policy' && sub === 'unused') return runPolicyUnused(rest);
  if (command === 'policy' && sub === 'suggest') return runPolicySuggest(rest);
  const asked = command === undefined || command === '--help' || command === '-h' || command === 'help';
  (asked ? process.stdout : process.stderr).write(USAGE);
  return asked ? 0 : 2;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`tollgate: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
