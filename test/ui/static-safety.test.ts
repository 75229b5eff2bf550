import fs from 'node:fs';
import path from 'node:path';

/**
 * The admin UI renders attacker-controlled text (hosts, paths, reasons, user agents). It must
 * build the page with text nodes and allow-listed attributes only, and it runs under
 * `default-src 'self'`, so nothing inline may exist. These checks keep both true as it changes.
 */
const WEB_ADMIN = path.resolve(__dirname, '..', '..', 'web-admin');

function filesUnder(dir: string, ext: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return filesUnder(full, ext);
    return entry.name.endsWith(ext) ? [full] : [];
  });
}

const scripts = filesUnder(WEB_ADMIN, '.js');
const pages = filesUnder(WEB_ADMIN, '.html');

const UNSAFE_SINKS: Array<[string, RegExp]> = [
  ['innerHTML', /\binnerHTML\b/],
  ['outerHTML', /\bouterHTML\b/],
  ['insertAdjacentHTML', /\binsertAdjacentHTML\b/],
  ['document.write', /\bdocument\s*\.\s*write(ln)?\b/],
  ['eval', /\beval\s*\(/],
  ['new Function', /\bnew\s+Function\b/],
  ['Function constructor call', /\bFunction\s*\(/],
  ['string timer', /\bset(Timeout|Interval)\s*\(\s*['"`]/],
  ['createContextualFragment', /\bcreateContextualFragment\b/],
  ['DOMParser', /\bDOMParser\b/],
  ['srcdoc', /\bsrcdoc\b/],
  ['javascript: URL', /javascript:/i],
];

function relative(file: string): string {
  return path.relative(WEB_ADMIN, file);
}

describe('web-admin static safety', () => {
  it('has the UI scripts and pages to check', () => {
    expect(scripts.map(relative)).toEqual(expect.arrayContaining(['js/main.js', 'js/dom.js', 'login.js']));
    expect(pages.map(relative).sort()).toEqual(['index.html', 'login.html']);
  });

  it.each(UNSAFE_SINKS)('no script uses %s', (_name, pattern) => {
    const offenders = scripts.filter((file) => pattern.test(fs.readFileSync(file, 'utf8'))).map(relative);
    expect(offenders).toEqual([]);
  });

  it('sets attributes only through the allow-listing helper', () => {
    const offenders = scripts
      .filter((file) => relative(file) !== path.join('js', 'dom.js'))
      .filter((file) => /\.setAttribute(NS)?\s*\(\s*(?!['"](aria-pressed)['"])/.test(fs.readFileSync(file, 'utf8')))
      .map(relative);
    expect(offenders).toEqual([]);
  });

  it.each(pages.map((file) => [relative(file), file]))('%s has no inline script, handler or style', (_name, file) => {
    const html = fs.readFileSync(file, 'utf8');
    for (const tag of html.match(/<script\b[^>]*>/gi) ?? []) expect(tag).toMatch(/\bsrc="\/[^"]+\.js"/);
    expect(html).not.toMatch(/<script\b[^>]*>[^<\s]/i);
    expect(html).not.toMatch(/\son[a-z]+\s*=/i);
    expect(html).not.toMatch(/<style\b/i);
    expect(html).not.toMatch(/\sstyle\s*=/i);
    expect(html).not.toMatch(/(src|href)="(https?:)?\/\//i);
  });

  it('loads nothing from another origin', () => {
    for (const file of [...scripts, ...filesUnder(WEB_ADMIN, '.css')]) {
      const text = fs.readFileSync(file, 'utf8');
      expect({ file: relative(file), remote: /(import|url)\s*\(?\s*['"]?(https?:)?\/\//.test(text) }).toEqual({ file: relative(file), remote: false });
    }
  });
});
