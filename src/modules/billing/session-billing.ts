/**
 * Billing of running sessions: every completed 10-minute unit is charged within a tick of its
 * end (high-water mark `units_billed`), and a session whose patient can no longer pay the unit
 * in progress is ended by the server at the billed boundary — no client polling involved.
 *
 * Sweep, claim, re-validate: the sweep selects candidates by SQL on the database clock; each is
 * then locked `FOR UPDATE SKIP LOCKED` in its own transaction (a session being ended, or billed
 * by another worker, is skipped — whoever holds the lock bills it) and re-checked under the lock.
 */
import { sql } from 'kysely';
import type { AppContext } from '../../context.js';
import type { Session } from '../../db/types.js';
import { deliverPendingNotifications } from '../notifications/outbox.js';
import { publishStatus, writeChange } from '../sessions/service.js';
import { applyLimitsLocked, limitsOf } from '../sessions/limits.js';
import { billableUntil, isLive } from '../sessions/state.js';
import { usableCredits } from '../users/credits.js';
import { CREDITS_EXHAUSTED, billableStart } from './hooks.js';
import { chargeUnits } from './ledger.js';
import { enqueueNoCreditNotice } from './notices.js';
import { UNIT_SECONDS, cappedUnits, completedUnits, unitBoundary, unitsAtEnd } from './pricing.js';

/** Whether the session's billable clock is running: text active, call connected. */
export function billingRunning(s: Pick<Session, 'kind' | 'status' | 'activated_at' | 'connected_at'>): boolean {
  return (
    (s.kind === 'text' && s.status === 'active' && s.activated_at !== null) ||
    (s.kind === 'call' && s.status === 'connected' && s.connected_at !== null)
  );
}

export type BillOutcome =
  | { result: 'skipped' } // locked by another transaction (or gone)
  | { result: 'idle'; session: Session }
  | { result: 'charged'; session: Session; charged: number }
  | { result: 'ended_no_credit'; before: Session; session: Session; charged: number }
  | { result: 'ended_by_limit'; before: Session; session: Session; charged: number };

/**
 * Brings one session's billing up to date: a running session is charged its completed units
 * (and ended at the billed boundary when the patient cannot pay the unit in progress); an ended
 * session has nothing left to do (it was settled in the transaction that ended it). `skipLocked`
 * is for the sweep; a request that must see the result (the delegated legacy endpoints) waits
 * for the lock instead.
 */
export async function billSession(ctx: AppContext, sessionId: number, opts: { skipLocked: boolean }): Promise<BillOutcome> {
  const outcome = await ctx.db.transaction().execute(async (trx): Promise<BillOutcome> => {
    let q = trx
      .selectFrom('sessions')
      .selectAll()
      .select(sql<Date>`now()`.as('db_now'))
      .where('id', '=', sessionId)
      .forUpdate();
    if (opts.skipLocked) q = q.skipLocked();
    const row = await q.executeTakeFirst();
    if (!row) return { result: 'skipped' };
    const { db_now, ...locked } = row;
    const s: Session = locked;
    if (!isLive(s.status)) return { result: 'idle', session: s };
    // A limit reached (idle chat, both gone from the call, time limit) ends the session first:
    // the tick never charges time the limit has cut off.
    const limited = await applyLimitsLocked(trx, ctx, s, ctx.now());
    if (limited.ended) {
      return { result: 'ended_by_limit', before: s, session: limited.session, charged: limited.session.units_billed - s.units_billed };
    }
    const start = billableStart(s);
    if (!billingRunning(s) || start === null) return { result: 'idle', session: s };

    // Completed units, but never more than the session would cost if it ended where it may yet
    // end without a client (a quiet chat at its last message, a deserted call when the last one
    // left), nor more than its allowed time covers.
    const horizon = billableUntil(s, limited.facts, new Date(db_now), limitsOf(ctx));
    const due = cappedUnits(
      Math.min(completedUnits(start, new Date(db_now)), unitsAtEnd({ kind: s.kind, startedAt: start, endedAt: horizon })),
      s.allowed_minutes,
    );
    const charged = await chargeUnits(trx, ctx, s, due, 'periodic');
    const cur = charged.session;
    const outOfCredit = charged.exhausted || (await usableCredits(trx, cur.patient_id, cur.modality)) < 1;
    if (!outOfCredit)
      return charged.charged > 0 ? { result: 'charged', session: cur, charged: charged.charged } : { result: 'idle', session: cur };

    // The unit in progress cannot be paid: the session ends where the paid time ends.
    const ended = await writeChange(trx, ctx.sessionHooks, cur, {
      status: 'ended',
      ended_at: unitBoundary(start, cur.units_billed),
      end_reason: CREDITS_EXHAUSTED,
      patient_in_call: false,
      doctor_in_call: false,
      ringing_since: null,
    });
    await enqueueNoCreditNotice(trx, ended);
    const fresh = await trx.selectFrom('sessions').selectAll().where('id', '=', s.id).executeTakeFirstOrThrow();
    return { result: 'ended_no_credit', before: cur, session: fresh, charged: charged.charged };
  });

  if (outcome.result === 'ended_no_credit') {
    ctx.metrics.billing.sessionsEndedNoCredit.inc();
    ctx.log.info(
      {
        event: 'session_ended_no_credit',
        session_id: outcome.session.id,
        units_billed: outcome.session.units_billed,
        ended_at: outcome.session.ended_at,
      },
      'session ended: the patient has no credit left',
    );
    publishStatus(ctx, outcome.before, outcome.session);
    deliverPendingNotifications(ctx).catch((err: unknown) => ctx.log.warn({ err }, 'notification delivery failed; the worker will retry'));
  }
  if (outcome.result === 'ended_by_limit') {
    ctx.metrics.sessions.endedByLimit.inc({ reason: outcome.session.end_reason ?? 'unknown' });
    publishStatus(ctx, outcome.before, outcome.session);
  }
  return outcome;
}

/**
 * Running sessions with something to do, by the database clock: a completed unit not yet
 * charged, or no usable credit left for the unit in progress. Keyset-paged by id.
 */
export async function billingCandidates(ctx: AppContext, afterId: number, limit: number): Promise<number[]> {
  const rows = await sql<{ id: number }>`
    select s.id
      from sessions s
     where s.status in ('active', 'connected')
       and s.id > ${afterId}
       and ((s.kind = 'text' and s.status = 'active' and s.activated_at is not null)
         or (s.kind = 'call' and s.status = 'connected' and s.connected_at is not null))
       and (floor(extract(epoch from now() - case s.kind when 'text' then s.activated_at else s.connected_at end) / ${UNIT_SECONDS}) > s.units_billed
         or not exists (
              select 1 from subscriptions sub
               where sub.patient_id = s.patient_id and sub.starts_at <= now() and sub.expires_at > now()
                 and case s.modality when 'text' then sub.text_remaining
                                     when 'voice' then sub.voice_remaining
                                     else sub.video_remaining end > 0))
     order by s.id
     limit ${limit}`.execute(ctx.db);
  return rows.rows.map((r) => Number(r.id));
}

export interface TickResult {
  selected: number;
  charged_sessions: number;
  units_charged: number;
  ended_no_credit: number;
  /** Sessions a limit (idle, disconnected, time limit) ended before the tick charged them. */
  ended_by_limit: number;
  skipped: number;
  failed: number;
}

/** One sweep over every running session that is due; one failure never stops the sweep. */
export async function runBillingTick(ctx: AppContext, opts: { batchSize?: number; signal?: AbortSignal } = {}): Promise<TickResult> {
  const batchSize = opts.batchSize ?? 200;
  const r: TickResult = {
    selected: 0,
    charged_sessions: 0,
    units_charged: 0,
    ended_no_credit: 0,
    ended_by_limit: 0,
    skipped: 0,
    failed: 0,
  };
  let afterId = 0;
  for (;;) {
    const ids = await billingCandidates(ctx, afterId, batchSize);
    r.selected += ids.length;
    for (const id of ids) {
      if (opts.signal?.aborted) return r;
      try {
        const o = await billSession(ctx, id, { skipLocked: true });
        if (o.result === 'skipped') r.skipped++;
        if (o.result === 'charged' || o.result === 'ended_no_credit' || o.result === 'ended_by_limit') {
          if (o.charged > 0) r.charged_sessions++;
          r.units_charged += o.charged;
        }
        if (o.result === 'ended_no_credit') r.ended_no_credit++;
        if (o.result === 'ended_by_limit') r.ended_by_limit++;
      } catch (err) {
        r.failed++;
        ctx.log.error({ err, session_id: id }, 'billing tick failed for a session');
      }
    }
    if (ids.length < batchSize) return r;
    afterId = ids[ids.length - 1]!;
  }
}
