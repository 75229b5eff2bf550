import type { FastifyInstance } from 'fastify';
import type { ProxyMetrics } from '../../metrics';

/** GET /metrics in the Prometheus text format; 503 when the app was built without metrics. */
export function registerMetricsRoute(app: FastifyInstance, metrics: ProxyMetrics | undefined): void {
  app.get('/metrics', async (_request, reply) => {
    if (metrics === undefined) return reply.code(503).send({ error: 'metrics are not enabled in this admin app' });
    const text = await metrics.render();
    return reply.type(metrics.registry.contentType).header('cache-control', 'no-store').send(text);
  });
}
