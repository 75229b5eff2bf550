import { domainToASCII, domainToUnicode } from 'node:url';

/**
 * Host patterns written in Unicode (SPEC §2, §6): converted to punycode label by label, because
 * a glob is not a domain name: `**.bücher.example` has to keep `**` and convert `bücher` alone.
 * Requests are compared in punycode (normalizeHostName, the WHATWG URL parser), so the pattern's
 * labels go through the same UTS #46 mapping (node:url) and an equivalent spelling, such as
 * `MÜNCHEN` or full-width letters, gives the same label.
 */
export type IdnPatternParse =
  | { ok: true; pattern: string; written: string | null }
  | { ok: false; message: string };

// UTS #46 and the WHATWG URL parser also split names at these full stops.
const LABEL_SEPARATOR = /[.\u3002\uff0e\uff61]/;
const ASCII = /^[\x00-\x7f]*$/;

/** Invisible and unassigned characters are named by code point, so a message can be acted on. */
export function visibleLabel(label: string): string {
  return label.replace(/[\p{C}\p{Z}]/gu, (char) => `\\u{${(char.codePointAt(0) ?? 0).toString(16)}}`);
}

type LabelParse = { ok: true; ascii: string; unicode: string } | { ok: false; message: string };

function convertLabel(pattern: string, label: string): LabelParse {
  if (ASCII.test(label)) return { ok: true, ascii: label, unicode: label };
  const shown = visibleLabel(label);
  pattern = visibleLabel(pattern);
  if (/[*?]/.test(label)) {
    // A glob over Unicode letters has no punycode equivalent; node:url would even cut at "?".
    return { ok: false, message: `host pattern "${pattern}": label "${shown}" mixes a wildcard with non-ASCII letters, which cannot be compared in punycode; make the wildcard a whole label ("*")` };
  }
  const ascii = domainToASCII(label);
  // node:url reads a lone numeric label (full-width digits) as an IPv4 address.
  if (ascii.includes('.')) {
    return { ok: false, message: `host pattern "${pattern}": label "${shown}" reads as a number or address once converted; write it in ASCII` };
  }
  if (ascii === '' || !ASCII.test(ascii)) {
    return { ok: false, message: `host pattern "${pattern}": label "${shown}" cannot be converted to punycode (IDNA refuses it: a character that is not allowed in names, or a mix of right-to-left and left-to-right letters)` };
  }
  return { ok: true, ascii, unicode: domainToUnicode(ascii) };
}

/**
 * `pattern` is lower-cased with its trailing dot dropped. `written` is its Unicode form (for
 * display and warnings), or null when that is the punycode pattern itself (an ASCII pattern).
 */
export function patternToPunycode(pattern: string): IdnPatternParse {
  if (ASCII.test(pattern)) return { ok: true, pattern, written: null };
  // Labels are taken one by one: a glob is not a domain name, and `*` must stay a whole label.
  const labels = pattern.split(LABEL_SEPARATOR);
  if (labels.length > 1 && labels.at(-1) === '') labels.pop();
  const ascii: string[] = [];
  const unicode: string[] = [];
  for (const label of labels) {
    const converted = convertLabel(pattern, label);
    if (!converted.ok) return converted;
    ascii.push(converted.ascii);
    unicode.push(converted.unicode);
  }
  const converted = ascii.join('.');
  const written = unicode.join('.');
  return { ok: true, pattern: converted, written: written === converted ? null : written };
}

/** How a pattern is shown: as written, with the punycode that is matched when they differ. */
export function displayPattern(pattern: string, written: string | null | undefined): string {
  return written == null || written === pattern ? pattern : `${written} (${pattern})`;
}

/** A pattern named in a message: `"münchen.example" (xn--mnchen-3ya.example)`. */
export function quotePattern(pattern: string, written: string | null | undefined): string {
  return written == null || written === pattern ? `"${pattern}"` : `"${written}" (${pattern})`;
}
