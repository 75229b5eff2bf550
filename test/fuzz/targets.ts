import fc from 'fast-check';

/**
 * Seed corpora of request-targets and the mutations the fuzz suites build from them. `{O}` is
 * the test origin's port and `{P}` the proxy's own port; the parser suite fills in fixed ports.
 */
export const CONNECT_SEEDS: readonly string[] = [
  'origin.test:{O}',
  'www.origin.test:{O}',
  '127.0.0.1:{O}',
  '127.0.0.1:{P}',
  'paste.test:443',
  'unknown.test:443',
  'private.test:443',
  'gone.test:443',
  'example.com:443',
  '[::1]:443',
  '[2001:db8::1]:8443',
  '[::ffff:127.0.0.1]:{O}',
  '10.0.0.1:65535',
  'EXAMPLE.COM.:443',
  'xn--bcher-kva.example:443',
  'bücher.example:443',
  'origin。test:{O}',
  '0x7f.1:{O}',
  '2130706433:{O}',
  'under_score.example:1',
];

export const URI_SEEDS: readonly string[] = [
  'http://origin.test:{O}/',
  'http://origin.test:{O}/a/b?q=1#frag',
  'http://www.origin.test:{O}/x',
  'http://127.0.0.1:{O}/',
  'http://127.0.0.1:{P}/',
  'http://user:pw@origin.test:{O}/ui',
  'http://origin.test@paste.test/',
  'http://paste.test/upload',
  'http://private.test/',
  'http://gone.test/',
  'http://[::1]:80/',
  'HTTP://ORIGIN.TEST.:{O}/%61dmin',
  'http://orig%69n.test:{O}/pct',
  'http://origin%E3%80%82test:{O}/ideo',
  'http://0x7f.1:{O}/hex',
  'http://origin.test:{O}/a/../../b',
  'http://bücher.example/',
  'https://origin.test/',
  'http://origin.test:{O}\\@paste.test/',
  '/origin-form',
  '*',
];

/** Characters that mean something to a URL or an HTTP parser, plus Unicode look-alikes. */
const INTERESTING = [
  '@', ':', '/', '[', ']', '%', '.', '\\', '#', '?', '\0', '\r', '\n', ' ', '\t', '\x7f',
  'a', 'Z', '0', '9', '-', '_', '~', '%2e', '%00', '%41', '%5c', '%40', '%3a', '%2F', '%25',
  '\u3002', '\uff0e', '\uff45', '\u00df', '\u0130', '\u00ad', '\u200b', '\u212a', 'xn--', '::', '..', '65536', '0',
];

type Mutation = (text: string) => string;

const position = (text: string, at: number): number => (text.length === 0 ? 0 : at % (text.length + 1));

/** One edit: insert, delete, replace or duplicate a slice (for repeated parts: `a@b@c`, `:1:2`). */
const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.tuple(fc.nat(), fc.constantFrom(...INTERESTING)).map(([at, piece]): Mutation => (text) => {
    const i = position(text, at);
    return text.slice(0, i) + piece + text.slice(i);
  }),
  fc.nat().map((at): Mutation => (text) => {
    const i = position(text, at);
    return text.slice(0, i) + text.slice(i + 1);
  }),
  fc.tuple(fc.nat(), fc.constantFrom(...INTERESTING)).map(([at, piece]): Mutation => (text) => {
    const i = position(text, at);
    return text.slice(0, i) + piece + text.slice(i + 1);
  }),
  fc.tuple(fc.nat(), fc.nat(), fc.nat({ max: 12 })).map(([from, to, length]): Mutation => (text) => {
    const start = position(text, from);
    return text.slice(0, position(text, to)) + text.slice(start, start + length) + text.slice(position(text, to));
  }),
);

/** A seed with 0-4 mutations applied, so about a fifth of the values are the valid seed itself. */
export function mutated(seeds: readonly string[]): fc.Arbitrary<string> {
  return fc
    .tuple(fc.constantFrom(...seeds), fc.array(mutation, { maxLength: 4 }))
    .map(([seed, edits]) => edits.reduce((text, edit) => edit(text), seed));
}

/** Mostly mutated seeds, sometimes entirely random text (every code unit, lone surrogates too). */
export function hostileTarget(seeds: readonly string[], prefix = ''): fc.Arbitrary<string> {
  return fc.oneof(
    { weight: 8, arbitrary: mutated(seeds) },
    { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 40 }).map((s) => prefix + s) },
    { weight: 1, arbitrary: fc.string({ unit: fc.constantFrom(...INTERESTING), maxLength: 12 }).map((s) => prefix + s) },
  );
}

export function fillPorts(text: string, originPort: number, proxyPort: number): string {
  return text.replaceAll('{O}', String(originPort)).replaceAll('{P}', String(proxyPort));
}
