/**
 * What the rest of the system does when a session's life changes. The sessions module defines
 * these hooks and calls them inside its own transactions; billing implements them
 * (`billing/hooks.ts`) and `createContext` connects the two, so sessions never import billing.
 */
import type { Modality, Session, Trx } from '../../db/types.js';

export interface SessionHooks {
  /** Before a session starts, in its transaction: throws a `DomainError` when the patient cannot pay for it. */
  beforeStart(trx: Trx, patientId: number, modality: Modality): Promise<void>;
  /**
   * In the transaction that ended the session (its row locked): settles what the session costs.
   * Returns the row as it is afterwards.
   */
  ended(trx: Trx, session: Session): Promise<Session>;
}
