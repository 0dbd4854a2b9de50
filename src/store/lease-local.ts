import { TokendError } from '../errors.js';
import { KeyQueue } from '../util/key-queue.js';
import type { Lease, LeaseOutcome } from './store.js';

interface Held {
  readonly fence: number;
  readonly controller: AbortController;
}

/**
 * The in-process refresh lease of a local store (file): one holder per token name at a time, the
 * others wait in a per-name queue (they are the same process, so waiting is always right). Every
 * lease taken gets a new fence number, so a lease kept after it was released (a late commit) is
 * told apart from the current one and refused.
 */
export class LocalLeases {
  private readonly queue = new KeyQueue<string>();
  private readonly held = new Map<string, Held>();
  private fence = 0;

  constructor(private readonly holder: string) {}

  /** Runs fn holding the lease for name, after every earlier holder in this process released it. */
  run<T>(name: string, fn: (lease: Lease) => Promise<T>): Promise<LeaseOutcome<T>> {
    return this.queue.run(name, async () => {
      const rec: Held = { fence: ++this.fence, controller: new AbortController() };
      this.held.set(name, rec);
      const lease: Lease = { name, holder: this.holder, fence: rec.fence, signal: rec.controller.signal };
      try {
        return { acquired: true as const, value: await fn(lease) };
      } finally {
        if (this.held.get(name) === rec) this.held.delete(name);
      }
    });
  }

  /** Throws LEASE_LOST (naming where) unless lease is the current lease of its token. */
  assertHolds(lease: Lease, where: string): void {
    const cur = this.held.get(lease.name);
    if (cur === undefined || cur.fence !== lease.fence || lease.holder !== this.holder || cur.controller.signal.aborted) {
      throw new TokendError('LEASE_LOST', `${where}: the lease of token ${lease.name} is no longer held`);
    }
  }

  /** Resolves once every current and queued lease user has finished. */
  async drain(): Promise<void> {
    await this.queue.drain();
  }
}
