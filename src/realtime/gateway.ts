/** WebSocket gateway at /ws (filled in by the realtime module). */
import type { FastifyInstance } from 'fastify';

export default async function realtimeGateway(_app: FastifyInstance): Promise<void> {}
