/** Credit balances: the aggregate of a patient's unexpired subscriptions, per modality. */
import { sql } from 'kysely';
import type { Executor, Modality } from '../../db/types.js';

export type CreditBalances = Record<Modality, number>;

export async function creditBalances(db: Executor, patientId: number, now: Date): Promise<CreditBalances> {
  const row = await db
    .selectFrom('subscriptions')
    .select([
      sql<number>`coalesce(sum(text_remaining), 0)::int`.as('text'),
      sql<number>`coalesce(sum(voice_remaining), 0)::int`.as('voice'),
      sql<number>`coalesce(sum(video_remaining), 0)::int`.as('video'),
    ])
    .where('patient_id', '=', patientId)
    .where('starts_at', '<=', now)
    .where('expires_at', '>', now)
    .executeTakeFirstOrThrow();
  return { text: row.text, voice: row.voice, video: row.video };
}

/** The `subscriptions` column holding a modality's remaining credits. */
export const remainingColumn = (m: Modality) => `${m}_remaining` as const;

/**
 * Credits of one modality the patient can spend right now, by the database clock — the same
 * clock and the same set of subscriptions the ledger charges from (so "you may start" and "we
 * can charge you" never disagree).
 */
export async function usableCredits(db: Executor, patientId: number, modality: Modality): Promise<number> {
  const row = await sql<{ n: number }>`
    select coalesce(sum(${sql.ref(remainingColumn(modality))}), 0)::int as n
      from subscriptions
     where patient_id = ${patientId} and starts_at <= now() and expires_at > now()`.execute(db);
  return row.rows[0]?.n ?? 0;
}
