/** chat routes (filled in by the chat module). */
import type { FastifyInstance } from 'fastify';

export default async function chatRoutes(_app: FastifyInstance): Promise<void> {}
