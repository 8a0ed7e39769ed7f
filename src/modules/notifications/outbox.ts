/**
 * Notification delivery from the outbox. Rows are enqueued inside the transaction that creates
 * the session (one row per appointment and session, unique `dedupe_key`, for the patient and —
 * `also_notify` — the doctor), and delivered after commit: claimed with SKIP LOCKED, fanned out
 * into `notifications` (unique per outbox row and user), pushed to connected clients through the
 * cross-process bus, and marked delivered — exactly once per (row, recipient) however many
 * processes deliver.
 *
 * The events are published in the claiming transaction (`publishInTransaction`: on PostgreSQL a
 * NOTIFY that other processes receive at commit, only if it commits), so a row is never marked
 * delivered without its events having been published; if they cannot be sent, the transaction
 * rolls back and the worker retries the row.
 */
import { sql } from 'kysely';
import type { AppContext } from '../../context.js';

export async function deliverPendingNotifications(ctx: AppContext, limit = 500): Promise<number> {
  let deliverLocally = () => {};
  const delivered = await ctx.db.transaction().execute(async (trx) => {
    const rows = await sql<{ id: number; recipient_id: number; kind: string; payload: unknown }>`
      select id, recipient_id, kind, payload
        from notification_outbox
       where delivered_at is null
       order by id
       limit ${limit}
         for update skip locked`.execute(trx);
    if (rows.rows.length === 0) return [];
    const ids = JSON.stringify(rows.rows.map((r) => r.id));
    const inserted = await sql<{ id: number; user_id: number; kind: string; payload: unknown; outbox_id: number }>`
      insert into notifications (outbox_id, user_id, kind, payload)
      select o.id, r.uid, o.kind, o.payload
        from notification_outbox o
       cross join lateral (select distinct u from unnest(array[o.recipient_id] || o.also_notify) as u) as r(uid)
       where o.id in (select value::bigint from jsonb_array_elements_text(${ids}::jsonb))
       order by o.id, r.uid
          on conflict (outbox_id, user_id) do nothing
      returning id, user_id, kind, payload, outbox_id`.execute(trx);
    deliverLocally = await ctx.bus.publishInTransaction(
      trx,
      inserted.rows.map((n) => ({ type: 'notification', userIds: [n.user_id], payload: { id: n.id, kind: n.kind, payload: n.payload } })),
    );
    await sql`
      update notification_outbox set delivered_at = now(), attempts = attempts + 1
       where id in (select value::bigint from jsonb_array_elements_text(${ids}::jsonb))`.execute(trx);
    return inserted.rows;
  });
  deliverLocally();
  return delivered.length;
}
