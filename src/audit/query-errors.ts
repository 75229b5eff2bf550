/** Bad input to a query (a malformed cursor, a limit out of range): the route answers 400. */
export class QueryInputError extends Error {
  constructor(
    readonly param: string,
    message: string,
  ) {
    super(message);
    this.name = 'QueryInputError';
  }
}
