import { EXIT, print, printJson, withContext, type Command } from '../command.js';
import { rolloutStatus } from '../../modules/ops/rollout.js';
import type { RolloutStatus } from '../../modules/ops/schemas.js';

export const command: Command = {
  name: 'rollout:status',
  summary: 'Rollout phase, flags, and per flag whether turning it now would block traffic',
  usage: `sessiongate rollout:status [--json] [--check]

For each flag not yet at its phase-3 value: what changing it now would refuse, from the recorded
guard events and legacy-trigger runs (counts by operation/endpoint and distinct appointments over
the last 24 h and 7 days, the newest example), and a verdict: "ready" or "not ready: <reason>".
Also the prescribed order (chat, then billing, then legacy triggers; legacy chat off last) and
whether the current flags skip a step. GET /api/v2/admin/rollout returns the same JSON; in it
every flag and order.next_step carry a boolean "ready".

  --json    the status as JSON
  --check   exit 0 when the next step is ready, 1 when it is not (or there is none: phase 3
            reached) — for scripts: \`sessiongate rollout:status --check && …\`

Exit codes: 0 printed (with --check: next step ready), 1 with --check: next step not ready or
none, 3 did not run (bad option, bad configuration, database unreachable).`,
  options: { json: { type: 'boolean' }, check: { type: 'boolean' } },
  async run(args, io) {
    const status = await withContext(async (ctx) => rolloutStatus(ctx.db, await ctx.flags.current()));
    if (args.values['json']) printJson(io, status);
    else for (const line of render(status)) print(io, line);
    if (!args.values['check']) return EXIT.ok;
    return status.order.next_step?.ready === true ? EXIT.ok : EXIT.failed;
  },
};

function render(s: RolloutStatus): string[] {
  const lines = [
    `Rollout phase ${s.phase} (${s.phase_name}) — ${s.generated_at}`,
    `Prescribed order: ${s.order.prescribed.join(' → ')} → ALLOW_LEGACY_APPOINTMENT_CHAT=false`,
    `Current flags skip a step: ${s.order.skips_step ? `YES — ${s.order.skipped_steps.join(', ')} is off while a later step is on` : 'no'}`,
    `Next step: ${s.order.next_step ? `${s.order.next_step.flag}=${s.order.next_step.set_to} — ${s.order.next_step.ready ? 'READY' : 'NOT READY'} (${s.order.next_step.verdict})` : 'none (phase 3 reached)'}`,
  ];
  for (const f of s.flag_status) {
    const e = f.evidence;
    lines.push('', `${f.flag}=${f.value} (phase 3: ${f.target})`, `  verdict: ${f.verdict}`);
    lines.push(`  evidence: ${e.source}`);
    lines.push(`  last 24 h: ${e.last_24h.events} event(s), ${e.last_24h.appointments} appointment(s)`);
    lines.push(`  last 7 d:  ${e.last_7d.events} event(s), ${e.last_7d.appointments} appointment(s)`);
    for (const op of e.last_7d.by_operation) {
      const d = e.last_24h.by_operation.find((o) => o.operation === op.operation);
      lines.push(
        `    ${op.operation.padEnd(32)} 24 h: ${d?.events ?? 0} / ${d?.appointments ?? 0} appts   7 d: ${op.events} / ${op.appointments} appts`,
      );
    }
    if (e.newest) {
      const n = e.newest;
      const what = [
        n.operation,
        n.appointment_id !== null ? `appointment ${n.appointment_id}` : null,
        n.session_id !== null ? `session ${n.session_id}` : null,
        n.run_id ? `run ${n.run_id}` : null,
      ]
        .filter(Boolean)
        .join(', ');
      lines.push(`  newest: ${n.at} ${what}`);
    }
    if (e.open_legacy_appointments !== undefined) lines.push(`  legacy appointments still open: ${e.open_legacy_appointments}`);
    for (const note of f.notes) lines.push(`  note: ${note}`);
  }
  return lines;
}
