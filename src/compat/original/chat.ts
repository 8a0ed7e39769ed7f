/** Chat over REST (§4): messages, info, mark-read, local-storage. */
import type { FastifyInstance } from 'fastify';

export default async function chatRoutes(_app: FastifyInstance) {}
