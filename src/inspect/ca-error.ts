/**
 * Why the inspection CA (or the --inspect-trust bundle) cannot be used. Messages name the file and
 * the fix, and never hold key material: they are printed and logged as they are.
 */
export class InspectCaError extends Error {
  override readonly name = 'InspectCaError';
}
