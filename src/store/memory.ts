import { randomUUID } from 'node:crypto';
import { systemClock, type Clock } from '../clock.js';
import { TokendError } from '../errors.js';
import { isNewerThan, isUsable, type AccessToken } from '../token.js';
import { sha256Hex } from '../util/hash.js';
import { KeyQueue } from '../util/key-queue.js';
import { assertTokenName } from './names.js';
import type { Lease, LeaseOutcome, StoredState, StoreUpdate, TokenStore, WriteBackResult } from './store.js';

interface LeaseRecord {
  readonly holder: string;
  readonly fence: number;
  readonly controller: AbortController;
}

/**
 * The state behind memory stores. A process has one; tests give several MemoryStores (each with
 * its own holder id) one backend to stand for replicas sharing Redis, and use drop()/steal() to
 * act out a holder that dies or a lease taken over.
 */
export class MemoryBackend {
  /** What is stored, per token name. Tokens are frozen copies. */
  readonly states = new Map<string, StoredState>();
  /** The lease per token name, while held. */
  readonly leases = new Map<string, LeaseRecord>();
  private readonly fences = new Map<string, number>();
  private readonly watchers = new Map<string, Set<(s: StoredState) => void>>();
  /** Successful writes (commit, write-back, remove), for tests. */
  writes = 0;

  /** Takes the lease for holder if nobody holds it; undefined when someone else does. */
  take(name: string, holder: string): LeaseRecord | undefined {
    if (this.leases.has(name)) return undefined;
    const fence = (this.fences.get(name) ?? 0) + 1;
    this.fences.set(name, fence);
    const rec: LeaseRecord = { holder, fence, controller: new AbortController() };
    this.leases.set(name, rec);
    return rec;
  }

  /** Releases rec if it is still the current lease. */
  release(name: string, rec: LeaseRecord): void {
    if (this.leases.get(name) === rec) this.leases.delete(name);
  }

  /** True when lease is the current lease of its token. */
  holds(lease: Lease): boolean {
    const cur = this.leases.get(lease.name);
    return cur !== undefined && cur.fence === lease.fence && cur.holder === lease.holder;
  }

  /** The current holder loses the lease (it died, or its store went away); nobody holds it then. */
  drop(name: string): void {
    const rec = this.leases.get(name);
    if (rec === undefined) return;
    this.leases.delete(name);
    rec.controller.abort(new TokendError('LEASE_LOST', `lease of ${name} dropped`));
  }

  /** Another holder takes the lease over (the old holder's signal aborts). */
  steal(name: string, holder = 'thief'): void {
    this.drop(name);
    this.take(name, holder);
  }

  /** Replaces the state and tells every watcher, asynchronously (as Redis pub/sub would). */
  write(name: string, state: StoredState): void {
    if (state.access === undefined && state.refreshToken === undefined && !state.revoked && state.intent === undefined) {
      this.states.delete(name);
    } else {
      this.states.set(name, freeze(state));
    }
    this.writes++;
    this.announce(name);
  }

  /** Sets the state without telling anyone (tests seeding a store). */
  put(name: string, state: StoredState): void {
    this.states.set(name, freeze(state));
  }

  /** Calls every watcher of name with the current state, in a later microtask. */
  announce(name: string): void {
    const snapshot = this.states.get(name) ?? {};
    for (const w of this.watchers.get(name) ?? []) queueMicrotask(() => w(snapshot));
  }

  addWatcher(name: string, fn: (s: StoredState) => void): () => void {
    let set = this.watchers.get(name);
    if (set === undefined) this.watchers.set(name, (set = new Set()));
    set.add(fn);
    return () => void set.delete(fn);
  }

  /** Number of watchers of name (tests check unsubscription). */
  watcherCount(name: string): number {
    return this.watchers.get(name)?.size ?? 0;
  }
}

/** Options of MemoryStore. */
export interface MemoryStoreOptions {
  /** Shared state; default a backend of this store's own. */
  readonly backend?: MemoryBackend | undefined;
  /** Default: a random UUID. */
  readonly holderId?: string | undefined;
  /** Judges which stored tokens are still usable. Default systemClock. */
  readonly clock?: Clock | undefined;
  /** Reported as the holder TTL when another holder has the lease (ms). Default 15 000. */
  readonly leaseMs?: number | undefined;
}

/**
 * Keeps tokens in process memory only (lost on restart). The reference implementation of the
 * store protocol (store.ts): the lease is an in-process lock with a fence, a holder of this
 * store waits for its own earlier lease to be released; another holder on the same backend is
 * told the lease is taken.
 */
export class MemoryStore implements TokenStore {
  readonly description = 'memory store';
  readonly holderId: string;
  readonly backend: MemoryBackend;
  private readonly clock: Clock;
  private readonly leaseMs: number;
  /** Per name, the tail of this holder's queue of lease users. */
  private readonly queue = new KeyQueue<string>();

  constructor(opts: MemoryStoreOptions = {}) {
    this.backend = opts.backend ?? new MemoryBackend();
    this.holderId = opts.holderId ?? randomUUID();
    this.clock = opts.clock ?? systemClock;
    this.leaseMs = opts.leaseMs ?? 15_000;
  }

  /** Nothing to check. */
  async init(): Promise<void> {}

  /** A copy of what is held for name, without an access token that is no longer usable. */
  async load(name: string): Promise<StoredState> {
    assertTokenName(name, this.description);
    return this.read(name);
  }

  private read(name: string): StoredState {
    const s = this.backend.states.get(name);
    if (s === undefined) return {};
    const access = isUsable(s.access, this.clock) ? s.access : undefined;
    return { ...s, access };
  }

  /** Runs fn under the lease; see TokenStore.withLease. */
  async withLease<T>(name: string, fn: (lease: Lease) => Promise<T>): Promise<LeaseOutcome<T>> {
    assertTokenName(name, this.description);
    return this.queue.run(name, async (): Promise<LeaseOutcome<T>> => {
      const rec = this.backend.take(name, this.holderId);
      if (rec === undefined) return { acquired: false, holderTtlMs: this.leaseMs };
      const lease: Lease = { name, holder: rec.holder, fence: rec.fence, signal: rec.controller.signal };
      try {
        return { acquired: true, value: await fn(lease) };
      } finally {
        this.backend.release(name, rec);
      }
    });
  }

  /** Records the intent under the lease. */
  async recordIntent(lease: Lease, presentedHash: string): Promise<void> {
    this.assertHolds(lease);
    const s = this.backend.states.get(lease.name) ?? {};
    this.backend.put(lease.name, { ...s, intent: { holder: lease.holder, presented: presentedHash, at: this.clock.now() } });
  }

  /** Clears the holder's intent for presentedHash, if it is still there. */
  async clearIntent(lease: Lease, presentedHash: string): Promise<void> {
    this.assertHolds(lease);
    const s = this.backend.states.get(lease.name);
    if (s?.intent?.holder === lease.holder && s.intent.presented === presentedHash) {
      this.backend.put(lease.name, { ...s, intent: undefined });
    }
  }

  /** Stores update if lease is current; LEASE_LOST otherwise. */
  async commit(lease: Lease, update: StoreUpdate): Promise<void> {
    this.assertHolds(lease);
    const s = this.backend.states.get(lease.name) ?? {};
    this.backend.write(lease.name, apply(s, update));
  }

  /** See TokenStore.writeBack. */
  async writeBack(name: string, supersedes: ReadonlySet<string>, update: StoreUpdate): Promise<WriteBackResult> {
    assertTokenName(name, this.description);
    const s = this.backend.states.get(name) ?? {};
    const verdict = writeBackVerdict(s, supersedes, update);
    if (verdict === 'written') this.backend.write(name, apply(s, update));
    return verdict;
  }

  /** Watches commits of any store on this backend. */
  watch(name: string, onChange: (state: StoredState) => void): () => void {
    assertTokenName(name, this.description);
    let active = true;
    const unsubscribe = this.backend.addWatcher(name, () => onChange(this.read(name)));
    queueMicrotask(() => {
      if (active) onChange(this.read(name));
    });
    return () => {
      active = false;
      unsubscribe();
    };
  }

  /** Forgets the token; a refresh-token chain leaves a tombstone. */
  async remove(name: string): Promise<void> {
    assertTokenName(name, this.description);
    const s = this.backend.states.get(name);
    if (s === undefined) return;
    const chain = s.refreshToken !== undefined || s.seedHash !== undefined || s.revoked === true;
    this.backend.write(name, chain ? { revoked: true, seedHash: s.seedHash } : {});
  }

  /** Waits for this store's lease users. */
  async close(): Promise<void> {
    await this.queue.drain();
  }

  private assertHolds(lease: Lease): void {
    if (!this.backend.holds(lease)) throw new TokendError('LEASE_LOST', `memory store: the lease of token ${lease.name} is no longer held`);
  }
}

/** The chain part of a state (what the file store's state file and Redis `:state` hold), as a comparable string. */
export function chainKey(s: StoredState): string {
  return JSON.stringify([s.refreshToken ?? null, s.seedHash ?? null, s.revoked === true, s.intent ?? null]);
}

/** The state after a commit or write-back of update over s (the protocol's merge rule). */
export function apply(s: StoredState, update: StoreUpdate): StoredState {
  const rotates = update.refreshToken !== undefined;
  const access: AccessToken | undefined =
    update.access !== undefined && isNewerThan(update.access, s.access) ? update.access : s.access;
  return {
    access,
    refreshToken: rotates ? update.refreshToken : s.refreshToken,
    seedHash: rotates ? update.seedHash : s.seedHash,
    revoked: rotates ? undefined : s.revoked,
    intent: rotates ? undefined : s.intent,
  };
}

/**
 * Whether a write-back of update may be stored over s (see TokenStore.writeBack): never over a
 * tombstone; a refresh token only over none or a superseded one; an access token alone when it is newer.
 */
export function writeBackVerdict(s: StoredState, supersedes: ReadonlySet<string>, update: StoreUpdate): WriteBackResult {
  if (s.revoked) return 'superseded';
  if (update.refreshToken !== undefined) {
    if (s.refreshToken === update.refreshToken) {
      return update.access !== undefined && isNewerThan(update.access, s.access) ? 'written' : 'already';
    }
    if (s.refreshToken !== undefined && !supersedes.has(sha256Hex(s.refreshToken))) return 'superseded';
    return 'written';
  }
  if (update.access === undefined) return 'already';
  return isNewerThan(update.access, s.access) ? 'written' : 'already';
}

function freeze(s: StoredState): StoredState {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(s)) {
    if (v !== undefined) out[k] = typeof v === 'object' && v !== null ? Object.freeze({ ...v }) : v;
  }
  return Object.freeze(out) as StoredState;
}
