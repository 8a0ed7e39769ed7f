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
 * Map an appointment's `appointment_type` to the session modality.
 *
 * Matching is exact (lowercase, untrimmed) because the column is CHECK-constrained; any other
 * value is corrupt data and yields `null`, which auto-start reports as `invalid_appointment_state`.
 */
export function modalityForAppointmentType(t: string): Modality | null {
  switch (t) {
    case 'text':
      return 'text';
    case 'audio':
    case 'voice':
      return 'voice';
    case 'video':
      return 'video';
    default:
      return null;
  }
}

/** Voice and video share the call state machine (waiting → ringing → connected → ended). */
export function sessionKindForModality(m: Modality): SessionKind {
  return m === 'text' ? 'text' : 'call';
}
