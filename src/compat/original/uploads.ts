/** Uploads of chat images and voice notes (§5). */
import type { FastifyInstance } from 'fastify';

export default async function uploadsRoutes(_app: FastifyInstance) {}
