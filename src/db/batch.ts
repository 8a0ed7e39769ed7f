/**
 * Statements shared by concurrent requests. Every `load` issued during one turn of the event loop
 * (the requests whose bytes arrived together, at the same step of their handling) leaves in ONE
 * statement when the turn ends (`setImmediate`), and each caller gets its own row back. Nothing is
 * cached: a load always reads the database as of a statement that started after it was asked, so
 * a batched read sees exactly what a read of its own would have seen. Under load this turns one
 * round trip per request into one per batch; an idle server sends each load alone, a turn later.
 *
 * `dataloader` does the batching; `cache: false` because a request must never be answered from
 * another request's read.
 */
import DataLoader from 'dataloader';

/** Loads per statement at most (bounds a statement's parameters under a burst). */
const MAX_BATCH = 500;

/**
 * A loader over `readMany`, which receives the keys of one turn (possibly repeated) and answers
 * one value per key, in the keys' order (or an Error for that key alone).
 */
export function batchedStatement<K, V>(readMany: (keys: readonly K[]) => Promise<ArrayLike<V | Error>>): DataLoader<K, V> {
  return new DataLoader<K, V>(readMany, { cache: false, maxBatchSize: MAX_BATCH, batchScheduleFn: (run) => setImmediate(run) });
}
