/**
 * One in-flight operation per key: a caller asking while one runs joins it instead of starting
 * another. The slot is cleared when the operation settles, and only if it is still the current one
 * (jose's `pendingFetch` in src/jwks/remote.ts), so a later operation is never dropped by an
 * earlier one finishing.
 */
export class SingleFlight<K, T> {
  private readonly pending = new Map<K, Promise<T>>();

  /** Joins the operation in flight for key, or starts fn() as the new one. */
  run(key: K, fn: () => Promise<T>): Promise<T> {
    const existing = this.pending.get(key);
    if (existing !== undefined) return existing;
    const p: Promise<T> = (async () => fn())().finally(() => {
      if (this.pending.get(key) === p) this.pending.delete(key);
    });
    this.pending.set(key, p);
    return p;
  }

  /** The operation in flight for key, if any. */
  current(key: K): Promise<T> | undefined {
    return this.pending.get(key);
  }

  /** Every operation in flight (for shutdown). */
  all(): Promise<T>[] {
    return [...this.pending.values()];
  }
}
