import type { Clock } from '../../src/clock.js';
import { TokendError } from '../../src/errors.js';
import type { Lease, LeaseOutcome, SharedStore, StoredState, TokenStore } from '../../src/store/store.js';
import type { AccessToken } from '../../src/token.js';

type Method = 'load' | 'saveRefreshToken' | 'saveAccessToken' | 'remove' | 'commit' | 'withLease';

function unavailable(method: string): TokendError {
  return new TokendError('STORE_UNAVAILABLE', `fake store: ${method} failed (injected)`);
}

/**
 * An in-memory TokenStore for unit tests that records every call (into `calls`, and into an
 * optional shared `events` log so tests can check ordering against other fakes) and can be told
 * to fail any method with STORE_UNAVAILABLE.
 */
export class FakeStore implements TokenStore {
  readonly kind = 'memory' as const;
  readonly states = new Map<string, StoredState>();
  /** Method names in call order. */
  readonly calls: Method[] = [];
  /** Methods that currently reject with STORE_UNAVAILABLE. */
  readonly failing = new Set<Method>();

  constructor(private readonly events?: string[]) {}

  async init(): Promise<void> {}

  async load(name: string): Promise<StoredState> {
    this.record('load');
    return { ...(this.states.get(name) ?? {}) };
  }

  async saveRefreshToken(name: string, refreshToken: string, seedHash: string | undefined): Promise<void> {
    this.record('saveRefreshToken');
    this.states.set(name, { ...this.states.get(name), refreshToken, seedHash });
  }

  async saveAccessToken(name: string, token: AccessToken): Promise<void> {
    this.record('saveAccessToken');
    const prev = this.states.get(name)?.access;
    if (prev && prev.expiresAt > token.expiresAt) return;
    this.states.set(name, { ...this.states.get(name), access: token });
  }

  async remove(name: string): Promise<void> {
    this.record('remove');
    this.states.delete(name);
  }

  async close(): Promise<void> {}

  /** Seeds the stored state directly (no call recorded). */
  put(name: string, state: StoredState): void {
    this.states.set(name, state);
  }

  private record(method: Method): void {
    this.calls.push(method);
    this.events?.push(`store.${method}`);
    if (this.failing.has(method)) throw unavailable(method);
  }
}

interface LeaseRecord {
  holder: string;
  fence: number;
  expiresAt: number;
  controller: AbortController;
}

/**
 * The shared side of a fake Redis: one state per token name, a lease per name with a fence, and
 * watchers. Each replica gets its own {@link FakeSharedStore} view via `replica(holder)`.
 */
export class FakeSharedBackend {
  readonly states = new Map<string, StoredState>();
  readonly leases = new Map<string, LeaseRecord>();
  private fence = 0;
  private readonly watchers = new Map<string, Set<(s: StoredState) => void>>();
  /** While false, every replica's calls reject with STORE_UNAVAILABLE and isAvailable() is false. */
  available = true;
  /** Number of successful commits. */
  commits = 0;

  constructor(
    readonly clock: Clock,
    readonly leaseMs = 15_000,
  ) {}

  replica(holder: string): FakeSharedStore {
    return new FakeSharedStore(this, holder);
  }

  /** Another holder takes the lease for name (the old holder's lease signal aborts). */
  steal(name: string, holder = 'thief'): void {
    this.leases.get(name)?.controller.abort(new TokendError('LEASE_LOST', 'stolen'));
    this.leases.set(name, this.newLease(holder));
  }

  /** @internal */
  newLease(holder: string): LeaseRecord {
    return { holder, fence: ++this.fence, expiresAt: this.clock.now() + this.leaseMs, controller: new AbortController() };
  }

  /** @internal */
  write(name: string, state: StoredState): void {
    this.states.set(name, state);
    this.commits++;
    const snapshot = { ...state };
    // Redis pub/sub delivers asynchronously.
    for (const w of this.watchers.get(name) ?? []) queueMicrotask(() => w(snapshot));
  }

  /** @internal */
  addWatcher(name: string, fn: (s: StoredState) => void): () => void {
    let set = this.watchers.get(name);
    if (!set) this.watchers.set(name, (set = new Set()));
    set.add(fn);
    return () => void set.delete(fn);
  }

  watcherCount(name: string): number {
    return this.watchers.get(name)?.size ?? 0;
  }
}

/** One replica's view of a {@link FakeSharedBackend}; implements SharedStore. */
export class FakeSharedStore implements SharedStore {
  readonly kind = 'redis' as const;
  readonly shared = true as const;
  readonly calls: Method[] = [];

  constructor(
    readonly backend: FakeSharedBackend,
    readonly holder: string,
  ) {}

  async init(): Promise<void> {}

  isAvailable(): boolean {
    return this.backend.available;
  }

  async load(name: string): Promise<StoredState> {
    this.record('load');
    return { ...(this.backend.states.get(name) ?? {}) };
  }

  async saveRefreshToken(name: string, refreshToken: string, seedHash: string | undefined): Promise<void> {
    this.record('saveRefreshToken');
    this.backend.write(name, { ...this.backend.states.get(name), refreshToken, seedHash });
  }

  async saveAccessToken(name: string, token: AccessToken): Promise<void> {
    this.record('saveAccessToken');
    this.backend.write(name, { ...this.backend.states.get(name), access: token });
  }

  async remove(name: string): Promise<void> {
    this.record('remove');
    this.backend.states.delete(name);
  }

  async close(): Promise<void> {}

  async withLease<T>(name: string, fn: (lease: Lease) => Promise<T>): Promise<LeaseOutcome<T>> {
    this.record('withLease');
    const b = this.backend;
    const now = b.clock.now();
    const held = b.leases.get(name);
    if (held && held.holder !== this.holder && held.expiresAt > now) {
      return { acquired: false, holderTtlMs: held.expiresAt - now };
    }
    const rec = b.newLease(this.holder);
    b.leases.set(name, rec);
    const lease: Lease = { name, holder: this.holder, fence: rec.fence, signal: rec.controller.signal };
    try {
      return { acquired: true, value: await fn(lease) };
    } finally {
      if (b.leases.get(name) === rec) b.leases.delete(name);
    }
  }

  async commit(
    lease: Lease,
    update: { access: AccessToken; refreshToken?: string | undefined; seedHash?: string | undefined },
  ): Promise<void> {
    this.record('commit');
    const cur = this.backend.leases.get(lease.name);
    if (!cur || cur.fence !== lease.fence || cur.holder !== lease.holder) {
      throw new TokendError('LEASE_LOST', `fake store: lease for ${lease.name} lost`);
    }
    const prev = this.backend.states.get(lease.name) ?? {};
    this.backend.write(lease.name, {
      access: update.access,
      refreshToken: update.refreshToken ?? prev.refreshToken,
      seedHash: update.refreshToken !== undefined ? update.seedHash : prev.seedHash,
    });
  }

  watch(name: string, onChange: (state: StoredState) => void): () => void {
    return this.backend.addWatcher(name, onChange);
  }

  private record(method: Method): void {
    this.calls.push(method);
    if (!this.backend.available) throw unavailable(method);
  }
}
