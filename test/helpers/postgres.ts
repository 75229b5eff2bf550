import { postgresTestsOff } from './postgres-server';

export * from './postgres-server';

/** `describe` for suites that need PostgreSQL: skipped (loudly) only with TOLLGATE_TEST_PG=off. */
export const describePg: jest.Describe = postgresTestsOff() ? describe.skip : describe;
