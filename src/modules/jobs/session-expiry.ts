/**
 * Session expiry: text sessions past the doctor's response window or the join window,
 * calls ringing past the ring timeout or waiting past the join window. The database clock picks
 * the candidates (SQL on `now()`, the `sessions_live` partial index); each is then ticked through
 * the state machine under its row lock (`tickSession`, SKIP LOCKED: a session a request is
 * changing right now is left for the next run). Expiry also happens lazily on read, so a slow
 * worker never shows a stale status; this job makes sure it happens when nobody reads.
 */
import { sql } from 'kysely';
import type { AppContext } from '../../context.js';
import { tickSessionChange } from '../sessions/service.js';
import type { JobDefinition } from './scheduler.js';

export const SESSION_EXPIRY_JOB = 'sessions:expire';
const BATCH = 500;
const MAX_BATCHES_PER_RUN = 20;

/** Live sessions whose deadline has passed by the database clock, oldest first. */
export async function sessionsPastDeadline(ctx: AppContext, limit = BATCH): Promise<number[]> {
  const join = ctx.config.sessionJoinWindowMinutes;
  const ring = ctx.config.callRingTimeoutSeconds;
  const r = await sql<{ id: number }>`
    select id
      from sessions
     where status in ('waiting_for_doctor', 'waiting', 'ringing')
       and (   (status = 'waiting_for_doctor'
                and (doctor_response_deadline <= now()
                     or (patient_first_message_at is null and created_at <= now() - make_interval(mins => ${join}))))
            or (status = 'ringing' and ringing_since <= now() - make_interval(secs => ${ring}))
            or (status = 'waiting' and created_at <= now() - make_interval(mins => ${join})))
     order by id
     limit ${limit}`.execute(ctx.db);
  return r.rows.map((x) => x.id);
}

export async function expireSessions(ctx: AppContext, signal?: AbortSignal) {
  const byStatus: Record<string, number> = {};
  let selected = 0;
  let changed = 0;
  let locked = 0;
  for (let i = 0; i < MAX_BATCHES_PER_RUN && !signal?.aborted; i++) {
    const ids = await sessionsPastDeadline(ctx);
    selected += ids.length;
    let progress = 0;
    for (const id of ids) {
      const r = await tickSessionChange(ctx, id);
      if (!r) {
        locked += 1;
        continue;
      }
      const { before, after } = r;
      if (after.status !== before.status) {
        changed += 1;
        progress += 1;
        byStatus[after.status] = (byStatus[after.status] ?? 0) + 1;
      }
    }
    // Drained, or nothing moved (rows locked by requests, or the app clock a little behind the
    // database clock): the next run picks them up.
    if (ids.length < BATCH || progress === 0) break;
  }
  return { selected, changed, locked, byStatus };
}

export const sessionExpiryJob: JobDefinition = {
  name: SESSION_EXPIRY_JOB,
  intervalSeconds: () => 15,
  recordIdleRuns: false,
  async run(ctx, { signal }) {
    const r = await expireSessions(ctx, signal);
    return { selected: r.selected, skipped: r.locked, details: { changed: r.changed, to_status: r.byStatus } };
  },
};
