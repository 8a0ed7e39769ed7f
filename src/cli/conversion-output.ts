/** Shared output of the commands that convert appointments (auto-start, activate-booked). */
import type { ConversionOutcome } from '../modules/sessions/writer.js';
import { formatSessionContext } from '../modules/session-context.js';
import { kindOf } from '../modules/sessions/state.js';

export interface OutcomeJson {
  appointment_id: number;
  result: ConversionOutcome['result'];
  session_id: number | null;
  session_context: string | null;
  modality: string | null;
  reason: string | null;
}

export function outcomeJson(o: ConversionOutcome): OutcomeJson {
  return {
    appointment_id: o.appointmentId,
    result: o.result,
    session_id: o.sessionId,
    session_context: o.sessionId !== null && o.modality ? formatSessionContext(kindOf(o.modality), o.sessionId) : null,
    modality: o.modality,
    reason: o.reason,
  };
}

/** `--verbose`: one line per appointment — created / skipped / failed, with the reason. */
export function outcomeLine(o: ConversionOutcome): string {
  const j = outcomeJson(o);
  const id = `appointment ${o.appointmentId}`;
  if (o.result === 'created') return `created  ${id} → ${j.session_context} (${o.modality})`;
  if (o.result === 'skipped') return `skipped  ${id}: ${o.reason}${j.session_context ? ` (${j.session_context})` : ''}`;
  if (o.result === 'deferred') return `deferred ${id}: ${o.reason}`;
  return `failed   ${id}: ${o.reason}`;
}
