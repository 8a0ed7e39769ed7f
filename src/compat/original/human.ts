/**
 * The app in the stores never reads `error_code`; it shows `message` to patients and doctors
 * (so every 4xx answer is JSON with one). The core's messages for the guard's refusals are written for API
 * clients ("use the session endpoint"); on this door they are rewritten for people. The code,
 * status and ids stay the core's; the core's wording moves to `reason`.
 */
import type { FastifyError, FastifyInstance } from 'fastify';
import { DomainError, type ErrorCode } from '../../lib/errors.js';
import { problems } from '../../lib/schemas.js';

const HUMAN: Partial<Record<ErrorCode, string>> = {
  SESSION_CONTEXT_REQUIRED:
    'This consultation continues in its session chat. Please go back to your Messages and open the consultation from there.',
  SESSION_BILLING_REQUIRED:
    'Consultation time is billed automatically while the session runs, so nothing was charged here. You can end the consultation from the chat.',
  SESSION_NOT_READY:
    'This consultation has not started yet. The chat opens when the session begins; please try again at the appointment time.',
  SESSION_NOT_ACTIVE: 'This consultation has ended, so no more messages can be sent.',
};

/** The human wording of a core refusal, or the error unchanged. */
export function humanize(err: unknown): unknown {
  if (!(err instanceof DomainError)) return err;
  const message = HUMAN[err.code];
  if (!message) return err;
  return new DomainError(err.code, message, { ...err.details, reason: err.message });
}

/**
 * Installs the rewrite in an (encapsulated) plugin of this folder: the rewritten error goes on to
 * the app's one error handler, which renders every problem document.
 */
export function humanErrors(app: FastifyInstance): void {
  app.setErrorHandler((err: FastifyError) => {
    throw humanize(err);
  });
}

/**
 * The error responses of the session and chat doors of the original contract: the core's client
 * errors, any of which a translated call may meet. The app shows `message` and never reads the
 * code, so these routes document the set rather than a list per route.
 */
export const originalProblems = problems(
  'UNAUTHENTICATED',
  'FORBIDDEN',
  'NOT_FOUND',
  'CONFLICT',
  'INSUFFICIENT_CREDITS',
  'CONTENT_BLOCKED',
  'SESSION_CONTEXT_REQUIRED',
  'SESSION_NOT_READY',
  'SESSION_BILLING_REQUIRED',
  'SESSION_NOT_ACTIVE',
);
