/** Shared by the GET /api/policy/suggest tests (route, engines, UI). */

/** A request path a workload chose: markup if anything ever parsed it as such. */
export const XSS_PATH = '/"><script>alert(2)</script>';

/** Free text a person searched for (it finds XSS_PATH), echoed in the YAML header's source line. */
export const XSS_Q = '"><script>alert(2)';

/** The suggestion's header comment (when and from where it was made), which differs run to run. */
export function headerOf(yaml: string): string {
  const at = yaml.indexOf('\nversion:');
  return at < 0 ? yaml : yaml.slice(0, at);
}

/** Everything after the header: the rules and the closing comment. */
export function bodyOf(yaml: string): string {
  return yaml.slice(headerOf(yaml).length);
}
