/**
 * Generated sections inside Markdown: the text between `<!-- generated: NAME -->` and the next
 * `<!-- end generated -->` belongs to the generator (src/docs/generate.ts); everything outside
 * them belongs to whoever writes the page. HTML comments render as nothing on GitHub.
 */

const OPEN_MARKER = /^<!-- generated: ([a-z0-9-]+) -->$/;
const CLOSE_MARKER = '<!-- end generated -->';

export interface MarkedSection {
  readonly name: string;
  /** 1-based line of the opening marker, for messages (also the 0-based index of the body's first line). */
  readonly line: number;
  /** 1-based line of the closing marker (also the 0-based index just past the body). */
  readonly closeLine: number;
  /** What is between the markers now, without the markers' own lines. */
  readonly body: string;
}

export class MarkerError extends Error {}

/** Every generated section of one file, in order; a marker left open or nested is an error. */
export function findSections(text: string, file: string): MarkedSection[] {
  const lines = text.split('\n');
  const sections: MarkedSection[] = [];
  let open: { name: string; line: number } | null = null;
  lines.forEach((raw, index) => {
    const line = raw.trim();
    const opening = OPEN_MARKER.exec(line);
    if (opening !== null) {
      if (open !== null) throw new MarkerError(`${file}:${index + 1}: "${opening[1]}" opens inside "${open.name}" (line ${open.line}), which is not closed`);
      open = { name: opening[1], line: index + 1 };
    } else if (line === CLOSE_MARKER) {
      if (open === null) throw new MarkerError(`${file}:${index + 1}: "${CLOSE_MARKER}" without an opening marker`);
      sections.push({ name: open.name, line: open.line, closeLine: index + 1, body: lines.slice(open.line, index).join('\n') });
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
 * `sections` are findSections' answer for this text, when the caller already has it.
 */
export function fillSections(
  text: string,
  file: string,
  render: (name: string) => string | undefined,
  sections: readonly MarkedSection[] = findSections(text, file),
): string {
  const lines = text.split('\n');
  const out: string[] = [];
  let next = 0;
  for (const section of sections) {
    const body = render(section.name);
    if (body === undefined) throw new MarkerError(`${file}:${section.line}: no generated section is named "${section.name}"`);
    // Up to and with the opening marker, the new body; the closing marker is where the next slice starts.
    out.push(...lines.slice(next, section.line), ...body.replace(/\n$/, '').split('\n'));
    next = section.closeLine - 1;
  }
  out.push(...lines.slice(next));
  return out.join('\n');
}
