/** billing routes (filled in by the billing module). */
import type { FastifyInstance } from 'fastify';

export default async function billingRoutes(_app: FastifyInstance): Promise<void> {}
