import type { FastifyInstance } from 'fastify';

/** One writer's chain head, as `tollgate audit verify` prints it (its final head). */
export interface ChainHeadView {
  /** The writer: its store's id (the log folder's store-id), or `local` before it has one. */
  chain: string;
  id: number;
  hash: string;
  /** The replica's name (--node), where the heads come from the shared history. */
  node?: string;
}

export interface AuditHeadRoutesOptions {
  /** The heads of the chains this process writes; absent where it writes none (tollgate admin). */
  heads?: () => ChainHeadView[] | Promise<ChainHeadView[]>;
  /** What the 501 says without heads. */
  noHeadsReason?: string;
}

/**
 * GET /api/audit/head (SPEC §6 "Trust"): the current head of each audit chain, so an operator
 * can witness it elsewhere and later check the log against it (`audit verify --expect-head`).
 * Behind access control like every /api route.
 */
export function registerAuditHeadRoutes(app: FastifyInstance, opts: AuditHeadRoutesOptions): void {
  app.get('/api/audit/head', async (_request, reply) => {
    if (opts.heads === undefined) {
      return reply.code(501).send({ heads: [], error: opts.noHeadsReason ?? 'this process writes no audit log chain' });
    }
    return { heads: await opts.heads() };
  });
}
