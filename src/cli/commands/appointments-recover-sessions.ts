import { once } from 'node:events';
import { randomUUID } from 'node:crypto';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { CommandError, EXIT, UsageError, print, printJson, positiveInt, withContext, type CommandIO, type Command } from '../command.js';
import type { AppContext } from '../../context.js';
import { runJobOnce } from '../../modules/jobs/scheduler.js';
import {
  DEFAULT_RECOVERY_LIMIT,
  LOOKBACK_FORMS,
  RECOVERY_JOB,
  countAudit,
  executeRecovery,
  parseLookback,
  predictRecovery,
  selectRecoveryCandidates,
  type Lookback,
  type RecoveryAudit,
  type RecoverySelection,
} from '../../modules/sessions/recovery.js';

export const command: Command = {
  name: 'appointments:recover-sessions',
  summary: 'Create missing sessions for past confirmed appointments (dry run unless --execute)',
  usage: `
sessiongate appointments:recover-sessions [--lookback 24|24h|7d|all] [--limit N] [--execute [--yes]] [--json]

Finds confirmed appointments whose time has passed and that have no session — including those
auto-start gave up on after AUTO_START_MAX_ATTEMPTS — and creates their sessions through the single
writer. Without --execute it is a dry run: it prints what it would do and writes nothing.

  --lookback   how far back: a bare number of hours (24), hours (24h), days (7d), or all (default 24h)
  --limit N    at most N appointments (default ${DEFAULT_RECOVERY_LIMIT})
  --execute    create the sessions; asks for confirmation on a terminal
  --yes        confirm --execute without asking (required when there is no terminal)
  --json       machine-readable output (the per-appointment audit included)

Idempotent: a second --execute creates nothing; the appointments an earlier recovery converted are
reported as skipped (session_id_already_set).

Exit codes: 0 ok (or cancelled at the prompt), 1 an appointment failed, 2 refused (--execute
without a terminal and without --yes; with --json the refusal is a JSON error object on stdout),
3 did not run (bad option, bad configuration, database unreachable).`,
  options: {
    lookback: { type: 'string' },
    limit: { type: 'string' },
    execute: { type: 'boolean' },
    yes: { type: 'boolean' },
    json: { type: 'boolean' },
  },
  async run(args, io) {
    // Usage is checked before anything touches the database.
    const rawLookback = args.values['lookback'];
    const lookback = parseLookback(typeof rawLookback === 'string' ? rawLookback : '24h');
    if (!lookback) throw new UsageError(`invalid --lookback "${String(rawLookback)}": use ${LOOKBACK_FORMS}`);
    const limit = positiveInt(args.values['limit'], 'limit', DEFAULT_RECOVERY_LIMIT);
    const execute = Boolean(args.values['execute']);
    const yes = Boolean(args.values['yes']);
    const json = Boolean(args.values['json']);
    if (execute && !yes && !io.isTTY) {
      throw new CommandError('REFUSED', 'refusing to --execute without a terminal to confirm on; add --yes to confirm.', EXIT.refused);
    }
    return withContext((ctx) =>
      execute ? runExecute(ctx, io, { lookback, limit, yes, json }) : runDry(ctx, io, { lookback, limit, json }),
    );
  },
};

interface Opts {
  lookback: Lookback;
  limit: number;
  json: boolean;
}

async function runDry(ctx: AppContext, io: CommandIO, o: Opts): Promise<number> {
  const started = performance.now();
  const runId = randomUUID();
  const sel = await selectRecoveryCandidates(ctx, o.lookback, o.limit);
  const entries = predictRecovery(sel.candidates);
  report(ctx, io, o, { runId, mode: 'dry-run', sel, entries, started });
  return 0;
}

async function runExecute(ctx: AppContext, io: CommandIO, o: Opts & { yes: boolean }): Promise<number> {
  const sel = await selectRecoveryCandidates(ctx, o.lookback, o.limit);
  const toConvert = sel.candidates.filter((c) => c.session_id === null).length;
  if (!o.yes && toConvert > 0) {
    io.stderr.write(`${header(o, sel, 'execute')}\n`);
    io.stderr.write(`Create sessions for ${toConvert} appointment(s)? [y/N] `);
    const answer = await readLine(io.stdin);
    if (!/^\s*y(es)?\s*$/i.test(answer)) {
      print(io, 'Cancelled by operator; nothing was changed.');
      return 0;
    }
  }
  let entries: RecoveryAudit[] = [];
  const started = performance.now();
  let runId = '';
  const progress = io.isTTY ? progressBar(io) : null;
  const result = await runJobOnce(ctx, {
    name: RECOVERY_JOB,
    intervalSeconds: () => 0,
    recordIdleRuns: true,
    async run(c, run) {
      runId = run.runId;
      entries = await executeRecovery(c, sel.candidates, { runId: run.runId, onProgress: progress?.update });
      const counts = countAudit(entries);
      return { ...counts, details: { mode: 'execute', lookback: o.lookback.label, limit: o.limit } };
    },
  });
  progress?.done();
  if (result.status === 'failed') {
    io.stderr.write(`recovery run ${result.runId} failed: ${result.error}\n`);
    return 1;
  }
  const counts = report(ctx, io, o, { runId, mode: 'execute', sel, entries, started });
  return counts.failed > 0 ? 1 : 0;
}

function header(o: Opts, sel: RecoverySelection, mode: 'dry-run' | 'execute'): string {
  const from = sel.window_start ? sel.window_start.toISOString() : 'the beginning';
  return [
    mode === 'dry-run'
      ? 'Recovery — DRY RUN: nothing will be written (add --execute to create sessions)'
      : 'Recovery — EXECUTE: sessions will be created',
    `Window: past appointments scheduled from ${from} to ${sel.now.toISOString()} (lookback ${o.lookback.label}), limit ${o.limit}`,
    `Found ${sel.candidates.length} appointment(s): ${sel.candidates.filter((c) => c.session_id === null).length} without a session, ` +
      `${sel.candidates.filter((c) => c.session_id !== null).length} converted by an earlier recovery`,
  ].join('\n');
}

function report(
  ctx: AppContext,
  io: CommandIO,
  o: Opts,
  r: { runId: string; mode: 'dry-run' | 'execute'; sel: RecoverySelection; entries: RecoveryAudit[]; started: number },
) {
  const counts = countAudit(r.entries);
  const runtimeMs = Math.round((performance.now() - r.started) * 100) / 100;
  ctx.log.info(
    {
      event: 'appointment_recovery_run',
      run_id: r.runId,
      mode: r.mode,
      lookback: o.lookback.label,
      limit: o.limit,
      due_count: counts.selected,
      attempted_count: counts.selected,
      created_count: counts.created,
      skipped_count: counts.skipped,
      failed_count: counts.failed,
      runtime_ms: runtimeMs,
      source: 'APPOINTMENT',
    },
    'appointment_recovery_run',
  );
  if (o.json) {
    printJson(io, {
      run_id: r.runId,
      mode: r.mode,
      lookback: o.lookback.label,
      limit: o.limit,
      now: r.sel.now.toISOString(),
      window_start: r.sel.window_start?.toISOString() ?? null,
      counts,
      runtime_ms: runtimeMs,
      appointments: r.entries,
    });
    return counts;
  }
  print(io, header(o, r.sel, r.mode));
  if (r.entries.length === 0) {
    print(io, 'No appointments found matching the criteria.');
    return counts;
  }
  for (const e of r.entries) print(io, auditLine(e));
  const verb = r.mode === 'dry-run' ? 'would be ' : '';
  print(
    io,
    `Summary: ${counts.created} ${verb}created, ${counts.skipped} ${verb}skipped, ${counts.failed} ${verb}failed${r.mode === 'execute' ? ` (run ${r.runId})` : ''}`,
  );
  return counts;
}

const ACTION_TEXT: Record<RecoveryAudit['action'], string> = {
  created: 'created     ',
  skipped: 'skipped     ',
  failed: 'FAILED      ',
  would_create: 'would create',
  would_skip: 'would skip  ',
  would_fail: 'would FAIL  ',
  deferred: 'deferred    ',
  would_defer: 'would defer ',
};

function auditLine(e: RecoveryAudit): string {
  const what = e.session_context ? ` ${e.session_context}` : '';
  const why = e.reason ? ` (${e.reason})` : '';
  return `${ACTION_TEXT[e.action]} appointment ${e.appointment_id} ${e.appointment_type} at ${e.scheduled_at} patient ${e.patient_id} doctor ${e.doctor_id} attempts ${e.conversion_attempts}${what}${why}`;
}

/** Reads one line (the answer to the prompt); end of input counts as no. */
async function readLine(input: Readable): Promise<string> {
  const rl = createInterface({ input, terminal: false });
  try {
    const [line] = (await Promise.race([once(rl, 'line'), once(rl, 'close').then(() => [''])])) as [string];
    return line;
  } finally {
    rl.close();
  }
}

/** A progress bar on stderr (terminals only), redrawn in place. */
function progressBar(io: CommandIO) {
  const width = 30;
  return {
    update(done: number, total: number) {
      const filled = total === 0 ? width : Math.round((done / total) * width);
      io.stderr.write(`\r[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${total} appointments`);
    },
    done() {
      io.stderr.write('\n');
    },
  };
}
