/**
 * The original client contract: the consultation-domain API that the mobile app in the stores
 * (DocAvailable build 1.1.3) calls at `/api/…` (the choices: docs/decisions.md, "Original client contract"
 * sections). sessiongate's own API is `/api/v2/…`.
 *
 * This folder is a translation layer at the edge, like an API "version change" module: it maps the
 * app's requests (dates + times + time zones, string ids, `text_session_N`, `direct_session_*`,
 * body-less POSTs) onto the core's services and maps their answers back into the shapes the app
 * reads (numeric statuses, `{success, message, data}`). It re-implements no rule — session
 * creation, the guard, billing, authorization and the state machines are the core's — and it never
 * reaches into the database on its own. Deleting this folder (and its one registration in
 * `app.ts`) leaves the core compiling and passing its own tests.
 */
import type { FastifyInstance } from 'fastify';
import appointments from './appointments.js';
import accounts from './accounts.js';
import textSessions from './text-sessions.js';
import textBilling from './text-billing.js';
import chat from './chat.js';
import uploads from './uploads.js';
import calls from './calls.js';
import signaling from './signaling.js';
import outOfScope from './out-of-scope.js';

export default async function originalContract(app: FastifyInstance) {
  await app.register(appointments);
  await app.register(accounts);
  await app.register(textSessions);
  await app.register(textBilling);
  await app.register(chat);
  await app.register(uploads);
  await app.register(calls);
  await app.register(signaling);
  await app.register(outOfScope);
}
