/**
 * Read models over sessions: a participant's own sessions, and which doctors are free now.
 */
import type { Executor, Session } from '../../db/types.js';
import type { Actor } from '../access.js';
import { LIVE_STATUSES } from './state.js';

/**
 * The actor's sessions of one kind, newest first: the live ones, or the finished ones (ended,
 * expired, missed) as an offset page with the total. Participants see their own; nobody else's.
 */
export async function listOwnSessions(
  db: Executor,
  actor: Actor,
  input: { kind: Session['kind']; live: boolean; limit: number; offset: number },
): Promise<{ rows: Session[]; total: number }> {
  if (actor.role !== 'patient' && actor.role !== 'doctor') return { rows: [], total: 0 };
  const live = [...LIVE_STATUSES];
  let q = db
    .selectFrom('sessions')
    .where(actor.role === 'patient' ? 'patient_id' : 'doctor_id', '=', actor.id)
    .where('kind', '=', input.kind);
  q = input.live ? q.where('status', 'in', live) : q.where('status', 'not in', live);
  const [rows, count] = await Promise.all([
    q
      .selectAll()
      .orderBy(input.live ? 'created_at' : 'ended_at', 'desc')
      .orderBy('id', 'desc')
      .limit(input.limit)
      .offset(input.offset)
      .execute(),
    q.select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow(),
  ]);
  return { rows, total: Number(count.n) };
}

/**
 * Doctors and whether each is free for an instant session now: busy means in a live session, the
 * same rule `createInstantSession` (service.ts) refuses on.
 */
export async function doctorsAvailability(
  db: Executor,
): Promise<{ id: number; name: string; country: string | null; is_available_now: boolean }[]> {
  const rows = await db
    .selectFrom('users as u')
    .select((eb) => [
      'u.id',
      'u.name',
      'u.country',
      eb
        .not(
          eb.exists(
            eb
              .selectFrom('sessions as s')
              .select('s.id')
              .whereRef('s.doctor_id', '=', 'u.id')
              .where('s.status', 'in', [...LIVE_STATUSES]),
          ),
        )
        .as('is_available_now'),
    ])
    .where('u.role', '=', 'doctor')
    .orderBy('u.id')
    .execute();
  return rows.map((r) => ({ ...r, is_available_now: Boolean(r.is_available_now) }));
}
