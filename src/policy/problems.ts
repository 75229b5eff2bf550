/**
 * A problem found in a policy file, pinned to the line a human should edit. Every policy
 * message (check, load, reload log, UI) is printed as `FILE:LINE: message`, so whoever reads it
 * (a person, an editor, CI) can jump to the line to fix.
 */
export interface Problem {
  /** The file name inside the policies folder, e.g. '10-settings.yaml'. */
  file: string;
  /** 1-based; 0 when the problem is about the whole file or folder. */
  line: number;
  message: string;
}

export function formatProblem(p: Problem): string {
  return p.line > 0 ? `${p.file}:${p.line}: ${p.message}` : `${p.file}: ${p.message}`;
}

/** 'FILE:LINE', the form rule_source and every RangeEntry.source use. */
export function sourceOf(file: string, line: number): string {
  return `${file}:${line}`;
}
