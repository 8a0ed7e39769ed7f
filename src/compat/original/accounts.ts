/** The doctor wallet (§7), the patient's subscription and credits (§8), the dashboard summary (§1.7). */
import type { FastifyInstance } from 'fastify';

export default async function accountsRoutes(_app: FastifyInstance) {}
