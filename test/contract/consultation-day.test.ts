/**
 * A consultation day as the mobile app in the stores lives it, written from the original client
 * contract, not from the implementation: the app's own
 * REST calls over a real socket (`fetch` against the listening server), with its quirks — dates and
 * times in the patient's zone, ids as strings and as `text_session_N`, body-less JSON POSTs,
 * unknown body fields — and its WebSocket protocol (`/chat-signaling`, `/call-signaling`,
 * sub-protocol `no-compression`, flat `chat-message` frames, call signalling frames).
 *
 * Phase 1 (every flag off): book, accept, the appointment becomes a session, chat with an image, a
 * voice note and a reply, the doctor-response timer, end by the patient, billing by the server,
 * wallet and credits right; a video call (start, answer, signalling, end) and an instant voice call
 * the doctor declines. Phases 2 and 3 (flags moved the way an operator moves them, SIGHUP-style,
 * in the same running server): the appointment-keyed calls fail with the documented codes and a
 * message a person can read, everything session-keyed keeps working, and no call leaves a session
 * running.
 */
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import type { User } from '../../src/db/types.js';
import { createHarness, type TestHarness } from '../helpers/app.js';

type Json = Record<string, any>;
type Frame = Json & { type: string };

let t: TestHarness;
let base: string;
let patient: User;
let doctor: User;
const ZONE = 'Africa/Blantyre';

beforeAll(async () => {
  t = await createHarness();
  await t.app.listen({ port: 0, host: '127.0.0.1' });
  base = `127.0.0.1:${(t.app.server.address() as AddressInfo).port}`;
  patient = await t.newPatient({ name: 'Chikondi Banda', country: 'Malawi', timezone: ZONE });
  doctor = await t.newDoctor({ name: 'Dr Mphatso Phiri', country: 'Malawi', timezone: ZONE });
  await t.giveCredits(patient, { text: 3, voice: 2, video: 2 });
});
afterAll(async () => t?.close());

/** The app's client: Bearer token, JSON, `X-App-Version`/`X-Platform`; returns status and body. */
async function call(
  who: User,
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: Json }> {
  const res = await fetch(`http://${base}/api${path}`, {
    method,
    headers: {
      authorization: `Bearer ${await t.token(who)}`,
      accept: 'application/json',
      'x-app-version': '1.1.3',
      'x-platform': 'android',
      ...(body !== undefined || method === 'POST' ? { 'content-type': 'application/json' } : {}),
      ...headers,
    },
    // A POST without `body` goes out as the app sends it: JSON content type, empty body.
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  expect(res.headers.get('content-type') ?? '', `${method} ${path} answers JSON`).toMatch(/json/);
  return { status: res.status, body: JSON.parse(text) as Json };
}

/** The patient's wall clock `minutes` from now, as the booking screen sends it. */
function wallClock(minutes: number): { appointment_date: string; appointment_time: string } {
  const parts = Object.fromEntries(
    new Intl.DateTimeFormat('en-GB', {
      timeZone: ZONE,
      year: 'numeric',
      month: '2-digit',
      day: '2-digit',
      hour: '2-digit',
      minute: '2-digit',
      hourCycle: 'h23',
    })
      .formatToParts(new Date(Date.now() + minutes * 60_000))
      .map((p) => [p.type, p.value]),
  );
  return {
    appointment_date: `${parts['year']}-${parts['month']}-${parts['day']}`,
    appointment_time: `${parts['hour']}:${parts['minute']}`,
  };
}

/** An app socket: the query the app sends, the `no-compression` sub-protocol, frames collected. */
class AppSocket {
  readonly frames: Frame[] = [];
  private waiters: { pred: (f: Frame) => boolean; resolve: (f: Frame) => void }[] = [];
  private constructor(readonly ws: WebSocket) {
    ws.on('message', (raw) => {
      const f = JSON.parse(raw.toString()) as Frame;
      this.frames.push(f);
      for (const w of [...this.waiters]) {
        if (w.pred(f)) {
          this.waiters.splice(this.waiters.indexOf(w), 1);
          w.resolve(f);
        }
      }
    });
  }
  static async open(path: string, room: string, who: User): Promise<AppSocket> {
    const query = new URLSearchParams({ appointmentId: room, userId: String(who.id), authToken: await t.token(who) });
    const ws = new WebSocket(`ws://${base}${path}?${query}`, ['no-compression']);
    const s = new AppSocket(ws);
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
      ws.once('error', reject);
    });
    expect(ws.protocol).toBe('no-compression');
    await s.next((f) => f.type === 'connection-established');
    return s;
  }
  next(pred: (f: Frame) => boolean, ms = 5_000): Promise<Frame> {
    const seen = this.frames.find(pred);
    if (seen) {
      this.frames.splice(this.frames.indexOf(seen), 1);
      return Promise.resolve(seen);
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`no matching frame within ${ms} ms; got ${JSON.stringify(this.frames.map((f) => f.type))}`)),
        ms,
      );
      this.waiters.push({
        pred,
        resolve: (f) => {
          clearTimeout(timer);
          resolve(f);
        },
      });
    });
  }
  send(frame: Json) {
    this.ws.send(JSON.stringify(frame));
  }
  close() {
    this.ws.close(1000);
  }
}

/** The app reads a chat frame's message as `data.message ‖ data`, in snake or camel case. */
const messageOf = (f: Frame): Json => (f['message'] && typeof f['message'] === 'object' ? f['message'] : f);
const textOf = (m: Json) => m['message'] ?? m['content'];

const JPEG = Buffer.concat([
  Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10]),
  Buffer.from('JFIF\0'),
  Buffer.alloc(200, 7),
  Buffer.from([0xff, 0xd9]),
]);
const M4A = Buffer.concat([Buffer.from([0, 0, 0, 0x20]), Buffer.from('ftypM4A '), Buffer.alloc(300, 3)]);

async function upload(
  who: User,
  path: string,
  bytes: Buffer,
  type: string,
  name: string,
  appointmentId: string,
): Promise<{ status: number; body: Json }> {
  const form = new FormData();
  form.append('file', new Blob([bytes], { type }), name);
  form.append('appointment_id', appointmentId);
  const res = await fetch(`http://${base}/api${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${await t.token(who)}` },
    body: form,
  });
  return { status: res.status, body: (await res.json()) as Json };
}

/** Books, lets the doctor accept it, and returns the appointment id (a number, as the app keeps it). */
async function bookAndAccept(type: 'text' | 'voice' | 'video', inMinutes: number): Promise<number> {
  const booked = await call(patient, 'POST', '/appointments', {
    doctor_id: doctor.id,
    ...wallClock(inMinutes),
    user_timezone: ZONE,
    appointment_type: type,
    reason: 'Headache for three days',
  });
  expect(booked.status, JSON.stringify(booked.body)).toBe(201);
  expect(booked.body['success']).toBe(true);
  const id = Number(booked.body['data']['id']);
  expect(Number.isInteger(id)).toBe(true);

  const requests = await call(doctor, 'GET', '/appointments');
  const listed = (requests.body['data']['data'] ?? requests.body['data']) as Json[];
  const mine = listed.find((a) => a['id'] === id)!;
  expect(mine['status']).toBe(0); // a JSON number: the doctor dashboard compares === 0
  expect(mine['appointment_date']).toBe(wallClock(inMinutes).appointment_date);

  const accepted = await call(doctor, 'PATCH', `/doctor/appointments/${id}/status`, { status: 'confirmed' });
  expect(accepted.status).toBe(200);
  expect(accepted.body['success']).toBe(true);
  const after = await call(patient, 'GET', '/appointments');
  expect(((after.body['data']['data'] ?? after.body['data']) as Json[]).find((a) => a['id'] === id)!['status']).toBe(1);
  return id;
}

describe('phase 1: every call of a consultation day works for patient and doctor', () => {
  let appointmentId: number;
  let sessionId: number;
  let patientChat: AppSocket;
  let doctorChat: AppSocket;

  it('books a text appointment in the patient’s wall clock; the doctor accepts it; it becomes a session', async () => {
    appointmentId = await bookAndAccept('text', 10);
    const details = await call(patient, 'GET', `/appointments/${appointmentId}`);
    expect(details.body['data']).toMatchObject({ doctor_name: expect.any(String), appointment_type: 'text' });
    expect(['1', 'confirmed']).toContain(String(details.body['data']['status']));

    // The converter: `POST /appointments/{id}/start-session` with `X-User-Timezone` and `{modality}`.
    const started = await call(
      patient,
      'POST',
      `/appointments/${appointmentId}/start-session`,
      { modality: 'text' },
      { 'x-user-timezone': ZONE },
    );
    expect(started.status).toBeLessThan(300);
    expect(started.body['success']).toBe(true);
    sessionId = Number(started.body['data']['session_id']);
    expect(sessionId).toBeGreaterThan(0);

    const session = await call(patient, 'GET', `/text-sessions/${sessionId}`);
    expect(session.body['data']['status']).toBe('waiting_for_doctor');
    // The list now names the session: a tap opens chat `text_session_{session_id}`.
    const list = await call(patient, 'GET', '/appointments');
    expect(((list.body['data']['data'] ?? list.body['data']) as Json[]).find((a) => a['id'] === appointmentId)!['session_id']).toBe(
      sessionId,
    );
  });

  it('chats over REST and the chat socket: text, image, voice note and a reply; the doctor-response timer runs and stops', async () => {
    const room = `text_session_${sessionId}`;
    patientChat = await AppSocket.open('/chat-signaling', room, patient);
    doctorChat = await AppSocket.open('/chat-signaling', room, doctor);

    const first = await call(patient, 'POST', `/chat/${room}/messages`, {
      message: 'Good morning doctor',
      message_type: 'text',
      temp_id: `msg_${Date.now()}_a1`,
    });
    expect(first.status).toBe(200);
    expect(first.body['success']).toBe(true);
    expect(first.body['data']['id']).toBeDefined();
    expect(textOf(messageOf(await doctorChat.next((f) => f.type === 'chat-message')))).toBe('Good morning doctor');

    // The patient's first message starts the doctor's five minutes.
    const waiting = await call(patient, 'GET', `/text-sessions/${sessionId}/check-response`);
    expect(waiting.body).toMatchObject({ success: true, status: 'waiting' });
    expect(typeof waiting.body['timeRemaining']).toBe('number');
    expect(waiting.body['timeRemaining']).toBeGreaterThan(0);
    expect(typeof waiting.body['doctor_response_deadline']).toBe('string');

    // An image: upload, then the message with the app's own `id` field.
    const image = await upload(patient, '/upload/chat-image', JPEG, 'image/jpeg', `image_${Date.now()}_x1.jpg`, String(sessionId));
    expect(image.status, JSON.stringify(image.body)).toBeLessThan(300);
    const imageUrl = image.body['data']['media_url'] as string;
    expect(imageUrl).toMatch(/^https?:\/\//);
    const imageMessage = await call(patient, 'POST', `/chat/${room}/messages`, {
      id: `msg_${Date.now()}_i1`,
      message: '🖼️ Image',
      message_type: 'image',
      media_url: imageUrl,
      temp_id: `msg_${Date.now()}_i1`,
    });
    expect(imageMessage.body['success']).toBe(true);
    // The URL is absolute (PUBLIC_BASE_URL, else https + Host); here the server speaks plain HTTP.
    const served = await fetch(`http://${base}${new URL(imageUrl).pathname}`);
    expect(served.status).toBe(200);
    expect(Buffer.from(await served.arrayBuffer()).equals(JPEG)).toBe(true);

    // A voice note.
    const voice = await upload(patient, '/upload/voice-message', M4A, 'audio/mp4', `voice_${Date.now()}_v1.m4a`, String(sessionId));
    expect(voice.status, JSON.stringify(voice.body)).toBeLessThan(300);
    const voiceUrl = (voice.body['data']?.['media_url'] ?? voice.body['data']?.['url'] ?? voice.body['media_url']) as string;
    const voiceMessage = await call(patient, 'POST', `/chat/${room}/messages`, {
      message: '🎤 Voice message',
      message_type: 'voice',
      media_url: voiceUrl,
      temp_id: `msg_${Date.now()}_v1`,
    });
    expect(voiceMessage.body['success']).toBe(true);

    // The doctor answers with a reply (the app's `reply_to` object): the session becomes active.
    const reply = await call(doctor, 'POST', `/chat/${room}/messages`, {
      message: 'Good morning, how long has it hurt?',
      message_type: 'text',
      temp_id: `msg_${Date.now()}_d1`,
      reply_to: { messageId: String(first.body['data']['id']), message: 'Good morning doctor', senderName: 'Chikondi Banda' },
    });
    expect(reply.body['success']).toBe(true);
    expect(
      textOf(
        messageOf(
          await patientChat.next(
            (f) =>
              f.type === 'chat-message' &&
              textOf(messageOf(f)) !== undefined &&
              messageOf(f)['sender_id'] !== patient.id &&
              messageOf(f)['senderId'] !== patient.id,
          ),
        ),
      ),
    ).toBe('Good morning, how long has it hurt?');
    const active = await call(patient, 'GET', `/text-sessions/${sessionId}/check-response`);
    expect(active.body['status']).toBe('active');
    expect((await call(doctor, 'GET', `/text-sessions/${sessionId}`)).body['data']['status']).toBe('active');

    // Typing and receipts relay to the other participant.
    doctorChat.send({ type: 'typing-indicator', appointmentId: room, isTyping: true, senderId: doctor.id });
    expect(await patientChat.next((f) => f.type === 'typing-indicator')).toMatchObject({ isTyping: true });

    // The history the app re-reads on every (re)connect: all four, with delivery state.
    const history = await call(patient, 'GET', `/chat/${room}/messages`);
    const messages = history.body['data'] as Json[];
    expect(messages.map((m) => m['message_type'])).toEqual(['text', 'image', 'voice', 'text']);
    for (const m of messages) {
      expect(typeof m['delivery_status']).toBe('string');
      expect(Array.isArray(m['read_by'])).toBe(true);
      expect(typeof m['created_at']).toBe('string');
    }
    expect(messages[1]!['media_url']).toBe(imageUrl);
  });

  it('the patient ends with a body-less JSON POST; the server bills; wallet and credits are right', async () => {
    const ended = await call(patient, 'POST', `/text-sessions/${sessionId}/end`);
    expect(ended.status).toBe(200);
    expect(ended.body['success']).toBe(true);
    expect(await doctorChat.next((f) => f.type === 'session-ended')).toBeDefined();
    expect((await call(doctor, 'GET', `/text-sessions/${sessionId}`)).body['data']['status']).toBe('ended');
    patientChat.close();
    doctorChat.close();

    // One unit (under ten minutes): 3500.00 MWK to a doctor in Malawi; one text credit spent.
    const wallet = await call(doctor, 'GET', '/doctor/wallet');
    expect(Number(wallet.body['data']['balance'])).toBe(3500);
    const subscription = await call(patient, 'GET', '/subscription');
    expect(subscription.body['data']['textSessionsRemaining']).toBe(2);
    expect(subscription.body['data']['isActive']).toBe(true);
  });

  it('a booked video call: start, ring, answer, offer/answer/ICE relayed, end by the doctor', async () => {
    const id = await bookAndAccept('video', 5);
    const started = await call(patient, 'POST', '/call-sessions/start', {
      call_type: 'video',
      appointment_id: String(id),
      reason: 'Follow-up',
    });
    expect(started.status, JSON.stringify(started.body)).toBeLessThan(300);
    expect(started.body['success']).toBe(true);
    const key = String(started.body['data']?.['appointment_id'] ?? started.body['appointment_id']);
    expect(typeof (started.body['data']?.['appointment_id'] ?? started.body['appointment_id'])).toBe('string');

    const caller = await AppSocket.open('/call-signaling', key, patient);
    const callee = await AppSocket.open('/call-signaling', key, doctor);
    caller.send({
      type: 'offer',
      offer: { type: 'offer', sdp: 'v=0 patient-offer' },
      senderId: patient.id,
      appointmentId: key,
      userId: patient.id,
      userType: 'patient',
    });
    expect((await callee.next((f) => f.type === 'offer'))['offer']).toMatchObject({ sdp: 'v=0 patient-offer' });

    const answered = await call(doctor, 'POST', '/call-sessions/answer', {
      appointment_id: key,
      caller_id: String(doctor.id),
      action: 'answered',
    });
    expect(answered.status).toBeLessThan(300);
    callee.send({
      type: 'answer',
      answer: { type: 'answer', sdp: 'v=0 doctor-answer' },
      senderId: doctor.id,
      appointmentId: key,
      userId: doctor.id,
    });
    expect((await caller.next((f) => f.type === 'answer'))['answer']).toMatchObject({ sdp: 'v=0 doctor-answer' });
    caller.send({
      type: 'ice-candidate',
      candidate: { candidate: 'candidate:1 1 udp 1 10.0.0.1 5000 typ host' },
      senderId: patient.id,
      appointmentId: key,
    });
    expect(await callee.next((f) => f.type === 'ice-candidate')).toBeDefined();
    // Nobody hears their own signalling back.
    expect(caller.frames.some((f) => f.type === 'offer')).toBe(false);

    const status = await call(patient, 'GET', `/call-sessions/${key}/status`);
    expect(status.body['data']).toMatchObject({ is_connected: true });

    const ended = await call(doctor, 'POST', '/call-sessions/end', {
      call_type: 'video',
      appointment_id: key,
      session_duration: 45,
      was_connected: true,
    });
    expect(ended.status).toBeLessThan(300);
    const after = await call(patient, 'GET', `/call-sessions/${key}/status`);
    expect(after.body['data'] === null || after.body['data']['status'] === 'ended').toBe(true);
    caller.close();
    callee.close();
    // Connected under a minute: free; the video credits stand.
    expect((await call(patient, 'GET', '/subscription')).body['data']['videoCallsRemaining']).toBe(2);
  });

  it('an instant voice call the doctor declines ends it, charging nothing', async () => {
    const key = `direct_session_${Date.now()}`;
    const started = await call(patient, 'POST', '/call-sessions/start', { call_type: 'voice', appointment_id: key, doctor_id: doctor.id });
    expect(started.status, JSON.stringify(started.body)).toBeLessThan(300);
    expect(started.body['success']).toBe(true);
    const declined = await call(doctor, 'POST', '/call-sessions/decline', {
      appointment_id: key,
      caller_id: String(doctor.id),
      reason: 'declined_by_receiver',
      declined_by: 'doctor',
    });
    expect(declined.status).toBeLessThan(300);
    const after = await call(patient, 'GET', `/call-sessions/${key}/status`);
    expect(after.body['data'] === null || after.body['data']['status'] === 'ended').toBe(true);
    expect((await call(patient, 'GET', '/subscription')).body['data']['voiceCallsRemaining']).toBe(2);
  });
});

describe('phases 2 and 3: appointment-keyed calls fail as documented, session-keyed calls keep working', () => {
  for (const phase of [2, 3] as const) {
    it(`phase ${phase}`, async () => {
      t.flags.set({
        ENFORCE_SESSION_GATED_CHAT: true,
        ENFORCE_SESSION_GATED_BILLING: true,
        DISABLE_LEGACY_APPOINTMENT_TRIGGERS: phase === 3,
        ALLOW_LEGACY_APPOINTMENT_CHAT: false,
      });
      const id = await bookAndAccept('text', 10);
      const noSession = await call(patient, 'POST', `/chat/${id}/messages`, {
        message: 'Are you there?',
        message_type: 'text',
        temp_id: `msg_${Date.now()}_n${phase}`,
      });
      expect(noSession.status).toBe(403);
      expect(noSession.body).toMatchObject({ success: false, error_code: 'SESSION_NOT_READY' });
      expect(noSession.body['message']).toMatch(/\w+ \w+ \w+/); // a sentence the app can show

      const started = await call(patient, 'POST', `/appointments/${id}/start-session`, { modality: 'text' });
      const sessionId = Number(started.body['data']['session_id']);

      // By appointment: blocked, with the session to use and words a person understands.
      const byAppointment = await call(patient, 'POST', `/chat/${id}/messages`, {
        message: 'Hello?',
        message_type: 'text',
        temp_id: `msg_${Date.now()}_b${phase}`,
      });
      expect(byAppointment.status).toBe(400);
      expect(byAppointment.body).toMatchObject({ success: false, error_code: 'SESSION_CONTEXT_REQUIRED' });
      expect(byAppointment.body['message']).toMatch(/\w+ \w+ \w+/);
      const billing = await call(patient, 'POST', '/text-appointments/process-deduction', {
        appointment_id: id,
        sessions_to_deduct: 1,
        reason: 'interval',
      });
      expect(billing.status).toBe(400);
      expect(billing.body).toMatchObject({ success: false, error_code: 'SESSION_BILLING_REQUIRED' });
      expect(billing.body['message']).toMatch(/\w+ \w+ \w+/);

      // By session: everything keeps working, and the end really ends it.
      const room = `text_session_${sessionId}`;
      expect(
        (
          await call(patient, 'POST', `/chat/${room}/messages`, {
            message: 'Hello doctor',
            message_type: 'text',
            temp_id: `msg_${Date.now()}_s${phase}`,
          })
        ).body['success'],
      ).toBe(true);
      expect(
        (
          await call(doctor, 'POST', `/chat/${room}/messages`, {
            message: 'Hello, I am here',
            message_type: 'text',
            temp_id: `msg_${Date.now()}_t${phase}`,
          })
        ).body['success'],
      ).toBe(true);
      expect((await call(patient, 'GET', `/chat/${room}/messages`)).body['data']).toHaveLength(2);
      const ended = await call(patient, 'POST', `/text-sessions/${sessionId}/end`);
      expect(ended.status).toBe(200);
      expect((await call(patient, 'GET', `/text-sessions/${sessionId}`)).body['data']['status']).toBe('ended');
      const live = await call(patient, 'GET', '/text-sessions/active-sessions');
      expect((live.body['data'] as Json[]).filter((s) => s['id'] === sessionId)).toHaveLength(0);
    });
  }
});
