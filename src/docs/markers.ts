/**
 * Generated sections inside Markdown: the text between `<!-- generated: NAME -->` and the next
 * `<!-- end generated -->` belongs to the generator (src/docs/generate.ts); everything outside
 * them belongs to whoever writes the page. HTML comments render as nothing on GitHub.
 */

export const OPEN_MARKER = /^<!-- generated: ([a-z0-9-]+) -->$/;
export const CLOSE_MARKER = '<!-- end generated -->';

export interface MarkedSection {
  readonly name: string;
  /** 1-based line of the opening marker, for messages. */
  readonly line: number;
  /** What is between the markers now, without the markers' own lines. */
  readonly body: string;
}

export class MarkerError extends Error {}

/** Every generated section of one file, in order; a marker left open or nested is an error. */
export function findSections(text: string, file: string): MarkedSection[] {
  const lines = text.split('\n');
  const sections: MarkedSection[] = [];
  let open: { name: string; line: number; from: number } | null = null;
  lines.forEach((raw, index) => {
    const line = raw.trim();
    const opening = OPEN_MARKER.exec(line);
    if (opening !== null) {
      if (open !== null) throw new MarkerError(`${file}:${index + 1}: "${opening[1]}" opens inside "${open.name}" (line ${open.line}), which is not closed`);
      open = { name: opening[1], line: index + 1, from: index + 1 };
    } else if (line === CLOSE_MARKER) {
      if (open === null) throw new MarkerError(`${file}:${index + 1}: "${CLOSE_MARKER}" without an opening marker`);
      sections.push({ name: open.name, line: open.line, body: lines.slice(open.from, index).join('\n') });
      open = null;
    }
  });
  if (open !== null) {
    const { name, line } = open;
    throw new MarkerError(`${file}:${line}: "${name}" is never closed with "${CLOSE_MARKER}"`);
  }
  return sections;
}

/**
 * The file with each section's body replaced by `render(name)`. A name the generator does not
 * know is an error rather than a section left as it was: a typo would otherwise never be filled.
 */
export function fillSections(text: string, file: string, render: (name: string) => string | undefined): string {
  findSections(text, file);
  const lines = text.split('\n');
  const out: string[] = [];
  let skipping = false;
  lines.forEach((raw, index) => {
    const line = raw.trim();
    const opening = OPEN_MARKER.exec(line);
    if (opening !== null) {
      const body = render(opening[1]);
      if (body === undefined) throw new MarkerError(`${file}:${index + 1}: no generated section is named "${opening[1]}"`);
      out.push(raw, ...body.replace(/\n$/, '').split('\n'));
      skipping = true;
      return;
    }
    if (line === CLOSE_MARKER) skipping = false;
    if (!skipping) out.push(raw);
  });
  return out.join('\n');
}
