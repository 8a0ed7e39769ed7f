/**
 * Fixtures shared by the chat, legacy-chat and realtime tests: sessions started through the real
 * API, and short request helpers.
 */
import type { User } from '../../src/db/types.js';
import type { TestHarness } from '../helpers/app.js';

export interface StartedSession {
  appointmentId: number;
  patient: User;
  doctor: User;
  sessionId: number;
  context: string;
}

/** A confirmed, due appointment turned into a session through `POST …/start-session`. */
export async function startSession(t: TestHarness, opts: { type?: 'text' | 'voice' | 'video'; patient?: User; doctor?: User } = {}): Promise<StartedSession> {
  const appt = await t.newAppointment({ appointment_type: opts.type ?? 'text', patient: opts.patient, doctor: opts.doctor });
  await t.giveCredits(appt.patient, { text: 5, voice: 5, video: 5 });
  const res = await t.app.inject({ method: 'POST', url: `/api/v2/appointments/${appt.id}/start-session`, headers: await t.auth(appt.patient) });
  if (res.statusCode !== 201 && res.statusCode !== 200) throw new Error(`start-session failed: ${res.statusCode} ${res.body}`);
  const s = res.json().data as { id: number; session_context: string };
  return { appointmentId: appt.id, patient: appt.patient, doctor: appt.doctor, sessionId: s.id, context: s.session_context };
}

let cid = 0;
export const nextClientId = () => `c-${process.pid}-${++cid}`;

export async function send(
  t: TestHarness,
  user: Pick<User, 'id' | 'role'>,
  context: string,
  body: Partial<{ client_message_id: string; type: string; body: string; media_url: string | null; reply_to_message_id: number | null }> = {},
) {
  return t.app.inject({
    method: 'POST',
    url: `/api/v2/sessions/${context}/messages`,
    headers: await t.auth(user),
    payload: { client_message_id: nextClientId(), type: 'text', body: 'hello', ...body },
  });
}

/** Sends and expects a stored message; returns it. */
export async function sent(t: TestHarness, user: Pick<User, 'id' | 'role'>, context: string, body: Parameters<typeof send>[3] = {}) {
  const res = await send(t, user, context, body);
  if (res.statusCode !== 201 && res.statusCode !== 200) throw new Error(`send failed: ${res.statusCode} ${res.body}`);
  return res.json().data as { id: number; body: string; client_message_id: string; session_id: number; sender_id: number };
}

/** Reads one sample of a Prometheus counter from /metrics (0 when absent). */
export async function metricValue(t: TestHarness, name: string, labels: Record<string, string>): Promise<number> {
  const res = await t.app.inject({ url: '/metrics' });
  const want = Object.entries(labels)
    .map(([k, v]) => `${k}="${v}"`)
    .sort();
  for (const line of res.body.split('\n')) {
    if (want.length === 0 && line.startsWith(`${name} `)) return Number(line.slice(name.length + 1).trim());
    if (!line.startsWith(`${name}{`)) continue;
    const inner = line.slice(name.length + 1, line.indexOf('}'));
    const have = inner.split(',').sort();
    if (want.every((w) => have.includes(w)) && have.length === want.length) return Number(line.slice(line.indexOf('}') + 1).trim());
  }
  return 0;
}
