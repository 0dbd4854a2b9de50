import type { Clock } from '../../src/clock.js';
import { TokendError } from '../../src/errors.js';
import { MemoryBackend, MemoryStore } from '../../src/store/memory.js';
import type { Lease, LeaseOutcome, StoredState, StoreUpdate, WriteBackResult } from '../../src/store/store.js';

/** The store methods a test can watch and make fail. */
export type Method = 'load' | 'withLease' | 'recordIntent' | 'clearIntent' | 'commit' | 'writeBack' | 'remove';

/** How an injected failure fails: the store is down, or (commit) it wrote but the answer was lost. */
export type FailureMode = 'unavailable' | 'outcome-unknown';

/**
 * A MemoryStore (the protocol's reference implementation, so the fake cannot disagree with the
 * real stores: the contract suite runs against it too) that records every call, into `calls` and
 * an optional shared `events` log for ordering checks against other fakes, and fails any method
 * on demand. Replicas: give several FakeStores one MemoryBackend and their own holder ids.
 */
export class FakeStore extends MemoryStore {
  /** Method names in call order. */
  readonly calls: Method[] = [];
  /** Methods that currently fail, and how. */
  readonly failing = new Map<Method, FailureMode>();
  private readonly events: string[] | undefined;

  constructor(opts: { clock?: Clock; backend?: MemoryBackend; holderId?: string; events?: string[]; leaseMs?: number } = {}) {
    super({ clock: opts.clock, backend: opts.backend, holderId: opts.holderId ?? 'fake-holder', leaseMs: opts.leaseMs });
    this.events = opts.events;
  }

  /** Makes method fail ('unavailable' by default) until heal(). */
  fail(method: Method, mode: FailureMode = 'unavailable'): void {
    this.failing.set(method, mode);
  }

  /** Every method works again. */
  heal(): void {
    this.failing.clear();
  }

  /** Seeds the stored state directly (no call recorded, no watcher told). */
  put(name: string, state: StoredState): void {
    this.backend.put(name, state);
  }

  /** The raw stored state (including an access token no longer usable). */
  stored(name: string): StoredState {
    return this.backend.states.get(name) ?? {};
  }

  override async load(name: string): Promise<StoredState> {
    this.record('load');
    return super.load(name);
  }

  override async withLease<T>(name: string, fn: (lease: Lease) => Promise<T>): Promise<LeaseOutcome<T>> {
    this.record('withLease');
    return super.withLease(name, fn);
  }

  override async recordIntent(lease: Lease, presentedHash: string): Promise<void> {
    this.record('recordIntent');
    return super.recordIntent(lease, presentedHash);
  }

  override async clearIntent(lease: Lease, presentedHash: string): Promise<void> {
    this.record('clearIntent');
    return super.clearIntent(lease, presentedHash);
  }

  override async commit(lease: Lease, update: StoreUpdate): Promise<void> {
    if (this.failing.get('commit') === 'outcome-unknown') {
      this.calls.push('commit');
      this.events?.push('store.commit');
      await super.commit(lease, update);
      throw new TokendError('STORE_UNAVAILABLE', 'fake store: the connection dropped after the commit was sent (injected)');
    }
    this.record('commit');
    return super.commit(lease, update);
  }

  override async writeBack(name: string, supersedes: ReadonlySet<string>, update: StoreUpdate): Promise<WriteBackResult> {
    this.record('writeBack');
    return super.writeBack(name, supersedes, update);
  }

  override async remove(name: string): Promise<void> {
    this.record('remove');
    return super.remove(name);
  }

  private record(method: Method): void {
    this.calls.push(method);
    this.events?.push(`store.${method}`);
    if (this.failing.has(method)) throw new TokendError('STORE_UNAVAILABLE', `fake store: ${method} failed (injected)`);
    if (this.backend instanceof FakeBackend && !this.backend.available) {
      throw new TokendError('STORE_UNAVAILABLE', `fake store: ${method} failed (the shared store is down)`);
    }
  }
}

/**
 * A fake Redis for replica tests: one MemoryBackend that several FakeStores (one per replica,
 * each with its own holder id) share, and that can be taken down as a whole.
 */
export class FakeBackend extends MemoryBackend {
  /** While false, every replica's calls reject with STORE_UNAVAILABLE. */
  available = true;

  constructor(
    readonly clock: Clock,
    readonly leaseMs = 15_000,
  ) {
    super();
  }

  /** A replica's view of this backend. */
  replica(holder: string, events?: string[]): FakeStore {
    return new FakeStore({ clock: this.clock, backend: this, holderId: holder, events, leaseMs: this.leaseMs });
  }

  /** Successful commits, write-backs and removals. */
  get commits(): number {
    return this.writes;
  }
}

export { MemoryBackend };
