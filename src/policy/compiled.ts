import type { Minimatch } from 'minimatch';
import { compileHostMatcher, type HostMatcher } from './host-match';
import type { IpRange } from './ip-range';
import { compilePathPatterns } from './path-match';
import { sourceOf } from './problems';
import type { PolicyProvenance } from './provenance';
import type { PolicyFileSpec, PortSpec, RangeSpec, RuleSpec } from './schema';
import type { Action, AuthMode, Mode, NetworkPolicy, ParentProxy, RangeEntry, TlsMode } from './types';

/** A rule with everything decide() needs precompiled, so a decision does no parsing. */
export interface CompiledRule {
  name: string;
  action: Action;
  /** 'FILE:LINE' of the rule's `- name:` item. */
  source: string;
  /** The rule's own mode, or null to follow settings.mode. */
  mode: Mode | null;
  /** The rule's own `tls:`, or null to follow settings.tls. */
  tls: TlsMode | null;
  /**
   * An allow rule whose `tls:` (its own, else settings.tls) is `inspect`: it matches a CONNECT
   * on its hosts, ports and clients alone, and its methods and paths apply to the requests
   * inside the tunnel (SPEC §6). A deny rule never widens this way (rule-schema.ts).
   */
  inspects: boolean;
  /** Client group names, or null for every client. */
  clients: readonly string[] | null;
  hosts: HostMatcher;
  /** The host entries as normalised text (display only). */
  hostPatterns: readonly string[];
  ports: PortSpec;
  methods: ReadonlySet<string> | null;
  paths: readonly Minimatch[] | null;
  pathPatterns: readonly string[] | null;
  /** YYYY-MM-DD as written, and the first instant (ms since epoch) it no longer matches. */
  expires: string | null;
  expiresAt: number | null;
  /** `via`: a parent proxy, null for `via: direct`, undefined to follow settings.upstream. */
  via: ParentProxy | null | undefined;
}

export interface CompiledClient {
  name: string;
  /** 'FILE:LINE' of the group's name. */
  source: string;
  sources: readonly IpRange[];
  /** Authenticated proxy users that belong to the group. */
  users: ReadonlySet<string>;
}

export interface PolicySettings {
  default: Action;
  mode: Mode;
  /** 'FILE:LINE' of `default:` (or of `settings:` when default is implied); null with no settings block. */
  source: string | null;
  auth: AuthMode;
  /** Where every request goes unless its rule says `via`; null: directly. */
  upstream: ParentProxy | null;
  /** `settings.tls`: what a tunnel's first bytes must be unless its rule says (default any). */
  tls: TlsMode;
}

/** A loaded policy: every file of the folder, validated and compiled, all or nothing. */
export interface Policy {
  /**
   * Recorded as policy_version: 'git:' + 12 hex digits of the HEAD commit (+ '-dirty' when the
   * policy files differ from it) inside a git work tree, else the content hash (provenance.ts).
   */
  version: string;
  /** 'sha256:' + the first 12 hex digits of the hash of the file names and contents. */
  contentHash: string;
  /** File names in load order. */
  files: readonly string[];
  settings: PolicySettings;
  network: NetworkPolicy;
  rules: readonly CompiledRule[];
  clients: readonly CompiledClient[];
}

const DEFAULT_SETTINGS: PolicySettings = { default: 'deny', mode: 'enforce', source: null, auth: 'off', upstream: null, tls: 'any' };

function compileRule(file: string, rule: RuleSpec, settings: PolicySettings): CompiledRule {
  return {
    name: rule.name,
    action: rule.action,
    source: sourceOf(file, rule.line),
    mode: rule.mode,
    clients: rule.clients?.map((c) => c.value) ?? null,
    hosts: compileHostMatcher(rule.hosts),
    hostPatterns: rule.hostPatterns,
    ports: rule.ports,
    methods: rule.methods === null ? null : new Set(rule.methods),
    paths: rule.paths === null ? null : compilePathPatterns(rule.paths),
    pathPatterns: rule.paths,
    expires: rule.expires?.date ?? null,
    expiresAt: rule.expires?.endsAt ?? null,
    via: rule.via === undefined ? undefined : rule.via.parent,
    tls: rule.tls,
    inspects: rule.action === 'allow' && (rule.tls ?? settings.tls) === 'inspect',
  };
}

function compileSettings(files: readonly PolicyFileSpec[]): PolicySettings {
  for (const { file, settings } of files) {
    if (settings === null) continue;
    const source = sourceOf(file, settings.defaultLine ?? settings.line);
    return { default: settings.default, mode: settings.mode, source, auth: settings.auth, upstream: settings.upstream, tls: settings.tls };
  }
  return DEFAULT_SETTINGS;
}

function rangeEntries(file: string, ranges: readonly RangeSpec[]): RangeEntry[] {
  return ranges.map((r) => ({ cidr: r.range.cidr, source: sourceOf(file, r.line) }));
}

/** Files must already be valid, one by one and together (checkPolicySet). */
export function compilePolicy(files: readonly PolicyFileSpec[], provenance: PolicyProvenance): Policy {
  const settings = compileSettings(files);
  return {
    version: provenance.version,
    contentHash: provenance.contentHash,
    files: files.map((f) => f.file),
    settings,
    network: {
      allowRanges: files.flatMap((f) => rangeEntries(f.file, f.network.allowRanges)),
      denyRanges: files.flatMap((f) => rangeEntries(f.file, f.network.denyRanges)),
      parentRanges: files.flatMap((f) => rangeEntries(f.file, f.network.parentRanges)),
    },
    rules: files.flatMap((f) => f.rules.map((r) => compileRule(f.file, r, settings))),
    clients: files.flatMap((f) =>
      f.clients.map((c) => ({ name: c.name, source: sourceOf(f.file, c.line), sources: c.sources.map((s) => s.range), users: new Set(c.users) })),
    ),
  };
}
