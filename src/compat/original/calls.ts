/** Call sessions (§6). */
import type { FastifyInstance } from 'fastify';

export default async function callsRoutes(_app: FastifyInstance) {}
