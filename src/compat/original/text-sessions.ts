/** Text sessions (§2) and the text-appointment calls (§3). */
import type { FastifyInstance } from 'fastify';

export default async function textSessionsRoutes(_app: FastifyInstance) {}
