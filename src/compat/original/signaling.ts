/** The app's WebSocket protocol for chat and call signalling (§9). */
import type { FastifyInstance } from 'fastify';

export default async function signalingRoutes(_app: FastifyInstance) {}
