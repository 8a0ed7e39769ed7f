/** Routes outside the consultation domain (§11): a clear 404 problem document. */
import type { FastifyInstance } from 'fastify';

export default async function outOfScopeRoutes(_app: FastifyInstance) {}
