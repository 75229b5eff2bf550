/**
 * PostgreSQL text cannot hold NUL, and hostile clients can send it (in a path, a user name).
 * The shipper stores it as U+FFFD, and a filter value is mapped the same way, so that a record
 * is still found by what the API showed for it.
 */
export function pgText(value: string): string {
  return value.includes('\u0000') ? value.replace(/\u0000/g, '\uFFFD') : value;
}
