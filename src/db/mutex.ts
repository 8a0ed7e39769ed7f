/**
 * A FIFO lock: the embedded database is one connection, so whoever runs statements on it — this
 * process's queries and transactions, or a client process served over the owner's socket — holds
 * this lock from the first statement to the end of its transaction.
 */
export class Mutex {
  private tail: Promise<void> = Promise.resolve();
  lock(): Promise<() => void> {
    let release!: () => void;
    const next = new Promise<void>((r) => (release = r));
    const acquired = this.tail.then(() => release);
    this.tail = this.tail.then(() => next);
    return acquired;
  }
}
