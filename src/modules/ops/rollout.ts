/**
 * `rollout:status` and `GET /api/v2/admin/rollout`: for each flag not yet at its phase-3 value, what
 * changing it now would break, from what the guards and the legacy triggers recorded:
 *
 * | flag (phase-3 value)                       | evidence                                              |
 * |--------------------------------------------|-------------------------------------------------------|
 * | ENFORCE_SESSION_GATED_CHAT (on)            | guard_event_log chat, outcome would_block             |
 * | ENFORCE_SESSION_GATED_BILLING (on)         | guard_event_log billing, outcome would_block          |
 * | DISABLE_LEGACY_APPOINTMENT_TRIGGERS (on)   | job_runs of the two legacy triggers that processed    |
 * |                                            | appointments, and legacy appointments still open;     |
 * |                                            | only process-sessions runs block (see judgeFlag)      |
 * | ALLOW_LEGACY_APPOINTMENT_CHAT (off)        | guard_event_log chat, outcome allowed_legacy          |
 *
 * Verdict: `ready` when the last 7 days hold no such evidence and the earlier steps of the
 * prescribed order (chat → billing → legacy triggers) are on; otherwise `not ready: <reasons>`.
 * Seven days, not one: a client used once a week (a weekly clinic, an old app on a shared phone)
 * must have been seen on the new path before its old path is cut. Flags already at their
 * phase-3 value get `done`.
 */
import { sql } from 'kysely';
import {
  FLAG_NAMES,
  PHASE_NAMES,
  ROLLOUT_ORDER,
  derivePhase,
  skippedSteps,
  type FlagName,
  type FlagSet,
} from '../../config/flag-values.js';
import type { Db, Executor } from '../../db/types.js';
import { iso } from '../../lib/schemas.js';
import { inSnapshot } from './monitor.js';
import { LEGACY_TRIGGER_COMMANDS } from '../jobs/legacy.js';
import type { FlagRollout, RolloutStatus } from './schemas.js';

/** The value each flag has in phase 3 (full enforcement). */
export const PHASE3_TARGET: Readonly<Record<FlagName, boolean>> = Object.freeze({
  ENFORCE_SESSION_GATED_CHAT: true,
  ENFORCE_SESSION_GATED_BILLING: true,
  DISABLE_LEGACY_APPOINTMENT_TRIGGERS: true,
  ALLOW_LEGACY_APPOINTMENT_CHAT: false,
});

type Evidence = FlagRollout['evidence'];
type EvidenceWindow = Evidence['last_24h'];
type Example = NonNullable<Evidence['newest']>;

const WINDOWS = { last_24h: 24, last_7d: 24 * 7 } as const;
const [ACTIVATE_BOOKED, PROCESS_SESSIONS] = LEGACY_TRIGGER_COMMANDS;

/** The rollout status, computed from the database in one snapshot. */
export async function rolloutStatus(db: Db, flags: FlagSet): Promise<RolloutStatus> {
  return inSnapshot(db, (trx) => rolloutStatusIn(trx, flags));
}

/** {@link rolloutStatus} inside a caller's snapshot transaction. */
export async function rolloutStatusIn(trx: Executor, flags: FlagSet): Promise<RolloutStatus> {
  const now = (await sql<{ now: Date }>`select now() as now`.execute(trx)).rows[0]!.now;
  const evidence: Record<FlagName, Evidence> = {
    ENFORCE_SESSION_GATED_CHAT: await guardEvidence(trx, 'chat', 'would_block'),
    ENFORCE_SESSION_GATED_BILLING: await guardEvidence(trx, 'billing', 'would_block'),
    DISABLE_LEGACY_APPOINTMENT_TRIGGERS: await legacyTriggerEvidence(trx),
    ALLOW_LEGACY_APPOINTMENT_CHAT: await guardEvidence(trx, 'chat', 'allowed_legacy'),
  };
  const blocked = await blockedLast24h(trx);
  const blocked24h: Record<FlagName, number> = {
    ENFORCE_SESSION_GATED_CHAT: blocked.chat_blocked,
    ENFORCE_SESSION_GATED_BILLING: blocked.billing_blocked,
    DISABLE_LEGACY_APPOINTMENT_TRIGGERS: 0,
    // With legacy chat off, pre-session chat is refused with SESSION_NOT_READY.
    ALLOW_LEGACY_APPOINTMENT_CHAT: blocked.chat_not_ready,
  };

  const flagStatus = FLAG_NAMES.map((flag) => judgeFlag(flag, flags, evidence[flag], blocked24h[flag]));
  const skipped = skippedSteps(flags);
  const phase = derivePhase(flags);
  const nextFlag =
    ROLLOUT_ORDER.find((f) => flags[f] !== PHASE3_TARGET[f]) ??
    (flags.ALLOW_LEGACY_APPOINTMENT_CHAT !== PHASE3_TARGET.ALLOW_LEGACY_APPOINTMENT_CHAT ? 'ALLOW_LEGACY_APPOINTMENT_CHAT' : undefined);
  const next = nextFlag ? flagStatus.find((f) => f.flag === nextFlag)! : undefined;

  return {
    generated_at: iso(now)!,
    phase,
    phase_name: PHASE_NAMES[phase],
    flags: { ...flags },
    order: {
      prescribed: [...ROLLOUT_ORDER],
      skipped_steps: skipped,
      skips_step: skipped.length > 0,
      next_step: next ? { flag: next.flag, set_to: next.target, verdict: next.verdict, ready: next.ready } : null,
    },
    flag_status: flagStatus,
  };
}

/** The verdict for one flag (pure: evidence in, verdict out). */
export function judgeFlag(flag: FlagName, flags: FlagSet, evidence: Evidence, blocked24h: number): FlagRollout {
  const target = PHASE3_TARGET[flag];
  const atTarget = flags[flag] === target;
  const reasons: string[] = [];
  const notes: string[] = [];
  const w24 = evidence.last_24h;
  const w7 = evidence.last_7d;
  const newest = evidence.newest ? ` (newest: ${describeExample(evidence.newest)})` : '';

  if (!atTarget) {
    if (flag === 'DISABLE_LEGACY_APPOINTMENT_TRIGGERS') {
      // activate-booked only starts sessions (5 minutes early) for confirmed appointments, which
      // auto-start starts on time once it is disabled: no gap, so a note. process-sessions closes
      // appointments of the old flow that nothing else closes: a blocker.
      const closer = (w: EvidenceWindow) => w.by_operation.find((o) => o.operation === PROCESS_SESSIONS);
      const starter = (w: EvidenceWindow) => w.by_operation.find((o) => o.operation === ACTIVATE_BOOKED);
      const c24 = closer(w24);
      const c7 = closer(w7);
      if (c7 && c7.events > 0) {
        reasons.push(
          `${PROCESS_SESSIONS} still closes legacy appointments: ${c24?.events ?? 0} run(s) / ${c24?.appointments ?? 0} appointment(s) ` +
            `in the last 24 h, ${c7.events} / ${c7.appointments} in 7 d`,
        );
      }
      const s24 = starter(w24);
      if (s24 && s24.events > 0) {
        notes.push(
          `${ACTIVATE_BOOKED} started ${s24.appointments} appointment(s) in ${s24.events} run(s) in the last 24 h; ` +
            'auto-start takes these over (at their time instead of 5 minutes early)',
        );
      }
    } else if (w7.events > 0) {
      reasons.push(`${whatWouldBreak(flag, w24, w7)}${newest}`);
    }
    if (evidence.open_legacy_appointments) {
      reasons.push(
        `${evidence.open_legacy_appointments} legacy appointment(s) started without a session are still open; ` +
          'appointments:process-sessions closes them — let it finish first',
      );
    }
    const order = ROLLOUT_ORDER.indexOf(flag);
    const earlierOff = order > 0 ? ROLLOUT_ORDER.slice(0, order).filter((f) => !flags[f]) : [];
    if (earlierOff.length > 0) reasons.push(`turn ${earlierOff.join(' and ')} on first (prescribed order: ${ROLLOUT_ORDER.join(' → ')})`);
  } else {
    if (blocked24h > 0) notes.push(`${blocked24h} request(s) refused in the last 24 h because of this flag`);
    if (w24.events > 0) notes.push(`${w24.events} legacy event(s) in the last 24 h${newest}`);
  }

  const verdict = atTarget ? 'done' : reasons.length === 0 ? 'ready' : `not ready: ${reasons.join('; ')}`;
  return {
    flag,
    value: flags[flag],
    target,
    at_target: atTarget,
    verdict,
    ready: !atTarget && reasons.length === 0,
    reasons,
    notes,
    evidence,
    blocked_24h: blocked24h,
  };
}

function whatWouldBreak(flag: FlagName, w24: EvidenceWindow, w7: EvidenceWindow): string {
  const counts = `${w24.events} in the last 24 h on ${w24.appointments} appointment(s), ${w7.events} in 7 d on ${w7.appointments}`;
  switch (flag) {
    case 'ENFORCE_SESSION_GATED_CHAT':
      return `legacy chat requests on appointments that have a session would be refused with SESSION_CONTEXT_REQUIRED: ${counts}`;
    case 'ENFORCE_SESSION_GATED_BILLING':
      return `legacy billing requests on appointments that have a session would be refused with SESSION_BILLING_REQUIRED: ${counts}`;
    case 'DISABLE_LEGACY_APPOINTMENT_TRIGGERS':
      return `legacy trigger runs processed appointments: ${w24.events} run(s) / ${w24.appointments} appointment(s) in the last 24 h, ${w7.events} / ${w7.appointments} in 7 d`;
    case 'ALLOW_LEGACY_APPOINTMENT_CHAT':
      return `pre-session chat on appointments without a session would be refused with SESSION_NOT_READY: ${counts}`;
  }
}

function describeExample(e: Example): string {
  const parts = [e.operation];
  if (e.appointment_id !== null) parts.push(`appointment ${e.appointment_id}`);
  if (e.session_id !== null) parts.push(`session ${e.session_id}`);
  if (e.run_id !== null) parts.push(`run ${e.run_id}`);
  if (e.appointments !== null) parts.push(`${e.appointments} appointment(s)`);
  return `${parts.join(', ')} at ${e.at}`;
}

async function guardEvidence(trx: Executor, guard: 'chat' | 'billing', outcome: 'would_block' | 'allowed_legacy'): Promise<Evidence> {
  const rows = (
    await sql<{ window: keyof typeof WINDOWS; operation: string | null; events: number; appointments: number }>`
      select w.name as window, e.operation, count(*)::int as events, count(distinct e.appointment_id)::int as appointments
        from guard_event_log e
        join (values ('last_24h', ${WINDOWS.last_24h}::int), ('last_7d', ${WINDOWS.last_7d}::int)) as w(name, hours)
          on e.created_at > now() - make_interval(hours => w.hours)
       where e.guard = ${guard} and e.outcome = ${outcome}
         and e.created_at > now() - make_interval(hours => ${WINDOWS.last_7d})
       group by grouping sets ((w.name, e.operation), (w.name))
       order by w.name, events desc, e.operation`.execute(trx)
  ).rows;
  const newest = (
    await sql<{ at: Date; operation: string; appointment_id: number | null; session_id: number | null; user_id: number | null }>`
      select created_at as at, operation, appointment_id, session_id, user_id
        from guard_event_log
       where guard = ${guard} and outcome = ${outcome}
         and created_at > now() - make_interval(hours => ${WINDOWS.last_7d})
       order by created_at desc, id desc
       limit 1`.execute(trx)
  ).rows[0];
  return {
    source: `guard_event_log where guard = '${guard}' and outcome = '${outcome}'`,
    last_24h: toWindow(rows.filter((r) => r.window === 'last_24h')),
    last_7d: toWindow(rows.filter((r) => r.window === 'last_7d')),
    newest: newest
      ? {
          at: iso(newest.at)!,
          operation: newest.operation,
          appointment_id: newest.appointment_id,
          session_id: newest.session_id,
          user_id: newest.user_id,
          run_id: null,
          appointments: null,
        }
      : null,
  };
}

/**
 * Legacy trigger runs that processed appointments (job_runs cannot name them, so "appointments"
 * is the sum of what the runs processed), plus legacy appointments still open — those only
 * `appointments:process-sessions` closes, and it stops when the triggers are disabled.
 */
async function legacyTriggerEvidence(trx: Executor): Promise<Evidence> {
  const commands = sql.join([...LEGACY_TRIGGER_COMMANDS]);
  const rows = (
    await sql<{ window: keyof typeof WINDOWS; operation: string | null; events: number; appointments: number }>`
      select w.name as window, r.job as operation, count(*)::int as events, coalesce(sum(r.processed), 0)::int as appointments
        from (select job, started_at, greatest(selected, created + skipped + failed) as processed
                from job_runs
               where job in (${commands})
                 and status <> 'skipped'
                 and started_at > now() - make_interval(hours => ${WINDOWS.last_7d})) r
        join (values ('last_24h', ${WINDOWS.last_24h}::int), ('last_7d', ${WINDOWS.last_7d}::int)) as w(name, hours)
          on r.started_at > now() - make_interval(hours => w.hours)
       where r.processed > 0
       group by grouping sets ((w.name, r.job), (w.name))
       order by w.name, events desc, r.job`.execute(trx)
  ).rows;
  const newest = (
    await sql<{ at: Date; job: string; run_id: string; processed: number }>`
      select started_at as at, job, run_id::text as run_id, greatest(selected, created + skipped + failed)::int as processed
        from job_runs
       where job in (${commands})
         and status <> 'skipped'
         and greatest(selected, created + skipped + failed) > 0
         and started_at > now() - make_interval(hours => ${WINDOWS.last_7d})
       order by started_at desc, id desc
       limit 1`.execute(trx)
  ).rows[0];
  const open = (
    await sql<{ n: number }>`
      select count(*)::int as n from appointments where status = 'in_progress' and session_id is null`.execute(trx)
  ).rows[0]!;
  return {
    source: `job_runs where job in (${LEGACY_TRIGGER_COMMANDS.join(', ')}) that processed appointments; appointments in_progress without a session`,
    last_24h: toWindow(rows.filter((r) => r.window === 'last_24h')),
    last_7d: toWindow(rows.filter((r) => r.window === 'last_7d')),
    newest: newest
      ? {
          at: iso(newest.at)!,
          operation: newest.job,
          appointment_id: null,
          session_id: null,
          user_id: null,
          run_id: newest.run_id,
          appointments: newest.processed,
        }
      : null,
    open_legacy_appointments: open.n,
  };
}

function toWindow(rows: { operation: string | null; events: number; appointments: number }[]): EvidenceWindow {
  const total = rows.find((r) => r.operation === null);
  return {
    events: total?.events ?? 0,
    appointments: total?.appointments ?? 0,
    by_operation: rows
      .filter((r): r is typeof r & { operation: string } => r.operation !== null)
      .map((r) => ({ operation: r.operation, events: r.events, appointments: r.appointments })),
  };
}

async function blockedLast24h(trx: Executor) {
  return (
    await sql<{ chat_blocked: number; billing_blocked: number; chat_not_ready: number }>`
      select count(*) filter (where guard = 'chat' and outcome = 'blocked')::int as chat_blocked,
             count(*) filter (where guard = 'billing' and outcome = 'blocked')::int as billing_blocked,
             count(*) filter (where guard = 'chat' and outcome = 'not_ready')::int as chat_not_ready
        from guard_event_log
       where guard in ('chat', 'billing') and outcome in ('blocked', 'not_ready')
         and created_at > now() - interval '24 hours'`.execute(trx)
  ).rows[0]!;
}
