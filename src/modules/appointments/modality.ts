/**
 * Appointment type → session modality → session kind.
 *
 * `appointment_type` is what the patient booked (`text` | `audio` | `voice` | `video`; `audio`
 * and `voice` are the same thing under two names from two generations of clients). `modality`
 * is how the session runs; `kind` is which state machine it follows (text chat, or a call).
 */
import type { SessionKindCol as SessionKind } from '../../db/types.js';

/** How a consultation is held. */
export type Modality = 'text' | 'voice' | 'video';

/**
 * `appointment_type` → session modality. The column is CHECK-constrained; any other value is
 * corrupt data and has no modality (the writer reports it as `invalid_appointment_state`).
 */
export const MODALITY_OF_TYPE: Readonly<Record<string, Modality>> = Object.freeze({
  text: 'text',
  audio: 'voice',
  voice: 'voice',
  video: 'video',
});

/** The modality of an `appointment_type` (exact match, lowercase, untrimmed), or null. */
export function modalityForAppointmentType(t: string): Modality | null {
  return Object.hasOwn(MODALITY_OF_TYPE, t) ? MODALITY_OF_TYPE[t]! : null;
}

/** Voice and video share the call state machine (waiting → ringing → connected → ended). */
export function sessionKindForModality(m: Modality): SessionKind {
  return m === 'text' ? 'text' : 'call';
}
