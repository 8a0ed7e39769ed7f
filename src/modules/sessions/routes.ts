/** sessions routes (filled in by the sessions module). */
import type { FastifyInstance } from 'fastify';

export default async function sessionsRoutes(_app: FastifyInstance): Promise<void> {}
