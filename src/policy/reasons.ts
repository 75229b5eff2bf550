import type { Action } from './types';

/**
 * The fixed phrases a decision's reason is built from: a small fixed set plus the data, so that
 * reasons can be grouped and searched. Code, tests and anything that parses reasons import these
 * instead of repeating the words, so a reworded phrase cannot leave a stale copy behind.
 */
export const REASON_MATCHED_RULE = 'matched rule';
export const REASON_NO_RULE_MATCHED = 'no rule matched';
export const REASON_REPORT_MODE = 'report mode: let through';

/** The rule name used when no rule matched (Decision.rule). */
export const DEFAULT_RULE = '(default)';

/** `matched rule "ci-github" (allow)`, `matched rule "paste" (deny; report mode: let through)` */
export function matchedRuleReason(rule: string, action: Action, reported: boolean): string {
  return `${REASON_MATCHED_RULE} "${rule}" (${action}${reported ? `; ${REASON_REPORT_MODE}` : ''})`;
}

/** `no rule matched; default deny`, `no rule matched; default deny (report mode: let through)` */
export function defaultReason(action: Action, reported: boolean): string {
  return `${REASON_NO_RULE_MATCHED}; default ${action}${reported ? ` (${REASON_REPORT_MODE})` : ''}`;
}

/** Why a rule did not match a request, in the order they are checked. */
export type Mismatch = 'expired' | 'client' | 'host' | 'port' | 'connect' | 'method' | 'path';

export const MISMATCH_PHRASES: Readonly<Record<Mismatch, string>> = {
  expired: 'expired',
  client: 'client not in the rule\'s groups',
  host: 'host not matched',
  port: 'port not matched',
  connect: 'rules with methods or paths never match a CONNECT',
  method: 'method not matched',
  path: 'path not matched',
};

export const MATCHED_PHRASE = 'matched';
