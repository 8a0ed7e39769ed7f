/**
 * Events written by a CLI command reach the WebSocket clients of a separate `sessiongate serve`
 * process (PostgreSQL: the CLI publishes on the same LISTEN/NOTIFY bus as the worker), and the
 * outbox marks a notification delivered only together with its publication.
 */
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { signToken } from '../../src/lib/auth.js';
import { deliverPendingNotifications } from '../../src/modules/notifications/outbox.js';
import type { BusEvent, EventBus } from '../../src/realtime/bus.js';
import { TEST_JWT_SECRET, createHarness, type TestHarness } from '../helpers/app.js';
import { cliDatabase, type CliDatabase } from '../helpers/cli-run.js';
import { isPostgres } from '../helpers/db.js';
import { freePort, spawnCli, waitForStatus, type Spawned } from '../helpers/process.js';

type Frame = { type: string; data?: Record<string, unknown> };

describe.skipIf(!isPostgres)('a CLI command and a separate serve process', () => {
  let cli: CliDatabase;
  let serve: Spawned;
  let baseUrl = '';

  beforeAll(async () => {
    cli = await cliDatabase({ LOG_LEVEL: 'error' });
    const port = await freePort();
    baseUrl = `127.0.0.1:${port}`;
    serve = spawnCli(['serve'], { ...cli.env, PORT: String(port), LOG_LEVEL: 'warn' } as Record<string, string | undefined>);
    if (!(await waitForStatus(`http://${baseUrl}/health/ready`, 200, 120_000))) throw new Error(`serve did not start:\n${serve.stderr()}`);
  }, 180_000);

  afterAll(async () => {
    if (serve && serve.child.exitCode === null) {
      serve.child.kill('SIGTERM');
      await Promise.race([serve.exited, new Promise((r) => setTimeout(r, 15_000))]);
      if (serve.child.exitCode === null) serve.child.kill('SIGKILL');
    }
    await cli?.close();
  }, 30_000);

  it('appointments:auto-start-sessions run from the CLI: the patient and the doctor connected to serve get "session started"', async () => {
    const { patient, doctor, appointment } = await cli.db(async (db) => {
      const p = (await sql<{ id: number }>`insert into users (role, name) values ('patient', 'P') returning id`.execute(db)).rows[0]!.id;
      const d = (await sql<{ id: number }>`insert into users (role, name) values ('doctor', 'D') returning id`.execute(db)).rows[0]!.id;
      const a = (
        await sql<{ id: number }>`
          insert into appointments (patient_id, doctor_id, appointment_type, status, scheduled_at)
          values (${p}, ${d}, 'text', 'confirmed', now() - interval '1 minute') returning id`.execute(db)
      ).rows[0]!.id;
      return { patient: p, doctor: d, appointment: a };
    });
    const open = async (sub: number, role: 'patient' | 'doctor') => {
      const token = await signToken(TEST_JWT_SECRET, { sub, role }, 600);
      const ws = new WebSocket(`ws://${baseUrl}/api/v2/ws`, ['bearer', token]);
      const frames: Frame[] = [];
      const ready = new Promise<void>((resolve, reject) => {
        ws.on('message', (raw) => {
          const f = JSON.parse(raw.toString()) as Frame;
          frames.push(f);
          if (f.type === 'ready') resolve();
        });
        ws.once('error', reject);
      });
      await ready;
      return { ws, frames };
    };
    const p = await open(patient, 'patient');
    const d = await open(doctor, 'doctor');
    try {
      const r = await cli.run(['appointments:auto-start-sessions', '--json']);
      expect(r.code, r.err).toBe(0);
      expect(JSON.parse(r.out)).toMatchObject({ created_count: 1, notifications_delivered: 2 });

      for (const c of [p, d]) {
        await expect.poll(() => c.frames.find((f) => f.type === 'notification'), { timeout: 15_000 }).toBeDefined();
        const n = c.frames.find((f) => f.type === 'notification')!;
        expect(n.data).toMatchObject({ kind: 'session.started', payload: { appointment_id: appointment, modality: 'text' } });
      }
      const outbox = await cli.db((db) =>
        sql<{ delivered: boolean }>`select delivered_at is not null as delivered from notification_outbox`.execute(db),
      );
      expect(outbox.rows).toEqual([{ delivered: true }]);
    } finally {
      p.ws.terminate();
      d.ws.terminate();
    }
  }, 120_000);
});

describe('the outbox marks a notification delivered only with its publication', () => {
  let t: TestHarness;
  beforeAll(async () => {
    t = await createHarness();
  });
  afterAll(async () => t?.close());

  it('a bus that cannot send leaves the row undelivered (retried later); a working bus delivers it once', async () => {
    const patient = await t.newPatient();
    const doctor = await t.newDoctor();
    await sql`
      insert into notification_outbox (dedupe_key, recipient_id, also_notify, kind, payload)
      values ('test:outbox:1', ${patient.id}, array[${doctor.id}]::bigint[], 'session.started', '{"session_id": 1}'::jsonb)`.execute(
      t.ctx.db,
    );
    const state = async () =>
      (
        await sql<{ delivered: boolean; notifications: number }>`
          select (select delivered_at is not null from notification_outbox where dedupe_key = 'test:outbox:1') as delivered,
                 (select count(*)::int from notifications) as notifications`.execute(t.ctx.db)
      ).rows[0];

    const broken: EventBus = {
      publish: async () => {},
      publishInTransaction: async () => {
        throw new Error('NOTIFY failed');
      },
      subscribe: () => () => {},
      close: async () => {},
    };
    await expect(deliverPendingNotifications({ ...t.ctx, bus: broken })).rejects.toThrow('NOTIFY failed');
    expect(await state()).toEqual({ delivered: false, notifications: 0 });

    const got: BusEvent[] = [];
    const off = t.ctx.bus.subscribe((e) => got.push(e));
    try {
      expect(await deliverPendingNotifications(t.ctx)).toBe(2);
      expect(await state()).toEqual({ delivered: true, notifications: 2 });
      await expect.poll(() => got.filter((e) => e.type === 'notification').length).toBe(2);
      expect(await deliverPendingNotifications(t.ctx)).toBe(0);
    } finally {
      off();
    }
  });
});
