/**
 * `sessiongate billing:audit` on a clean ledger and on deliberately corrupted ones: cached
 * balances edited behind the ledger's back, a unit charged twice (unique index dropped), a row
 * pointing at another patient's subscription (append-only trigger disabled), an unsettled
 * session. Runs on PGlite and PostgreSQL.
 */
import { PassThrough } from 'node:stream';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../../src/cli/index.js';
import { closeContext } from '../../src/context.js';
import { auditBilling, type AuditCheck } from '../../src/modules/billing/audit.js';
import { TEST_JWT_SECRET, createHarness, type TestHarness } from '../helpers/app.js';
import { MIN, endVia, grant, liveSession } from './billing-fixtures.js';

const closed = new WeakSet<TestHarness>();
/** Closes the harness's app and context, keeping its database. */
async function release(t: TestHarness) {
  if (closed.has(t)) return;
  closed.add(t);
  await t.app.close();
  await closeContext(t.ctx);
}

/** Runs the CLI against the harness's database (released first: PGlite has one owner). */
async function runAuditCli(t: TestHarness, args: string[]): Promise<{ code: number; out: string }> {
  await release(t);
  const saved = { DATABASE_URL: process.env['DATABASE_URL'], DATA_DIR: process.env['DATA_DIR'], JWT_SECRET: process.env['JWT_SECRET'] };
  if (t.database.databaseUrl) process.env['DATABASE_URL'] = t.database.databaseUrl;
  else process.env['DATA_DIR'] = t.database.dataDir;
  process.env['JWT_SECRET'] = TEST_JWT_SECRET;
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = '';
  stdout.on('data', (c: Buffer) => (out += c.toString()));
  try {
    const code = await main(['billing:audit', ...args], { stdout, stderr, stdin: new PassThrough(), isTTY: false });
    return { code, out };
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

/** Some real billing: sessions billed periodically and at the end, and a legacy appointment. */
async function bill(t: TestHarness) {
  const a = await liveSession(t, { modality: 'text', credits: { text: 5 }, startedAgoMs: 25 * MIN });
  expect((await endVia(t, a.patient, a.context)).statusCode).toBe(200);
  const b = await liveSession(t, { modality: 'video', credits: { video: 3 }, startedAgoMs: 12 * MIN, doctorCountry: 'Malawi' });
  expect((await endVia(t, b.doctor, b.context)).statusCode).toBe(200);
  const appt = await t.newAppointment({ status: 'in_progress', appointment_type: 'voice', scheduled_at: new Date(Date.now() - 20 * MIN) });
  await grant(t, appt.patient, { voice: 4 });
  // Both took part (the legacy activity flags): a consultation, so it is billed.
  await t.ctx.db.updateTable('appointments').set({ legacy_patient_active: true, legacy_doctor_active: true }).where('id', '=', appt.id).execute();
  const res = await t.app.inject({ method: 'POST', url: `/api/v2/appointments/${appt.id}/end-session`, headers: await t.auth(appt.patient) });
  expect(res.statusCode).toBe(200);
  return { a, b, appt };
}

/**
 * A harness of its own for the enclosing describe block (the CLI needs the database to itself), its
 * database dropped afterwards. Read `.current` inside tests.
 */
function ownHarness(): { current: TestHarness } {
  const holder = {} as { current: TestHarness };
  beforeAll(async () => {
    holder.current = await createHarness();
  });
  afterAll(async () => {
    if (!holder.current) return;
    await release(holder.current);
    await holder.current.database.drop();
  });
  return holder;
}

describe('billing:audit on a clean ledger', () => {
  const own = ownHarness();

  it('finds nothing, as a service and as the command (exit 0)', async () => {
    const t = own.current;
    await bill(t);
    const report = await auditBilling(t.ctx.db);
    expect(report).toMatchObject({ ok: true, findings: [] });
    expect(report.checked).toMatchObject({ ledger_entries: 3 + 2 + 3, wallets: 3, sessions: 2 });

    const json = await runAuditCli(t, ['--json']);
    expect(json.code).toBe(0);
    expect(JSON.parse(json.out)).toMatchObject({ ok: true, findings: [] });
  });
});

describe('billing:audit on a corrupted ledger', () => {
  const own = ownHarness();

  it('reports every kind of corruption and exits 1', async () => {
    const t = own.current;
    const { a, b } = await bill(t);
    const db = t.ctx.db;
    const checks = async () => new Set((await auditBilling(db)).findings.map((f) => f.check));

    // A wallet balance edited behind the ledger's back.
    await sql`update doctor_wallets set balance_minor = balance_minor + 1 where doctor_id = ${a.doctor.id}`.execute(db);
    expect(await checks()).toEqual(new Set<AuditCheck>(['wallet_balance']));

    // A credit handed back without a ledger reversal.
    await sql`update subscriptions set video_remaining = video_remaining + 1 where patient_id = ${b.patient.id}`.execute(db);
    expect(await checks()).toEqual(new Set<AuditCheck>(['wallet_balance', 'subscription_remaining']));

    // The append-only trigger blocks edits to the ledger itself.
    await expect(sql`update ledger_entries set doctor_amount_minor = 0 where session_id = ${a.session.id}`.execute(db)).rejects.toThrow(
      /append-only/,
    );

    // A unit charged twice (only possible with the unique index gone).
    await sql`drop index ledger_session_unit`.execute(db);
    await sql`insert into ledger_entries (session_id, unit_no, patient_id, doctor_id, subscription_id, modality, doctor_amount_minor, doctor_currency, reason)
              select session_id, unit_no, patient_id, doctor_id, subscription_id, modality, doctor_amount_minor, doctor_currency, reason
                from ledger_entries where session_id = ${a.session.id} and unit_no = 1`.execute(db);
    const afterDup = await checks();
    expect(afterDup).toContain('duplicate_unit');
    expect(afterDup).toContain('session_units');

    // A doctor credit whose "patient debit" spent another patient's subscription.
    await sql`alter table ledger_entries disable trigger ledger_no_update`.execute(db);
    await sql`update ledger_entries set subscription_id = (select id from subscriptions where patient_id = ${b.patient.id} limit 1)
               where session_id = ${a.session.id} and unit_no = 3`.execute(db);
    await sql`alter table ledger_entries enable trigger ledger_no_update`.execute(db);
    expect(await checks()).toContain('ledger_parties');

    // An ended session left unsettled, and one billed short.
    await sql`update sessions set settled_at = null where id = ${b.session.id}`.execute(db);
    const report = await auditBilling(db);
    expect(report.ok).toBe(false);
    expect(report.findings).toContainEqual(
      expect.objectContaining({ check: 'session_settlement', ids: expect.objectContaining({ session_id: b.session.id }) }),
    );

    const json = await runAuditCli(t, ['--json']);
    expect(json.code).toBe(1);
    const parsed = JSON.parse(json.out) as { ok: boolean; findings: { check: string }[] };
    expect(parsed.ok).toBe(false);
    expect(new Set(parsed.findings.map((f) => f.check))).toEqual(
      new Set(['wallet_balance', 'subscription_remaining', 'duplicate_unit', 'session_units', 'ledger_parties', 'session_settlement']),
    );
  });

  it('prints findings for people too', async () => {
    const t = own.current;
    const human = await runAuditCli(t, []);
    expect(human.code).toBe(1);
    expect(human.out).toMatch(/FINDING \[wallet_balance\] doctor \d+: wallet balance/);
    expect(human.out).toMatch(/\d+ finding\(s\)\./);
  });
});
