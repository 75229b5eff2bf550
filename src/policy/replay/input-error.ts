/** Bad input to `policy replay` / `policy unused` (exit 2), with a message that says how to fix it. */
export class ReplayInputError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ReplayInputError';
  }
}
