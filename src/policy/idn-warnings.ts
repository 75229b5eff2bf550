/**
 * Warnings for host patterns written in Unicode that a reader may take for another name
 * (UTS #39 §5): a label mixing scripts (`pаypal` with a Cyrillic "а"), or one whose letters all
 * look like Latin ones. Legal, so `policy check` warns and the load goes on; an author who
 * meant the look-alike now sees which name the rule really allows.
 */

/** Scripts a label's letters are sorted into; a letter of any other script counts as "another script". */
const SCRIPTS = [
  'Latin', 'Cyrillic', 'Greek', 'Armenian', 'Georgian', 'Hebrew', 'Arabic', 'Syriac', 'Thaana',
  'Devanagari', 'Bengali', 'Gurmukhi', 'Gujarati', 'Oriya', 'Tamil', 'Telugu', 'Kannada',
  'Malayalam', 'Sinhala', 'Thai', 'Lao', 'Tibetan', 'Myanmar', 'Khmer', 'Mongolian', 'Ethiopic',
  'Cherokee', 'Canadian_Aboriginal', 'Han', 'Hiragana', 'Katakana', 'Bopomofo', 'Hangul',
] as const;

const SCRIPT_TESTS = SCRIPTS.map((name) => ({ name, test: new RegExp(`^\\p{Script=${name}}$`, 'u') }));
/** Digits, "-", "_" and combining marks belong to no script of their own. */
const SCRIPTLESS = /^[\p{Script=Common}\p{Script=Inherited}]$/u;

/**
 * UTS #39 "Highly Restrictive": these script sets are how Japanese, Chinese and Korean names are
 * normally written, so mixing within one of them is not suspicious.
 */
const USUAL_MIXES: ReadonlyArray<ReadonlySet<string>> = [
  new Set(['Latin', 'Han', 'Hiragana', 'Katakana']),
  new Set(['Latin', 'Han', 'Bopomofo']),
  new Set(['Latin', 'Han', 'Hangul']),
];

/**
 * Letters of other scripts (and Latin letters outside ASCII) that look like an ASCII letter in
 * common fonts, after lower-casing: a small subset of Unicode's confusables.txt.
 */
const LOOKS_LIKE: Readonly<Record<string, string>> = {
  // Cyrillic
  'а': 'a', 'с': 'c', 'ԁ': 'd', 'е': 'e', 'һ': 'h', 'і': 'i', 'ј': 'j', 'ӏ': 'l', 'о': 'o', 'р': 'p',
  'ԛ': 'q', 'ѕ': 's', 'ԝ': 'w', 'х': 'x', 'у': 'y',
  // Greek
  'α': 'a', 'ι': 'i', 'κ': 'k', 'ν': 'v', 'ο': 'o', 'ρ': 'p', 'υ': 'u', 'χ': 'x', 'ϲ': 'c', 'ϳ': 'j',
  // Armenian
  'հ': 'h', 'ո': 'n', 'ս': 'u', 'օ': 'o', 'ց': 'g',
  // Latin letters that are not ASCII
  'ı': 'i', 'ɑ': 'a', 'ɡ': 'g', 'ɩ': 'i', 'ʏ': 'y',
};

function scriptOf(char: string): string | null {
  if (SCRIPTLESS.test(char)) return null;
  return SCRIPT_TESTS.find((s) => s.test.test(char))?.name ?? 'another script';
}

/** The scripts of a label's letters, when they are an unusual mix; else null. */
export function mixedScripts(label: string): string[] | null {
  const scripts = new Set<string>();
  for (const char of label) {
    const script = scriptOf(char);
    if (script !== null) scripts.add(script);
  }
  if (scripts.size < 2) return null;
  if (USUAL_MIXES.some((mix) => [...scripts].every((s) => mix.has(s)))) return null;
  return [...scripts];
}

/** The ASCII label this one looks like, or null when some letter has no look-alike (or none is needed). */
export function asciiLookAlike(label: string): string | null {
  let ascii = '';
  let replaced = false;
  for (const char of label) {
    const latin = LOOKS_LIKE[char];
    if (latin !== undefined) {
      ascii += latin;
      replaced = true;
    } else if (/^[a-z0-9_-]$/.test(char)) {
      ascii += char;
    } else {
      return null;
    }
  }
  return replaced ? ascii : null;
}

function joinScripts(scripts: readonly string[]): string {
  return scripts.length <= 2 ? scripts.join(' and ') : `${scripts.slice(0, -1).join(', ')} and ${scripts.at(-1) ?? ''}`;
}

/** Warning texts for one pattern in its Unicode form (`written`); `shown` names it in them. */
export function idnWarnings(written: string, shown: string): string[] {
  const labels = written.split('.');
  const warnings: string[] = [];
  for (const label of labels) {
    const scripts = mixedScripts(label);
    if (scripts !== null) warnings.push(`host pattern ${shown}: label "${label}" mixes ${joinScripts(scripts)} letters`);
  }
  const lookAlike = labels.map((label) => asciiLookAlike(label));
  if (lookAlike.every((l) => l === null)) return warnings;
  const name = labels.map((label, i) => lookAlike[i] ?? label).join('.');
  if (/^[\x00-\x7f]*$/.test(name)) {
    warnings.push(`host pattern ${shown} looks like ${name} but is another name and does not match it`);
    return warnings;
  }
  labels.forEach((label, i) => {
    const latin = lookAlike[i];
    if (latin != null) warnings.push(`host pattern ${shown}: label "${label}" looks like "${latin}" but is another label`);
  });
  return warnings;
}
