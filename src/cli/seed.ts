/**
 * Demo data for a newcomer: an admin, two doctors (one in Malawi, paid in MWK), two patients
 * with credits, and appointments — one due now, so the worker starts a session within a minute.
 * Re-running finds the existing demo users instead of creating more.
 */
import type { Db, User } from '../db/types.js';
import { importAppointment } from '../modules/appointments/service.js';
import { createUser, grantSubscription, upsertPlan } from '../modules/users/service.js';

export interface SeedResult {
  created: boolean;
  users: Record<'admin' | 'doctorMalawi' | 'doctorUs' | 'patient' | 'patient2', User>;
  appointments: { dueNow: number | null; tomorrow: number | null };
}

const DEMO = {
  admin: { role: 'admin', name: 'Demo Admin', country: null, timezone: 'UTC' },
  doctorMalawi: { role: 'doctor', name: 'Dr. Chikondi Banda', country: 'Malawi', timezone: 'Africa/Blantyre' },
  doctorUs: { role: 'doctor', name: 'Dr. Alex Morgan', country: 'United States', timezone: 'America/New_York' },
  patient: { role: 'patient', name: 'Thandiwe Phiri', country: 'Malawi', timezone: 'Africa/Blantyre' },
  patient2: { role: 'patient', name: 'Sam Okafor', country: 'Nigeria', timezone: 'Africa/Lagos' },
} as const;

export async function seedDemo(db: Db, now: Date): Promise<SeedResult> {
  const existing = await db
    .selectFrom('users')
    .selectAll()
    .where('name', '=', DEMO.admin.name)
    .where('role', '=', 'admin')
    .executeTakeFirst();
  const users = {} as SeedResult['users'];
  if (existing) {
    for (const [key, spec] of Object.entries(DEMO) as [keyof typeof DEMO, (typeof DEMO)[keyof typeof DEMO]][]) {
      users[key] = await db
        .selectFrom('users')
        .selectAll()
        .where('name', '=', spec.name)
        .where('role', '=', spec.role)
        .executeTakeFirstOrThrow();
    }
    return { created: false, users, appointments: { dueNow: null, tomorrow: null } };
  }
  for (const [key, spec] of Object.entries(DEMO) as [keyof typeof DEMO, (typeof DEMO)[keyof typeof DEMO]][]) {
    users[key] = await createUser(db, { ...spec });
  }
  const basic = await upsertPlan(db, {
    name: 'Basic',
    text_credits: 3,
    voice_credits: 1,
    video_credits: 1,
    validity_days: 30,
    price_minor: 1000,
    currency: 'USD',
  });
  const plus = await upsertPlan(db, {
    name: 'Plus',
    text_credits: 10,
    voice_credits: 5,
    video_credits: 5,
    validity_days: 90,
    price_minor: 2500,
    currency: 'USD',
  });
  await grantSubscription(db, { user_id: users.patient.id, plan_id: basic.id, payment_reference: 'demo-basic-1' }, now);
  await grantSubscription(db, { user_id: users.patient.id, plan_id: plus.id, payment_reference: 'demo-plus-1' }, now);
  await grantSubscription(db, { user_id: users.patient2.id, plan_id: basic.id, payment_reference: 'demo-basic-2' }, now);

  const minute = 60_000;
  const dueNow = await importAppointment(db, {
    patient_id: users.patient.id,
    doctor_id: users.doctorMalawi.id,
    appointment_type: 'text',
    status: 'confirmed',
    scheduled_at: new Date(now.getTime() - minute).toISOString(),
    reason: 'Follow-up on test results',
  });
  const tomorrow = await importAppointment(db, {
    patient_id: users.patient2.id,
    doctor_id: users.doctorUs.id,
    appointment_type: 'video',
    status: 'pending',
    scheduled_at: new Date(now.getTime() + 24 * 60 * minute).toISOString(),
    reason: 'Skin rash',
  });
  await importAppointment(db, {
    patient_id: users.patient2.id,
    doctor_id: users.doctorMalawi.id,
    appointment_type: 'voice',
    status: 'confirmed',
    scheduled_at: new Date(now.getTime() + 2 * 60 * minute).toISOString(),
  });
  return { created: true, users, appointments: { dueNow: dueNow.id, tomorrow: tomorrow.id } };
}
