/**
 * What an app socket's `appointmentId` names, for its user: a session — whichever
 * id form named it: `57`, `call_session:9` and `direct_session_…` of one call are one — or,
 * before an appointment has a session, the appointment. Read at the handshake and again before
 * every frame the socket sends, so a frame acts on the session as it is now.
 */
import type { AppContext } from '../../context.js';
import type { Appointment, Session } from '../../db/types.js';
import { invalid, notFound } from '../../lib/errors.js';
import { assertParticipant, type Actor, type Parties } from '../../modules/access.js';
import { getAppointment } from '../../modules/appointments/service.js';
import type { ChatScope } from '../../modules/chat/repository.js';
import { appointmentScope, sessionScope } from '../../modules/chat/service.js';
import { formatSessionContext, parsePositiveId, parseSessionContext } from '../../modules/session-context.js';
import { modalityForAppointmentType, sessionKindForModality } from '../../modules/appointments/modality.js';
import { sessionByContext, sessionByRoutingKey } from '../../modules/sessions/service.js';
import type { Topic } from '../../gateway/socket-hub.js';

export interface Target {
  /** The conversation, as the core's chat service names it (its status is the session's, or the appointment's). */
  scope: ChatScope;
  /** Named by a `direct_session_*` key: a call routing key, no chat through it. */
  direct: boolean;
}

const ofSession = (s: Session, direct: boolean): Target => ({ scope: sessionScope(s), direct });

/** The parties of a target (the socket hub checks them before delivering a session event). */
export const partiesOf = (t: Target): Parties => ({ patient_id: t.scope.patientId, doctor_id: t.scope.doctorId });

/** The hub topic a socket of this target follows. */
export const topicOf = (t: Target): Topic =>
  t.scope.sessionId !== null ? { sessionId: t.scope.sessionId } : { appointmentId: t.scope.appointmentId! };

/** An appointment's session, or the appointment itself before it has one (participants only). */
async function ofAppointment(ctx: AppContext, actor: Actor, a: Appointment): Promise<Target> {
  assertParticipant(actor, a);
  if (a.session_id === null) return { scope: appointmentScope(a), direct: false };
  const modality = modalityForAppointmentType(a.appointment_type);
  const s = await sessionByContext(ctx.db, formatSessionContext(modality ? sessionKindForModality(modality) : 'text', a.session_id));
  return ofSession(s, false);
}

/**
 * What an `appointmentId` of the app names, for a participant: `direct_session_*` → that call; an
 * appointment id → its session, or the appointment before it has one; a bare number that is no
 * appointment → text session N (the old backend's fallback the app relies on); `text_session_N`,
 * `text_session:N`, `call_session:N` → that session.
 */
export async function resolveTarget(ctx: AppContext, actor: Actor, raw: string): Promise<Target> {
  if (raw.startsWith('direct_session_')) return ofSession(await sessionByRoutingKey(ctx.db, actor, raw), true);
  const n = parsePositiveId(raw);
  if (n !== null) {
    const a = await getAppointment(ctx.db, n);
    if (a) return ofAppointment(ctx, actor, a);
    const s = await sessionByContext(ctx.db, formatSessionContext('text', n));
    assertParticipant(actor, s);
    return ofSession(s, false);
  }
  const parsed = parseSessionContext(raw);
  if (parsed.type === 'invalid') throw invalid('appointmentId is not an appointment id, a session or a call key', { appointmentId: raw });
  const s = await sessionByContext(ctx.db, raw);
  assertParticipant(actor, s);
  return ofSession(s, false);
}

/**
 * The target as it is now, for the user as they are now: the session re-read (its status), or the
 * appointment re-read (it may have a session by now). Throws 403 for a user who is no longer a
 * participant, 404 when it is gone.
 */
export async function currentTarget(ctx: AppContext, actor: Actor, t: Target): Promise<Target> {
  const { sessionId, sessionKind, appointmentId } = t.scope;
  if (sessionId !== null) {
    const s = await sessionByContext(ctx.db, formatSessionContext(sessionKind!, sessionId));
    assertParticipant(actor, s);
    return ofSession(s, t.direct);
  }
  const a = await getAppointment(ctx.db, appointmentId!);
  if (!a) throw notFound('Appointment', { appointment_id: appointmentId });
  return ofAppointment(ctx, actor, a);
}
