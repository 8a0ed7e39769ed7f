/** Appointments: list, book, details, the doctor's status changes, cancel, start-session (reference §1). */
import type { FastifyInstance } from 'fastify';

export default async function appointmentsRoutes(_app: FastifyInstance) {}
