/**
 * Runs operations one after another per key: an operation on a key starts once every earlier one
 * on that key has settled (fulfilled or not); different keys run independently. The slot is
 * forgotten when the last queued operation settles.
 */
export class KeyQueue<K> {
  private readonly tails = new Map<K, Promise<void>>();

  /** Runs op after every earlier operation on key; settles like op. */
  run<T>(key: K, op: () => Promise<T>): Promise<T> {
    const previous = this.tails.get(key) ?? Promise.resolve();
    const result = previous.then(op);
    const tail = result.then(
      () => undefined,
      () => undefined,
    );
    this.tails.set(key, tail);
    void tail.then(() => {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    });
    return result;
  }

  /** Resolves once every operation queued so far has settled. */
  async drain(): Promise<void> {
    await Promise.all([...this.tails.values()]);
  }
}
