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
