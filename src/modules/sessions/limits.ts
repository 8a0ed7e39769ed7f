/**
 * Sessions end without a client: the IO around the pure limits of `state.ts`
 * (`onLimits`, `billableUntil`, `timeLimitNoticeDue`, `onPresence`).
 *
 * Sweep, claim, re-validate: `sessionsPastLimits` picks candidates by SQL on the injected clock;
 * each is locked `FOR UPDATE SKIP LOCKED` in its own transaction (a session a request or another
 * worker holds is left for the next run), its facts are read under the lock, the state machine
 * decides, and `writeChange` ends it — the appointment becomes completed/missed and billing
 * settles it in the same transaction. Two workers can never end one session twice: the second
 * either skips the lock or finds it no longer live.
 *
 * Call presence is recorded by the WebSocket gateway (and any other socket door) through
 * {@link recordCallPresence}.
 */
import { sql } from 'kysely';
import type { AppContext } from '../../context.js';
import type { Db, Executor, Session, Trx } from '../../db/types.js';
import { deliverPendingNotifications } from '../notifications/outbox.js';
import { contextOf, publishStatus, writeChange } from './service.js';
import { isLive, onLimits, onPresence, timeLimitAt, timeLimitNoticeDue, type LimitFacts, type Party, type SessionLimits } from './state.js';

export const limitsOf = (ctx: Pick<AppContext, 'config'>): SessionLimits => ({
  idleMinutes: ctx.config.textSessionIdleMinutes,
  disconnectGraceSeconds: ctx.config.callDisconnectGraceSeconds,
  overrunMinutes: ctx.config.sessionOverrunMinutes,
});

/** Outbox kind of the "your session ends in 5 minutes" notice. */
export const TIME_LIMIT_NOTICE_KIND = 'session.ending_soon';

/** The facts the limits read, for a session the caller has locked. */
export async function limitFacts(db: Executor, s: Session): Promise<LimitFacts> {
  const last = await db
    .selectFrom('messages')
    .select('created_at')
    .where('session_id', '=', s.id)
    .orderBy('id', 'desc')
    .limit(1)
    .executeTakeFirst();
  const appt =
    s.appointment_id === null
      ? undefined
      : await db.selectFrom('appointments').select('scheduled_at').where('id', '=', s.appointment_id).executeTakeFirst();
  return {
    source: s.source,
    created_at: s.created_at,
    scheduled_at: appt?.scheduled_at ?? null,
    allowed_minutes: s.allowed_minutes,
    last_message_at: last?.created_at ?? null,
    patient_away_since: s.patient_away_since,
    doctor_away_since: s.doctor_away_since,
  };
}

/**
 * Applies the limits to a locked session at `now`: ends it when one has been reached (and
 * settles it), else enqueues the time-limit notice when it is due. Billing calls this before it
 * charges, so the tick never bills time a limit has already cut off. Inside the caller's
 * transaction: it takes the configuration and the session hooks, never the database handle.
 */
export async function applyLimitsLocked(
  trx: Trx,
  ctx: Pick<AppContext, 'config' | 'sessionHooks'>,
  s: Session,
  now: Date,
): Promise<{ session: Session; ended: boolean; noticed: boolean; facts: LimitFacts }> {
  const facts = await limitFacts(trx, s);
  if (!isLive(s.status)) return { session: s, ended: false, noticed: false, facts };
  const limits = limitsOf(ctx);
  const t = onLimits(s, facts, now, limits);
  if (t.ok && Object.keys(t.change).length > 0) {
    return { session: await writeChange(trx, ctx.sessionHooks, s, t.change), ended: true, noticed: false, facts };
  }
  let noticed = false;
  if (timeLimitNoticeDue(facts, now, limits)) noticed = await enqueueTimeLimitNotice(trx, s, timeLimitAt(facts, limits)!);
  return { session: s, ended: false, noticed, facts };
}

/** The "ends in 5 minutes" notice to both participants, once per session (unique outbox key). */
async function enqueueTimeLimitNotice(trx: Trx, s: Session, endsAt: Date): Promise<boolean> {
  const payload = JSON.stringify({
    session_id: s.id,
    session_context: contextOf(s),
    appointment_id: s.appointment_id,
    ends_at: endsAt.toISOString(),
  });
  const r = await sql`
    insert into notification_outbox (dedupe_key, recipient_id, also_notify, kind, payload)
    values ('session_ending:' || ${s.id}::bigint, ${s.patient_id}, array[${s.doctor_id}::bigint], ${TIME_LIMIT_NOTICE_KIND}, ${payload}::jsonb)
        on conflict (dedupe_key) do nothing`.execute(trx);
  return Number(r.numAffectedRows ?? 0) > 0;
}

/**
 * Running sessions a limit may have reached by `now` (or whose time-limit notice is due), oldest
 * first. A candidate filter only: the state machine decides under the row lock.
 */
export async function sessionsPastLimits(ctx: AppContext, now: Date, afterId: number, limit: number): Promise<number[]> {
  const l = limitsOf(ctx);
  const r = await sql<{ id: number }>`
    select s.id
      from sessions s
      left join appointments a on a.id = s.appointment_id
     where s.status in ('active', 'connected')
       and s.id > ${afterId}
       and (   (s.kind = 'text' and s.status = 'active'
                and coalesce((select m.created_at from messages m where m.session_id = s.id order by m.id desc limit 1), s.activated_at)
                    <= ${now}::timestamptz - make_interval(mins => ${l.idleMinutes}))
            or (s.kind = 'call' and s.status = 'connected'
                and greatest(s.patient_away_since, s.doctor_away_since) <= ${now}::timestamptz - make_interval(secs => ${l.disconnectGraceSeconds})
                and s.patient_away_since is not null and s.doctor_away_since is not null)
            or (s.allowed_minutes is not null
                and case s.source when 'APPOINTMENT' then a.scheduled_at + make_interval(mins => s.allowed_minutes + ${l.overrunMinutes})
                                  else s.created_at + make_interval(mins => s.allowed_minutes) end
                    <= ${now}::timestamptz + make_interval(secs => 300)))
     order by s.id
     limit ${limit}`.execute(ctx.db);
  return r.rows.map((x) => Number(x.id));
}

export interface EndSweepResult {
  selected: number;
  ended: number;
  noticed: number;
  locked: number;
  failed: number;
  by_reason: Record<string, number>;
}

/** One sweep: ends every running session past a limit, sends due notices. One failure never stops it. */
export async function endSessionsPastLimits(
  ctx: AppContext,
  opts: { batchSize?: number; signal?: AbortSignal } = {},
): Promise<EndSweepResult> {
  const batch = opts.batchSize ?? 500;
  const now = ctx.now();
  const r: EndSweepResult = { selected: 0, ended: 0, noticed: 0, locked: 0, failed: 0, by_reason: {} };
  let afterId = 0;
  for (;;) {
    const ids = await sessionsPastLimits(ctx, now, afterId, batch);
    r.selected += ids.length;
    for (const id of ids) {
      if (opts.signal?.aborted) return r;
      try {
        const out = await ctx.db.transaction().execute(async (trx) => {
          const before = await trx.selectFrom('sessions').selectAll().where('id', '=', id).forUpdate().skipLocked().executeTakeFirst();
          if (!before) return null;
          return { before, ...(await applyLimitsLocked(trx, ctx, before, now)) };
        });
        if (!out) {
          r.locked++;
          continue;
        }
        if (out.noticed) r.noticed++;
        if (out.ended) {
          r.ended++;
          const reason = out.session.end_reason ?? 'unknown';
          r.by_reason[reason] = (r.by_reason[reason] ?? 0) + 1;
          ctx.metrics.sessions.endedByLimit.inc({ reason });
          ctx.log.info(
            {
              event: 'session_ended_by_limit',
              session_id: id,
              end_reason: out.session.end_reason,
              ended_at: out.session.ended_at,
              units_billed: out.session.units_billed,
            },
            'session ended without a client',
          );
          publishStatus(ctx, out.before, out.session);
        }
      } catch (err) {
        r.failed++;
        ctx.log.error({ err, session_id: id }, 'ending a session past its limit failed');
      }
    }
    if (ids.length < batch) break;
    afterId = ids[ids.length - 1]!;
  }
  if (r.ended > 0 || r.noticed > 0) {
    deliverPendingNotifications(ctx).catch((err: unknown) => ctx.log.warn({ err }, 'notification delivery failed; the worker will retry'));
  }
  return r;
}

/**
 * Records that `userId` is (or stopped being) connected to call session `sessionId` — the
 * WebSocket gateway calls it on subscribe, close and missed heartbeats; any other socket door
 * calls the same. A call whose participants are both away for CALL_DISCONNECT_GRACE_SECONDS ends
 * `disconnected`, billed up to `at` of the later departure; coming back within the grace
 * continues the same call. Not a participant, not a call, not live: nothing changes.
 */
export async function recordCallPresence(db: Db, sessionId: number, userId: number, present: boolean, at: Date): Promise<boolean> {
  return db.transaction().execute(async (trx) => {
    const s = await trx
      .selectFrom('sessions')
      .select(['id', 'kind', 'status', 'patient_id', 'doctor_id', 'patient_away_since', 'doctor_away_since'])
      .where('id', '=', sessionId)
      .where('kind', '=', 'call')
      .where('status', 'in', ['waiting', 'ringing', 'connected'])
      .forUpdate()
      .executeTakeFirst();
    if (!s) return false;
    const who: Party | null = s.patient_id === userId ? 'patient' : s.doctor_id === userId ? 'doctor' : null;
    if (who === null) return false;
    const t = onPresence(s, who, present, at);
    if (!t.ok || Object.keys(t.change).length === 0) return false;
    await trx.updateTable('sessions').set(t.change).where('id', '=', s.id).execute();
    return true;
  });
}
