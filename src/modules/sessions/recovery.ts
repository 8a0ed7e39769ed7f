/**
 * Recovery (`appointments:recover-sessions`): converts confirmed appointments whose
 * time has passed and that still have no session — those auto-start gave up on (attempts used
 * up), those older than its lateness window, those missed while no worker ran — through the
 * single writer (source `recovery`).
 *
 * Selection, within the lookback window (`scheduled_at >= now() - lookback`, or everything for
 * `all`), strictly past (`scheduled_at < now()`), by the database clock:
 *  1. to convert: `confirmed`, `session_id is null` — no attempt or backoff filter: recovery is
 *     the operator overriding them;
 *  2. for the audit: appointments an earlier recovery run converted (an `appointment_conversions`
 *     row with source `recovery`, result `created`). They go through the writer too, which skips
 *     them under the lock with `session_id_already_set` — so running recovery again reports what
 *     it already did ("all skipped session_id_already_set") instead of "nothing found".
 * Group 1 comes first and `--limit` applies to the union, so already-recovered appointments can
 * never crowd out ones that still need a session (no head-of-line blocking across reruns).
 *
 * The dry run reads in a READ ONLY transaction and writes nothing — no conversion rows, no job
 * run, no row locks; it predicts each outcome with the writer's own eligibility expression
 * (evaluated by the read) plus the one-live-session-per-patient rule.
 */
import { sql } from 'kysely';
import type { AppContext } from '../../context.js';
import type { Modality } from '../../db/types.js';
import { formatSessionContext } from '../session-context.js';
import { deliverPendingNotifications } from '../notifications/outbox.js';
import { appointmentColumns, ineligibleReasonSql, ineligibleResultSql, modalitySql, type IneligibleReason } from './eligibility.js';
import { LIVE_STATUSES, kindOf } from './state.js';
import { DEFERRED_PATIENT_BUSY, convertAppointments, type ConversionOutcome } from './writer.js';

export const RECOVERY_JOB = 'appointments:recover-sessions';
export const DEFAULT_RECOVERY_LIMIT = 100;
/** Appointments per writer transaction when executing (the progress bar moves per chunk). */
export const RECOVERY_CHUNK = 50;

export interface Lookback {
  /** Hours back from now; `null` = all past appointments. */
  hours: number | null;
  /** Normalised label: `24h`, `7d`, `all`. */
  label: string;
}

export const LOOKBACK_FORMS = '24 (hours), 24h, 7d or all';

/**
 * `--lookback`: a bare number of hours (`24`), hours (`24h`), days (`7d`), or `all`.
 * Case-insensitive; 1 hour to 10 years. Anything else → null (the CLI exits 1 naming the forms).
 */
export function parseLookback(raw: string): Lookback | null {
  const v = raw.trim().toLowerCase();
  if (v === 'all') return { hours: null, label: 'all' };
  const m = /^([1-9][0-9]{0,5})([hd]?)$/.exec(v);
  if (!m) return null;
  const n = Number(m[1]);
  const hours = m[2] === 'd' ? n * 24 : n;
  if (hours > 24 * 3650) return null;
  return { hours, label: m[2] === 'd' ? `${n}d` : `${n}h` };
}

export interface RecoveryCandidate {
  appointment_id: number;
  scheduled_at: Date;
  appointment_type: string;
  patient_id: number;
  doctor_id: number;
  status: string;
  session_id: number | null;
  session_kind: 'text' | 'call' | null;
  conversion_attempts: number;
  last_conversion_error: string | null;
  modality: Modality | null;
  /** What the writer's eligibility rule says now: null (eligible), or why not and whether that is a skip or a failure. */
  ineligible_reason: IneligibleReason | null;
  ineligible_result: 'skipped' | 'failed' | null;
  patient_has_live_session: boolean;
}

export interface RecoverySelection {
  now: Date;
  window_start: Date | null;
  candidates: RecoveryCandidate[];
}

export async function selectRecoveryCandidates(ctx: AppContext, lookback: Lookback, limit: number): Promise<RecoverySelection> {
  const windowStart = lookback.hours === null ? sql`'-infinity'::timestamptz` : sql`now() - make_interval(hours => ${lookback.hours})`;
  return ctx.db.transaction().execute(async (trx) => {
    await sql`set transaction read only`.execute(trx);
    const head = await sql<{ now: Date; window_start: Date | null }>`
      select now() as now, ${lookback.hours === null ? sql`null::timestamptz` : windowStart} as window_start`.execute(trx);
    const rows = await sql<RecoveryCandidate>`
      with todo as (
        select id from appointments
         where status = 'confirmed' and session_id is null
           and scheduled_at < now() and scheduled_at >= ${windowStart}
         order by scheduled_at, id
         limit ${limit}),
      done as (
        select a.id from appointments a
         where a.session_id is not null
           and a.scheduled_at < now() and a.scheduled_at >= ${windowStart}
           and a.id in (select c.appointment_id from appointment_conversions c
                         where c.source = 'recovery' and c.result = 'created' and c.created_at >= ${windowStart})
         order by a.scheduled_at, a.id
         limit ${limit})
      select a.id as appointment_id, a.scheduled_at, a.appointment_type, a.patient_id, a.doctor_id, a.status,
             a.session_id, s.kind as session_kind, a.conversion_attempts, a.last_conversion_error,
             ${modalitySql(sql.ref('a.appointment_type'))} as modality,
             e.reason as ineligible_reason, ${ineligibleResultSql(sql.ref('e.reason'))} as ineligible_result,
             exists (select 1 from sessions l
                      where l.patient_id = a.patient_id
                        and l.status in (${sql.join([...LIVE_STATUSES].map((st) => sql.lit(st)))})) as patient_has_live_session
        from appointments a
        cross join lateral (select ${ineligibleReasonSql(appointmentColumns('a'))} as reason) e
        left join sessions s on s.id = a.session_id
       where a.id in (select id from todo union all select id from done)
       order by (a.session_id is null) desc, a.scheduled_at, a.id
       limit ${limit}`.execute(trx);
    return { now: head.rows[0]!.now, window_start: head.rows[0]!.window_start, candidates: rows.rows };
  });
}

export type RecoveryAction = 'created' | 'skipped' | 'failed' | 'deferred' | 'would_create' | 'would_skip' | 'would_fail' | 'would_defer';

/** One audit entry per appointment (the CLI prints it; --json emits it). */
export interface RecoveryAudit {
  appointment_id: number;
  scheduled_at: string;
  appointment_type: string;
  patient_id: number;
  doctor_id: number;
  action: RecoveryAction;
  session_id: number | null;
  session_context: string | null;
  reason: string | null;
  conversion_attempts: number;
}

function audit(
  c: RecoveryCandidate,
  action: RecoveryAction,
  sessionId: number | null,
  kind: 'text' | 'call' | null,
  reason: string | null,
): RecoveryAudit {
  return {
    appointment_id: c.appointment_id,
    scheduled_at: c.scheduled_at.toISOString(),
    appointment_type: c.appointment_type,
    patient_id: c.patient_id,
    doctor_id: c.doctor_id,
    action,
    session_id: sessionId,
    session_context: sessionId !== null && kind ? formatSessionContext(kind, sessionId) : null,
    reason,
    conversion_attempts: c.conversion_attempts,
  };
}

/** What an execution would do, predicted from a plain read (the dry run). */
export function predictRecovery(candidates: RecoveryCandidate[]): RecoveryAudit[] {
  const busy = new Set<number>();
  return candidates.map((c) => {
    if (c.ineligible_reason !== null) {
      const kind = c.session_kind ?? (c.modality ? kindOf(c.modality) : null);
      return audit(c, c.ineligible_result === 'skipped' ? 'would_skip' : 'would_fail', c.session_id, kind, c.ineligible_reason);
    }
    // One live session per patient: a live session now, or one this run would create first.
    if (c.patient_has_live_session || busy.has(c.patient_id)) {
      return audit(c, 'would_defer', null, null, DEFERRED_PATIENT_BUSY);
    }
    busy.add(c.patient_id);
    return audit(c, 'would_create', null, null, null);
  });
}

/** Converts the candidates through the single writer, in chunks; returns the audit in order. */
export async function executeRecovery(
  ctx: AppContext,
  candidates: RecoveryCandidate[],
  opts: { runId: string; onProgress?: (done: number, total: number) => void },
): Promise<RecoveryAudit[]> {
  const byId = new Map<number, ConversionOutcome>();
  const ids = candidates.map((c) => c.appointment_id);
  for (let i = 0; i < ids.length; i += RECOVERY_CHUNK) {
    const chunk = ids.slice(i, i + RECOVERY_CHUNK);
    const outcomes = await convertAppointments(ctx, chunk, { source: 'recovery', jobRunId: opts.runId, deliverNotifications: false });
    for (const o of outcomes) byId.set(o.appointmentId, o);
    opts.onProgress?.(Math.min(i + chunk.length, ids.length), ids.length);
  }
  if ([...byId.values()].some((o) => o.result === 'created')) {
    try {
      while ((await deliverPendingNotifications(ctx, 2000)) === 2000);
    } catch (err) {
      ctx.log.warn({ err }, 'notification delivery failed; the worker will retry');
    }
  }
  return candidates.map((c) => {
    const o = byId.get(c.appointment_id);
    if (!o) return audit(c, 'failed', null, null, 'unknown_error');
    const kind = c.session_kind ?? (o.modality ? kindOf(o.modality) : null);
    return audit(c, o.result, o.sessionId, kind, o.reason);
  });
}

export interface RecoveryCounts {
  selected: number;
  created: number;
  skipped: number;
  failed: number;
}

/** A deferred appointment (its patient is busy) is not a failure: counted with the skips. */
const RESULT_OF: Record<RecoveryAction, 'created' | 'skipped' | 'failed'> = {
  deferred: 'skipped',
  would_defer: 'skipped',
  created: 'created',
  would_create: 'created',
  skipped: 'skipped',
  would_skip: 'skipped',
  failed: 'failed',
  would_fail: 'failed',
};

export function countAudit(entries: RecoveryAudit[]): RecoveryCounts {
  const c = { selected: entries.length, created: 0, skipped: 0, failed: 0 };
  for (const e of entries) c[RESULT_OF[e.action]] += 1;
  return c;
}
