/** ops routes (filled in by the ops module). */
import type { FastifyInstance } from 'fastify';

export default async function opsRoutes(_app: FastifyInstance): Promise<void> {}
