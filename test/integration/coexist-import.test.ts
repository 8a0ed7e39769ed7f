/**
 * Coexistence with the existing backend, users: the export of docs/migration.md imported through
 * the admin API and through `sessiongate users:import` (a real process), twice — ids kept, the id
 * sequence moved past them, nothing changed by the second run, a bad record refused on its own.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SignJWT } from 'jose';
import { auditBilling } from '../../src/modules/billing/audit.js';
import { createUser } from '../../src/modules/users/service.js';
import type { Db } from '../../src/db/types.js';
import { createHarness, TEST_JWT_SECRET, type TestHarness } from '../helpers/app.js';
import { cliDatabase, type CliDatabase } from '../helpers/cli-run.js';
import { runCli } from '../helpers/process.js';

const inDays = (d: number) => new Date(Date.now() + d * 86_400_000).toISOString();

/** Records as the export query of docs/migration.md writes them (Laravel column names kept). */
const exportRecords = (base: number) => [
  {
    id: base + 1,
    first_name: 'Chikondi',
    last_name: 'Phiri',
    email: 'chikondi@example.test',
    user_type: 'patient',
    country: 'Malawi',
    timezone: 'Africa/Blantyre',
    subscriptions: [
      {
        payment_reference: `PAYCHANGU-${base}-1`,
        plan: 'Executive',
        text_remaining: 7,
        voice_remaining: 2,
        video_remaining: 1,
        starts_at: inDays(-3),
        expires_at: inDays(27),
      },
      {
        payment_reference: `PAYCHANGU-${base}-0`,
        plan: 'Executive',
        text_remaining: 0,
        voice_remaining: 0,
        video_remaining: 0,
        starts_at: inDays(-60),
        expires_at: inDays(-30),
      },
    ],
  },
  { id: base + 2, first_name: 'Grace', last_name: 'Mwale', user_type: 'doctor', country: 'Malawi', timezone: 'Africa/Blantyre' },
  { id: base + 3, name: 'Ops Admin', user_type: 'admin', country: null },
];

const PLANS = [
  { name: 'Executive', text_credits: 10, voice_credits: 2, video_credits: 1, validity_days: 30, price_minor: 5_000_000, currency: 'MWK' },
];

describe('admin upsert API', () => {
  let t: TestHarness;
  let admin: { authorization: string };
  beforeAll(async () => {
    t = await createHarness();
    admin = await t.auth(await t.newAdmin());
  });
  afterAll(async () => t?.close());

  const importBatch = (users: unknown[], extra: Record<string, unknown> = {}) =>
    t.app.inject({ method: 'POST', url: '/api/v2/admin/users/import', headers: admin, payload: { plans: PLANS, users, ...extra } });
  const counts = async () => ({
    users: Number(
      (
        await t.ctx.db
          .selectFrom('users')
          .select((e) => e.fn.countAll().as('n'))
          .executeTakeFirstOrThrow()
      ).n,
    ),
    subs: Number(
      (
        await t.ctx.db
          .selectFrom('subscriptions')
          .select((e) => e.fn.countAll().as('n'))
          .executeTakeFirstOrThrow()
      ).n,
    ),
  });

  it('imports a batch keeping ids, twice without changing anything, and moves the id sequence past them', async () => {
    const records = exportRecords(70_000);
    const first = await importBatch(records);
    expect(first.statusCode).toBe(200);
    expect(first.json().data).toMatchObject({ total: 3, created: 3, updated: 0, unchanged: 0, failed: 0 });
    expect(first.json().data.rows[0].subscriptions).toEqual([
      { payment_reference: 'PAYCHANGU-70000-1', status: 'created' },
      { payment_reference: 'PAYCHANGU-70000-0', status: 'skipped_expired' },
    ]);
    const after1 = await counts();

    const patient = await t.ctx.db.selectFrom('users').selectAll().where('id', '=', 70_001).executeTakeFirstOrThrow();
    expect(patient).toMatchObject({ role: 'patient', name: 'Chikondi Phiri', country: 'Malawi', timezone: 'Africa/Blantyre' });
    const doctor = await t.ctx.db.selectFrom('users').select(['role', 'name']).where('id', '=', 70_002).executeTakeFirstOrThrow();
    expect(doctor).toEqual({ role: 'doctor', name: 'Grace Mwale' });

    const second = await importBatch(records);
    expect(second.json().data).toMatchObject({ total: 3, created: 0, updated: 0, unchanged: 3, failed: 0 });
    expect(second.json().data.rows[0].subscriptions[0]).toEqual({ payment_reference: 'PAYCHANGU-70000-1', status: 'unchanged' });
    expect(await counts()).toEqual(after1);

    // A user created here afterwards gets an id past the imported ones (API and core alike).
    const created = await t.app.inject({
      method: 'POST',
      url: '/api/v2/admin/users',
      headers: admin,
      payload: { role: 'patient', name: 'New Here' },
    });
    expect(created.json().data.id).toBeGreaterThan(70_003);
    expect((await createUser(t.ctx.db, { role: 'doctor', name: 'Another' })).id).toBeGreaterThan(created.json().data.id);

    // The credits brought over are what the patient has, and the books balance.
    const token = await new SignJWT({ user_type: 'patient' })
      .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
      .setSubject('70001')
      .setIssuedAt()
      .setExpirationTime('1h')
      .sign(new TextEncoder().encode(TEST_JWT_SECRET));
    const credits = await t.app.inject({ url: '/api/v2/me/credits', headers: { authorization: `Bearer ${token}` } });
    expect(credits.json().data.balances).toEqual({ text: 7, voice: 2, video: 1 });
    expect((await auditBilling(t.ctx.db)).ok).toBe(true);
  });

  it('updates a changed name, country or time zone, and nothing else', async () => {
    const records = exportRecords(71_000);
    await importBatch(records);
    const changed = structuredClone(records);
    changed[1]!.last_name = 'Mwale-Banda';
    changed[1]!.timezone = 'Africa/Lusaka';
    const res = await importBatch(changed);
    expect(res.json().data).toMatchObject({ created: 0, updated: 1, unchanged: 2, failed: 0 });
    expect(res.json().data.rows[1]).toMatchObject({ id: 71_002, status: 'updated' });
    const doctor = await t.ctx.db.selectFrom('users').select(['name', 'timezone']).where('id', '=', 71_002).executeTakeFirstOrThrow();
    expect(doctor).toEqual({ name: 'Grace Mwale-Banda', timezone: 'Africa/Lusaka' });
  });

  it('refuses a bad record with its own error and imports the rest; the bad one leaves nothing behind', async () => {
    const before = await counts();
    const res = await importBatch([
      { id: 72_001, name: 'Good One', user_type: 'patient' },
      { id: '0x10', name: 'Hex Id', user_type: 'patient' },
      { id: 72_003, name: 'Nul\u0000Name', user_type: 'patient' },
      {
        id: 72_004,
        name: 'No Such Plan',
        user_type: 'patient',
        subscriptions: [
          { payment_reference: 'X-72004', plan: 'Gold', text_remaining: 1, voice_remaining: 0, video_remaining: 0, expires_at: inDays(5) },
        ],
      },
      {
        id: 72_005,
        name: 'Doctor With Credits',
        user_type: 'doctor',
        subscriptions: [
          {
            payment_reference: 'X-72005',
            plan: 'Executive',
            text_remaining: 1,
            voice_remaining: 0,
            video_remaining: 0,
            expires_at: inDays(5),
          },
        ],
      },
      { id: 72_006, name: 'Bad Zone', user_type: 'patient', timezone: 'Mars/Olympus' },
      { id: 72_007, name: 'Nurse', user_type: 'nurse' },
      {
        id: 72_008,
        name: 'Bad Date',
        user_type: 'patient',
        subscriptions: [
          {
            payment_reference: 'X-72008',
            plan: 'Executive',
            text_remaining: 1,
            voice_remaining: 0,
            video_remaining: 0,
            expires_at: 'next week',
          },
        ],
      },
    ]);
    expect(res.statusCode).toBe(200);
    const report = res.json().data;
    expect(report).toMatchObject({ total: 8, created: 1, failed: 7 });
    for (const r of report.rows.slice(1)) {
      expect(r.status).toBe('failed');
      expect(r.error.error_code).toBe('VALIDATION_FAILED');
      expect(r.error.message).toEqual(expect.any(String));
    }
    expect(report.rows[3].error.message).toContain('plan "Gold" does not exist');
    expect(report.rows[4].error.message).toContain('patients');
    // The user of the record whose subscription failed was not created either.
    expect(await counts()).toEqual({ users: before.users + 1, subs: before.subs });
    expect(await t.ctx.db.selectFrom('users').select('id').where('id', 'in', [72_004, 72_005]).execute()).toEqual([]);
  });

  it('a dry run reports what would happen and writes nothing', async () => {
    const before = await counts();
    const res = await importBatch([{ id: 73_001, name: 'Dry', user_type: 'patient' }], { dry_run: true });
    expect(res.json().data).toMatchObject({ dry_run: true, created: 1, failed: 0 });
    expect(await counts()).toEqual(before);
  });

  it('PUT /api/v2/admin/users/{id} creates (201), then is a no-op (200 unchanged), then updates', async () => {
    const body = { role: 'doctor', name: 'Dr Put', country: 'Zambia', timezone: 'Africa/Lusaka' };
    const put = (b: object, headers = admin) => t.app.inject({ method: 'PUT', url: '/api/v2/admin/users/74001', headers, payload: b });
    const a = await put(body);
    expect(a.statusCode).toBe(201);
    expect(a.json().data).toMatchObject({ status: 'created', user: { id: 74_001, role: 'doctor', name: 'Dr Put' } });
    const b = await put(body);
    expect(b.statusCode).toBe(200);
    expect(b.json().data.status).toBe('unchanged');
    const c = await put({ ...body, name: 'Dr Put Banda' });
    expect(c.json().data).toMatchObject({ status: 'updated', user: { name: 'Dr Put Banda' } });
    const bad = await put({ ...body, timezone: 'Nowhere/Else' });
    expect(bad.statusCode).toBe(400);
    expect(bad.json().error_code).toBe('VALIDATION_FAILED');
    const asPatient = await put(body, await t.auth(await t.newPatient()));
    expect(asPatient.statusCode).toBe(403);
    const noToken = await t.app.inject({ method: 'PUT', url: '/api/v2/admin/users/74001', payload: body });
    expect(noToken.statusCode).toBe(401);
  });
});

// A process start costs 10–30 s on a loaded two-core machine: the real process runs where it
// matters (a JSON import twice, a CSV import once), the other runs call the same entry in-process.
describe('sessiongate users:import (a real process)', { timeout: 300_000 }, () => {
  let cli: CliDatabase;
  let dir: string;
  beforeAll(async () => {
    cli = await cliDatabase();
    dir = mkdtempSync(join(tmpdir(), 'sg-import-'));
  });
  afterAll(async () => {
    await cli?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const env = () => ({ ...cli.env, LOG_LEVEL: 'warn' });
  const rows = (db: Db) =>
    db.selectFrom('users').select(['id', 'role', 'name', 'country', 'timezone']).where('id', '>=', 80_000).orderBy('id').execute();

  it('imports a JSON export twice: ids kept, the second run changes nothing, the sequence is moved on', async () => {
    const file = join(dir, 'export.json');
    writeFileSync(file, JSON.stringify({ plans: PLANS, users: exportRecords(80_000) }));
    const first = await runCli(['users:import', '--file', file, '--json'], env());
    expect(first.stderr).toBe('');
    expect(first.code).toBe(0);
    expect(JSON.parse(first.stdout)).toMatchObject({ created: 3, failed: 0 });
    const second = await runCli(['users:import', '--file', file], env());
    expect(second.code).toBe(0);
    expect(second.stdout).toContain(
      '3 record(s): 0 created, 0 updated, 3 unchanged, 0 failed; subscriptions: 0 created, 1 unchanged, 1 skipped (expired).',
    );
    const imported = await cli.db(rows);
    expect(imported.map((u) => [u.id, u.role, u.name])).toEqual([
      [80_001, 'patient', 'Chikondi Phiri'],
      [80_002, 'doctor', 'Grace Mwale'],
      [80_003, 'admin', 'Ops Admin'],
    ]);
    const created = await cli.run(['users:create', '--role', 'patient', '--name', 'Fresh']);
    expect(Number(created.out.trim())).toBeGreaterThan(80_003);
  });

  it('imports a CSV export (one subscription per row, a user may repeat) twice, and a name change updates', async () => {
    const header =
      'id,first_name,last_name,email,user_type,country,timezone,payment_reference,plan,text_remaining,voice_remaining,video_remaining,starts_at,expires_at';
    const csv = (lastName: string) =>
      [
        header,
        `90001,Tiyamike,${lastName},t@example.test,patient,Malawi,Africa/Blantyre,CSV-1,Executive,3,1,0,2026-01-01 08:00:00,2099-01-01 00:00:00`,
        `90001,Tiyamike,${lastName},t@example.test,patient,Malawi,Africa/Blantyre,CSV-2,Executive,5,0,0,,2099-02-01T00:00:00Z`,
        `90002,"Mercy, MD",Kachale,m@example.test,doctor,Malawi,,,,,,,,`,
      ].join('\n');
    const file = join(dir, 'export.csv');
    writeFileSync(file, csv('Gondwe'));
    const first = await runCli(['users:import', '--file', file, '--json'], env());
    expect(first.code).toBe(0);
    expect(JSON.parse(first.stdout)).toMatchObject({ total: 3, created: 2, unchanged: 1, failed: 0 });
    const again = await cli.run(['users:import', '--file', file, '--format', 'csv', '--json']);
    expect(JSON.parse(again.out)).toMatchObject({ total: 3, created: 0, updated: 0, unchanged: 3, failed: 0 });
    writeFileSync(file, csv('Gondwe-Phiri'));
    const changed = await cli.run(['users:import', '--file', file, '--json']);
    expect(JSON.parse(changed.out)).toMatchObject({ updated: 1, unchanged: 2 });

    const users = (await cli.db(rows)).filter((u) => u.id >= 90_000);
    expect(users).toEqual([
      { id: 90_001, role: 'patient', name: 'Tiyamike Gondwe-Phiri', country: 'Malawi', timezone: 'Africa/Blantyre' },
      { id: 90_002, role: 'doctor', name: 'Mercy, MD Kachale', country: 'Malawi', timezone: 'UTC' },
    ]);
    const subs = await cli.db((db) =>
      db
        .selectFrom('subscriptions')
        .select(['payment_reference', 'text_remaining', 'voice_remaining', 'text_credits'])
        .where('patient_id', '=', 90_001)
        .orderBy('payment_reference')
        .execute(),
    );
    expect(subs).toEqual([
      { payment_reference: 'CSV-1', text_remaining: 3, voice_remaining: 1, text_credits: 3 },
      { payment_reference: 'CSV-2', text_remaining: 5, voice_remaining: 0, text_credits: 5 },
    ]);
  });

  it('exits 1 naming each bad row, keeps the good ones; --dry-run writes nothing; strict options', async () => {
    const file = join(dir, 'bad.json');
    writeFileSync(
      file,
      JSON.stringify([
        { id: 95_001, name: 'Fine', user_type: 'patient' },
        { id: '4e0', name: 'Exp', user_type: 'patient' },
      ]),
    );
    const dry = await cli.run(['users:import', '--file', file, '--dry-run']);
    expect(dry.code).toBe(1);
    expect(dry.out).toContain('Dry run (nothing written): 2 record(s): 1 created');
    expect(await cli.db((db) => db.selectFrom('users').select('id').where('id', '=', 95_001).execute())).toEqual([]);

    const res = await cli.run(['users:import', '--file', file]);
    expect(res.code).toBe(1);
    expect(res.err).toContain('row 2: VALIDATION_FAILED: id must be a whole number');
    expect(res.out).toContain('1 created, 0 updated, 0 unchanged, 1 failed');
    expect(await cli.db((db) => db.selectFrom('users').select('id').where('id', '=', 95_001).execute())).toEqual([{ id: 95_001 }]);

    expect((await cli.run(['users:import', '--file', file, '--bogus'])).code).toBe(3); // a bad option: the command did not run
    expect((await cli.run(['users:import'])).err).toContain('--file is required');
    expect((await cli.run(['users:import', '--file', join(dir, 'missing.json')])).err).toContain('cannot read');
    writeFileSync(join(dir, 'broken.json'), '{"users": [');
    expect((await cli.run(['users:import', '--file', join(dir, 'broken.json')])).err).toContain('is not a valid json export');
    const help = await cli.run(['users:import', '--help']);
    expect(help.code).toBe(0);
    expect(help.out).toContain('--dry-run');
  });
});
