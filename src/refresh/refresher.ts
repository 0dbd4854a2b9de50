import { createHash } from 'node:crypto';
import { sleep, type Clock, type Timer } from '../clock.js';
import type { TokenConfig } from '../config/types.js';
import { TokendError, hasCode } from '../errors.js';
import { EVENTS, type Logger } from '../log.js';
import { rotatedRefreshTokenOf, type TokenSource } from '../oauth/source.js';
import { isShared, type Lease, type LeaseOutcome, type SharedStore, type StoredState, type TokenStore } from '../store/store.js';
import { isUsable, sameGrant, type AccessToken, type GrantResult } from '../token.js';
import { raceAbort } from '../util/abort.js';
import { Backoff, type BackoffBounds } from './backoff.js';
import type { RefreshObserver, RefreshResult, TokenHandle, TokenListener, TokenStatus } from './handle.js';
import { decideWhenStoreDown, grantKeyOf, refreshDueAt, tokenJitter } from './policy.js';

/** Dependencies of a {@link Refresher}. */
export interface RefresherDeps {
  readonly config: TokenConfig;
  /**
   * The grant. When it implements the optional credentialFingerprint(), a permanent failure is
   * retried as soon as the fingerprint changes (a new Kubernetes Secret); otherwise only the seed is watched.
   */
  readonly source: TokenSource;
  readonly store: TokenStore;
  readonly clock: Clock;
  /** Uniform random in [0, 1), for refresh jitter and backoff. */
  readonly random: () => number;
  /** Already a child logger bound to `{ token: name }`. */
  readonly logger: Logger;
  readonly observer?: RefreshObserver | undefined;
  /** Refreshes forced by a caller's min_ttl happen at most once per this interval. Default 5 000 ms. */
  readonly minForcedRefreshIntervalMs?: number | undefined;
  /** Retry backoff bounds. Default 1 000 .. 60 000 ms. */
  readonly backoff?: Partial<BackoffBounds> | undefined;
  /** Told about every new token held (outputs, notifications). */
  readonly listeners?: readonly TokenListener[] | undefined;
  /** Refresh jitter in [0, 1) for a token held in a shared store. Default tokenJitter (same on every replica). */
  readonly sharedJitter?: ((token: AccessToken) => number) | undefined;
}

/** sha256 (hex) of a secret, so it can be compared and stored without keeping the value. */
export function secretHash(value: string): string {
  return createHash('sha256').update(value).digest('hex');
}

/** Per-attempt inputs read from the secret files at the start of the attempt. */
interface Credentials {
  /** The seed's value, when it could be read (refresh_token grants only). */
  readonly seed: string | undefined;
  /** sha256 of the seed (or the last known one if the file could not be read now). */
  readonly seedHash: string | undefined;
  /** Why the seed could not be read, if it could not. */
  readonly seedError: unknown;
  /** Changes whenever the seed or (if the source can tell) the client credentials change. */
  readonly fingerprint: string;
}

interface PermanentFailure {
  readonly reason: string;
  /** Credentials fingerprint when it failed; a different one means "try again". */
  readonly fingerprint: string;
}

/** What a refresh attempt wants: a token with more than needTtlMs left (0: the usual schedule). */
interface AttemptOptions {
  readonly needTtlMs: number;
}

/** Lease attempts in one refresh before counting it as failed (the holder's lease lapsed without a commit). */
const MAX_LEASE_ROUNDS = 3;
// A few ms past the holder's lease TTL, so it has surely lapsed when we try again.
const LEASE_LAPSE_SLACK_MS = 25;

/**
 * Keeps one token fresh: loads it from the store, refreshes it ahead of expiry (jittered),
 * retries with backoff, rotates refresh tokens safely, and serves it in memory.
 *
 * Invariants:
 * - at most one grant in flight (single flight, shared by timer, reconcile and callers);
 * - a rotated refresh token is durably saved before the access token that came with it is
 *   published, and a consumed refresh token is never presented again;
 * - an expired token is never handed out;
 * - with a shared store, grants happen only under the fleet lease and are committed fenced.
 */
export class Refresher implements TokenHandle {
  readonly name: string;
  private readonly config: TokenConfig;
  private readonly source: TokenSource;
  private readonly store: TokenStore;
  private readonly shared: SharedStore | undefined;
  private readonly clock: Clock;
  private readonly random: () => number;
  private readonly log: Logger;
  private readonly observer: RefreshObserver | undefined;
  private readonly listeners: readonly TokenListener[];
  private readonly minForcedIntervalMs: number;
  private readonly backoff: Backoff;
  private readonly sharedJitter: (token: AccessToken) => number;
  /** Fingerprint of the settings tokens are obtained with; stored tokens from others are not used. */
  private readonly grantKey: string;
  private readonly abort = new AbortController();

  /** The published token (may have expired since; `current()` checks). */
  private token: AccessToken | undefined;
  private everPublished = false;
  private expiredLoggedFor: AccessToken | undefined;

  /** Refresh token to present next (local stores; shared stores re-read it under the lease). */
  private refreshToken: string | undefined;
  /** seedHash of the chain `refreshToken` descends from. */
  private refreshTokenSeedHash: string | undefined;
  /** `refreshToken` is newer than what the store holds (saving it failed). */
  private refreshTokenUnsaved = false;
  /** sha256 of refresh tokens already presented and replaced by rotation: never presented again. */
  private readonly consumed = new Set<string>();
  /** sha256 of the seed as last read. */
  private seedHash: string | undefined;
  /** store.load succeeded once (refresh_token grants must not fall back to the seed before). */
  private stateLoaded = false;

  private inflight: Promise<void> | undefined;
  private timer: Timer | undefined;
  private expiryTimer: Timer | undefined;
  /** Wall-clock time (ms) of the next scheduled attempt. */
  private nextAttemptAt: number | undefined;
  private lastForcedAt = Number.NEGATIVE_INFINITY;
  /** When the attempt in flight started (wall clock), for duration_ms. */
  private attemptStartedAt = 0;
  private permanent: PermanentFailure | undefined;
  private started = false;
  /** Set while start() reads the stored state: callers wait for it rather than grant. */
  private loading: Promise<boolean> | undefined;
  private stopped = false;
  private revoked = false;
  private reconciling = false;
  private unwatch: (() => void) | undefined;
  /** The write-back of what the shared store lost, in flight (one at a time). */
  private restoring: Promise<void> | undefined;
  private readonly commitWaiters = new Set<() => void>();
  private readonly writes = new Set<Promise<unknown>>();
  /** Tail of the serialized refresh-token writes. */
  private refreshTokenWrites: Promise<void> = Promise.resolve();

  constructor(deps: RefresherDeps) {
    this.config = deps.config;
    this.name = deps.config.name;
    this.source = deps.source;
    this.store = deps.store;
    this.shared = isShared(deps.store) ? deps.store : undefined;
    this.clock = deps.clock;
    this.random = deps.random;
    this.log = deps.logger;
    this.observer = deps.observer;
    this.listeners = deps.listeners ?? [];
    this.minForcedIntervalMs = deps.minForcedRefreshIntervalMs ?? 5_000;
    this.backoff = new Backoff({ ...deps.backoff, random: deps.random });
    this.sharedJitter = deps.sharedJitter ?? ((t) => tokenJitter(t.accessToken));
    this.grantKey = grantKeyOf(deps.config);
  }

  // ---------------------------------------------------------------- lifecycle

  /**
   * Loads the stored state and, unless a still-usable token was stored, acquires one now.
   * Resolves after that first attempt; never rejects for IdP or store failures (it schedules
   * retries and status() reports why it is not ready).
   */
  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    if (this.shared) this.unwatch = this.shared.watch(this.name, (state) => this.onCommitted(state));
    const loading = this.loadStored();
    this.loading = loading;
    let needGrant: boolean;
    try {
      needGrant = await loading;
    } finally {
      this.loading = undefined;
    }
    // Runs in the same microtask as the callers' continuations would, so they join this attempt.
    if (needGrant && !this.stopped) await this.refresh({ needTtlMs: 0 });
  }

  /** Reads the seed and the stored state; true when a grant is needed now. Never rejects. */
  private async loadStored(): Promise<boolean> {
    const creds = await this.readCredentials();
    this.seedHash = creds.seedHash;
    let state: StoredState = {};
    try {
      state = await this.store.load(this.name);
      this.stateLoaded = true;
    } catch (err) {
      this.log.warn({ event: EVENTS.refreshFailed, error: errorSummary(err), attempt: 0, retry_in_ms: 0 }, 'could not load the stored state');
    }
    if (this.stopped) return false;
    if (this.revokedFor(state)) {
      this.markRevoked(creds.fingerprint);
      return false;
    }
    if (state.refreshToken !== undefined) {
      this.refreshToken = state.refreshToken;
      this.refreshTokenSeedHash = state.seedHash;
    }
    const seedChanged = this.seedChangedFor(state);
    // A stored token obtained under other settings (scope, audience, client… changed) is not served.
    if (isUsable(state.access, this.clock) && sameGrant(state.access, this.grantKey)) {
      this.publish(state.access, 'loaded');
      // A new seed means a new credential: refresh with it now, serving the stored token meanwhile.
      if (!seedChanged) {
        this.scheduleRefreshOf(state.access);
        return false;
      }
    }
    return true;
  }

  /** Cancels timers, aborts sleeps and grants in flight, waits for in-flight store writes. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.cancelTimer();
    this.expiryTimer?.cancel();
    this.expiryTimer = undefined;
    this.unwatch?.();
    this.unwatch = undefined;
    this.abort.abort(new TokendError('TOKEN_UNAVAILABLE', `token ${this.name}: refresher stopped`));
    await this.inflight?.catch(() => undefined);
    await Promise.allSettled([...this.writes]);
  }

  /**
   * Wall-clock check, called periodically (node-cron) by the daemon. Starts an overdue refresh
   * (VM suspended, clock jumped, timer lost), notices a changed seed or, after a permanent
   * failure, changed credentials, and retries persisting an unsaved refresh token.
   */
  reconcile(): void {
    if (!this.started || this.stopped || this.revoked || this.reconciling) return;
    this.reconciling = true;
    this.reconcileNow()
      .catch((err: unknown) => this.log.warn({ event: EVENTS.refreshFailed, error: errorSummary(err) }, 'reconcile failed'))
      .finally(() => {
        this.reconciling = false;
      });
  }

  /**
   * RFC 7009: revokes the refresh token (if any) and the access token at the IdP, then removes
   * every stored copy; the token is not ready afterwards. Rejects if the refresh token could not
   * be revoked (nothing is removed then, so it can be retried).
   */
  async revoke(): Promise<void> {
    await this.inflight?.catch(() => undefined);
    this.revoked = true;
    this.cancelTimer();
    try {
      await this.revokeNow();
    } catch (err) {
      this.revoked = false;
      if (this.started && !this.stopped && this.token !== undefined && !this.permanent) this.scheduleRefreshOf(this.token);
      throw err;
    }
  }

  private async revokeNow(): Promise<void> {
    let state: StoredState = {};
    if (this.shared || !this.stateLoaded) {
      state = await this.store.load(this.name);
    }
    const refreshToken = this.shared ? state.refreshToken : (this.refreshToken ?? state.refreshToken);
    const access = this.token ?? state.access;
    const signal = this.abort.signal;
    if (this.config.grant === 'refresh_token') {
      const rt = refreshToken ?? (await this.source.readSeed());
      if (rt !== undefined) {
        await this.source.revoke(rt, 'refresh_token', signal);
        this.markConsumed(rt);
      }
    }
    if (access !== undefined && isUsable(access, this.clock)) {
      try {
        await this.source.revoke(access.accessToken, 'access_token', signal);
      } catch (err) {
        // The access token expires on its own; losing this call must not keep the refresh token stored.
        this.log.warn({ event: EVENTS.revoked, error: errorSummary(err) }, 'access token revocation failed');
      }
    }
    await this.store.remove(this.name);
    this.token = undefined;
    this.refreshToken = undefined;
    this.refreshTokenUnsaved = false;
    this.expiryTimer?.cancel();
    this.expiryTimer = undefined;
    this.log.info({ event: EVENTS.revoked }, 'token revoked and removed from the store');
  }

  // ---------------------------------------------------------------- TokenHandle

  /** The published token if it is still valid at the clock's now; never an expired one. */
  current(): AccessToken | undefined {
    const t = this.token;
    if (t === undefined) return undefined;
    if (isUsable(t, this.clock)) return t;
    this.noteExpired(t);
    return undefined;
  }

  /**
   * Returns a token with more than minTtlMs left, refreshing first if needed (joining the
   * refresh in flight). Refreshes forced only by min_ttl happen at most once per
   * minForcedRefreshIntervalMs; otherwise, and when the refresh fails, the current valid token is
   * returned even if it has less than minTtlMs left. Rejects with TOKEN_UNAVAILABLE when no valid
   * token exists, or with signal's reason when aborted.
   */
  async ensureFresh(minTtlMs: number, signal?: AbortSignal): Promise<AccessToken> {
    const now = this.clock.now();
    const t = this.current();
    if (t !== undefined && t.expiresAt - now > minTtlMs) return t;
    signal?.throwIfAborted();
    if (this.loading) {
      await raceAbort(this.loading, signal);
      return this.ensureFresh(minTtlMs, signal);
    }
    let pending = this.inflight;
    if (pending === undefined) {
      if (this.stopped || this.revoked || this.permanent !== undefined || !this.started) return this.orUnavailable(t);
      // Rate-limits both min_ttl refreshes and on-demand retries while the IdP is failing.
      if (now - this.lastForcedAt < this.minForcedIntervalMs) return this.orUnavailable(t);
      this.lastForcedAt = now;
      pending = this.refresh({ needTtlMs: Math.max(0, minTtlMs) });
    }
    await raceAbort(pending, signal);
    return this.orUnavailable(this.current());
  }

  /** See TokenHandle.refreshAfterRejection. */
  async refreshAfterRejection(rejected: AccessToken, signal?: AbortSignal): Promise<AccessToken> {
    const t = this.current();
    if (t !== undefined && t.accessToken !== rejected.accessToken) return t;
    let pending = this.inflight;
    if (pending === undefined) {
      const now = this.clock.now();
      if (this.stopped || this.revoked || this.permanent !== undefined || !this.started) return this.orUnavailable(undefined);
      if (now - this.lastForcedAt < this.minForcedIntervalMs) return this.orUnavailable(undefined);
      this.lastForcedAt = now;
      pending = this.refresh({ needTtlMs: Number.MAX_SAFE_INTEGER });
    }
    await raceAbort(pending, signal);
    const next = this.current();
    return this.orUnavailable(next !== undefined && next.accessToken !== rejected.accessToken ? next : undefined);
  }

  /** Ready iff a valid token is held and no permanent failure is pending. */
  status(): TokenStatus {
    const t = this.current();
    if (this.permanent) return { name: this.name, ready: false, reason: this.permanent.reason, expiresAt: t?.expiresAt };
    if (t !== undefined) return { name: this.name, ready: true, expiresAt: t.expiresAt };
    let reason = 'not yet acquired';
    if (this.revoked) reason = 'revoked';
    else if (this.token !== undefined) reason = 'expired';
    else if (this.stopped) reason = 'stopped';
    return { name: this.name, ready: false, reason };
  }

  /**
   * ms until the next scheduled attempt, at least 1 000. With nothing scheduled (permanent
   * failure, stopped) the backoff maximum (60 000 by default).
   */
  retryAfterMs(): number {
    if (this.inflight) return 1_000;
    if (this.nextAttemptAt === undefined) return Math.max(1_000, this.backoff.bounds.maxMs);
    return Math.max(1_000, Math.ceil(this.nextAttemptAt - this.clock.now()));
  }

  // ---------------------------------------------------------------- single flight

  /** Starts an attempt, or joins the one in flight. Never rejects. */
  private refresh(opts: AttemptOptions): Promise<void> {
    if (this.inflight) return this.inflight;
    const p: Promise<void> = this.attempt(opts).finally(() => {
      if (this.inflight === p) this.inflight = undefined;
    });
    this.inflight = p;
    return p;
  }

  private async attempt(opts: AttemptOptions): Promise<void> {
    this.cancelTimer();
    if (this.stopped || this.revoked || this.permanent) return;
    const startedAt = this.clock.now();
    this.attemptStartedAt = startedAt;
    let creds: Credentials | undefined;
    try {
      creds = await this.readCredentials();
      this.seedHash = creds.seedHash;
      const result = this.shared ? await this.attemptShared(this.shared, creds, opts) : await this.attemptLocal(creds);
      if (this.stopped) return;
      this.backoff.reset();
      this.observe(result, startedAt);
      // A token issued already inside its refresh window (tiny lifetimes) must not become a grant loop.
      if (this.token) this.scheduleRefreshOf(this.token, this.clock.now() + this.backoff.bounds.minMs);
    } catch (err) {
      if (this.stopped) return;
      this.onFailure(err, startedAt, creds);
    }
  }

  private onFailure(err: unknown, startedAt: number, creds: Credentials | undefined): void {
    const permanent = permanentReason(err);
    if (permanent !== undefined) {
      this.permanent = { reason: permanent, fingerprint: creds?.fingerprint ?? '' };
      this.nextAttemptAt = undefined;
      this.observe('permanent_error', startedAt);
      // Still a token.refresh_failed (operators tail that one event), marked permanent, with no retry.
      this.log.error(
        { event: EVENTS.refreshFailed, error: errorSummary(err), attempt: this.backoff.attempt + 1, retry_in_ms: null, permanent: true, reason: permanent },
        'the IdP refused the credential; not retrying until the secret or seed changes',
      );
      return;
    }
    const held = this.current();
    const delay = this.backoff.next(held ? held.expiresAt - this.clock.now() : undefined);
    this.scheduleIn(delay);
    this.observe('transient_error', startedAt);
    this.log.warn(
      { event: EVENTS.refreshFailed, error: errorSummary(err), attempt: this.backoff.attempt, retry_in_ms: delay },
      'refresh failed; retrying',
    );
  }

  // ---------------------------------------------------------------- local store

  private async attemptLocal(creds: Credentials): Promise<RefreshResult> {
    let rt: string | undefined;
    let seedHash: string | undefined;
    let seedWon = false;
    if (this.config.grant === 'refresh_token') {
      // Without the stored state we do not know whether the seed was already rotated away:
      // presenting a consumed one makes IdPs revoke the whole grant. Read it first. The file store
      // is read before every grant: `tokend revoke` may have left a tombstone there meanwhile.
      if (!this.stateLoaded || this.store.kind === 'file') {
        const state = await this.store.load(this.name);
        this.stateLoaded = true;
        if (this.revokedFor(state)) {
          this.markRevoked(creds.fingerprint);
          throw revokedError(this.name);
        }
        if (state.refreshToken !== undefined && this.refreshToken === undefined) {
          this.refreshToken = state.refreshToken;
          this.refreshTokenSeedHash = state.seedHash;
        }
      }
      ({ rt, seedHash } = this.pickRefreshToken(this.refreshToken, this.refreshTokenSeedHash, creds));
      if (rt !== this.refreshToken) {
        // The seed won (new Secret): the old chain is abandoned; the store learns the new seedHash
        // with the first successful grant.
        this.refreshToken = rt;
        this.refreshTokenSeedHash = seedHash;
        this.refreshTokenUnsaved = false;
        seedWon = true;
      }
    }
    const result = await this.obtain(rt, this.abort.signal, seedHash);
    // Even when stopping: a rotated refresh token is saved before anything else.
    if (result.refreshToken !== undefined && result.refreshToken !== rt) {
      // RFC 6749 §6: the new refresh token replaces the old one, which must not be presented again.
      this.refreshToken = result.refreshToken;
      this.refreshTokenSeedHash = seedHash;
      this.refreshTokenUnsaved = true;
    } else if (seedWon) {
      this.refreshTokenUnsaved = true;
    }
    if (this.refreshTokenUnsaved) await this.persistRefreshToken();
    if (this.stopped) return 'success';
    this.publish(result.token, 'grant');
    this.track(
      this.store.saveAccessToken(this.name, result.token).catch((err: unknown) => {
        this.log.warn({ event: EVENTS.storeFailed, error: errorSummary(err), what: 'access_token' }, 'could not write the access token');
      }),
    );
    return 'success';
  }

  /**
   * Saves the held refresh token durably; on failure keeps it in memory and says so (the next
   * attempt or reconcile tries again). Writes are serialized and each writes the newest token at
   * the time it runs, so a slow retry can never put a consumed token back after a newer one.
   */
  private persistRefreshToken(): Promise<void> {
    const run = async (): Promise<void> => {
      const rt = this.refreshToken;
      if (rt === undefined || !this.refreshTokenUnsaved) return;
      try {
        await this.store.saveRefreshToken(this.name, rt, this.refreshTokenSeedHash);
        if (this.refreshToken === rt) this.refreshTokenUnsaved = false;
      } catch (err) {
        this.log.error(
          { event: EVENTS.storeFailed, error: errorSummary(err), what: 'refresh_token' },
          'could not save the rotated refresh token; keeping it in memory and retrying',
        );
      }
    };
    const next = this.refreshTokenWrites.then(run);
    this.refreshTokenWrites = next;
    this.track(next);
    return next;
  }

  // ---------------------------------------------------------------- shared store

  private async attemptShared(store: SharedStore, creds: Credentials, opts: AttemptOptions): Promise<RefreshResult> {
    // A holder that dies (or loses Redis) mid-grant lets its lease lapse without a commit: take
    // the lease right then instead of backing off, so a dead leader costs one lease period.
    for (let round = 1; ; round++) {
      if (!store.isAvailable()) return this.whenStoreDown(undefined);
      const outcome = await this.underLease(store, creds, opts);
      if (outcome.acquired) return outcome.value;

      // Another replica is refreshing: wait for its commit (or its lease to lapse), then adopt.
      await this.waitForCommit(outcome.holderTtlMs);
      const state = await store.load(this.name);
      if (this.canAdopt(state, creds, opts, false)) {
        this.publish(state.access, 'adopted');
        return 'adopted';
      }
      // A wake-up without an adoptable token (a reconnect notification, a commit of something
      // older) is not a failure yet: try the lease again, a bounded number of times.
      if (round >= MAX_LEASE_ROUNDS) {
        throw new TokendError('LEASE_LOST', `token ${this.name}: another replica holds the refresh lease and committed no newer token`);
      }
    }
  }

  private async underLease(store: SharedStore, creds: Credentials, opts: AttemptOptions): Promise<LeaseOutcome<RefreshResult>> {
    let granted: GrantResult | undefined;
    let presented: string | undefined;
    let chainSeedHash: string | undefined;
    try {
      return await store.withLease(this.name, async (lease): Promise<RefreshResult> => {
        this.log.debug({ event: EVENTS.leaseAcquired, fence: lease.fence }, 'refresh lease acquired');
        const state = await store.load(this.name);
        if (this.canAdopt(state, creds, opts, true)) {
          this.publish(state.access, 'adopted');
          return 'adopted';
        }
        let held = state.refreshToken;
        let heldSeedHash = state.seedHash;
        if (this.revokedFor(state)) {
          // Revoked by `tokend revoke` (on any replica): only a new seed may start a new chain.
          if (creds.seedHash === undefined || creds.seedHash === state.seedHash) throw revokedError(this.name);
          this.refreshToken = undefined;
        } else if (this.holdsNewerRefreshTokenThan(state)) {
          // Our last commit failed with its outcome unknown and did not land: the store still has
          // the token we presented (consumed); ours is its successor.
          held = this.refreshToken;
          heldSeedHash = this.refreshTokenSeedHash;
        } else if (held === undefined && this.refreshToken !== undefined && this.config.grant === 'refresh_token') {
          // The shared store lost its refresh token (FLUSHALL, failover to an empty replica). The
          // one this replica holds is the newest it has seen (every commit reaches it by watch);
          // falling back to the seed would present a consumed token and get the grant revoked.
          this.log.warn({ event: EVENTS.storeRestored, what: 'refresh_token' }, 'the shared store lost the refresh token; using the one held in memory');
          held = this.refreshToken;
          heldSeedHash = this.refreshTokenSeedHash;
        }
        const { rt, seedHash } =
          this.config.grant === 'refresh_token'
            ? this.pickRefreshToken(held, heldSeedHash, creds)
            : { rt: undefined, seedHash: undefined };
        presented = rt;
        chainSeedHash = seedHash;
        const result = await this.obtain(rt, AbortSignal.any([this.abort.signal, lease.signal]), seedHash);
        granted = result;
        await this.commit(store, lease, result, rt, seedHash);
        if (!this.stopped) this.publish(result.token, 'grant');
        return 'success';
      });
    } catch (err) {
      if (hasCode(err, 'STORE_UNAVAILABLE')) return { acquired: true, value: await this.whenStoreDown(err, granted, presented, chainSeedHash) };
      throw err;
    }
  }

  private async commit(
    store: SharedStore,
    lease: Lease,
    result: GrantResult,
    rt: string | undefined,
    seedHash: string | undefined,
  ): Promise<void> {
    const rotated = result.refreshToken !== undefined && result.refreshToken !== rt;
    // When the seed won, commit it (or its successor) with the new seedHash so other replicas switch too.
    const refreshToken = result.refreshToken ?? rt;
    try {
      const write = store.commit(lease, { access: result.token, refreshToken, seedHash });
      this.track(write.catch(() => undefined));
      await write;
      if (refreshToken !== undefined) this.rememberRefreshToken(refreshToken, seedHash, rotated ? rt : undefined);
    } catch (err) {
      if (hasCode(err, 'LEASE_LOST')) {
        this.log.warn({ event: EVENTS.leaseLost, error: errorSummary(err) }, 'lost the refresh lease before committing; nothing written');
      }
      if (rotated) {
        this.log.error(
          { event: EVENTS.refreshTokenLost, error: errorSummary(err) },
          'a rotated refresh token could not be committed to the shared store',
        );
      }
      throw err;
    }
  }

  /**
   * The shared store is down (or went down mid-attempt). client_credentials: grant without the
   * lease (or use the grant already made) and serve it locally. refresh_token: no grant; keep
   * serving the held token and retry with backoff.
   */
  private async whenStoreDown(err: unknown, granted?: GrantResult, presented?: string, seedHash?: string): Promise<RefreshResult> {
    if (decideWhenStoreDown(this.config.grant) === 'keep-serving') {
      if (granted !== undefined && !this.stopped) {
        // The IdP answered but the commit's outcome is unknown: serve the new token and hold its
        // refresh token, to be written back once the store answers (restoreShared).
        if (granted.refreshToken !== undefined && presented !== undefined) this.rememberRefreshToken(granted.refreshToken, seedHash, presented);
        this.publish(granted.token, 'grant');
      }
      throw hasCode(err, 'STORE_UNAVAILABLE')
        ? err
        : new TokendError('STORE_UNAVAILABLE', `token ${this.name}: shared store unavailable; not rotating the refresh token without it`);
    }
    const result = granted ?? (await this.obtain(undefined, this.abort.signal));
    if (!this.stopped) this.publish(result.token, 'grant');
    return 'success';
  }

  /**
   * A stored token may be adopted instead of granting when it is valid, from the current seed,
   * newer than ours, long enough for the caller, and (under the lease) not yet in its refresh window.
   */
  private canAdopt(
    state: StoredState,
    creds: Credentials,
    opts: AttemptOptions,
    underLease: boolean,
  ): state is StoredState & { access: AccessToken } {
    const access = state.access;
    const now = this.clock.now();
    if (!isUsable(access, this.clock) || !sameGrant(access, this.grantKey)) return false;
    if (this.config.grant === 'refresh_token' && creds.seedHash !== undefined && state.seedHash !== creds.seedHash) return false;
    if (this.token !== undefined && access.expiresAt <= this.token.expiresAt) return false;
    if (access.expiresAt - now <= opts.needTtlMs) return false;
    // random 1 = the earliest point of the jitter window: a token already in it is due.
    if (underLease && now >= refreshDueAt(access, { refreshAt: this.config.refreshAt, random: 1 })) return false;
    return true;
  }

  /** The stored state is a revocation tombstone for the refresh-token chain this replica is on. */
  private revokedFor(state: StoredState): boolean {
    return (
      state.revoked === true &&
      this.config.grant === 'refresh_token' &&
      (state.seedHash === undefined || this.seedHash === undefined || state.seedHash === this.seedHash)
    );
  }

  /** Another replica (or `tokend revoke`) revoked this token: forget it; wait for a new seed. */
  private markRevoked(fingerprint: string): void {
    if (this.stopped || this.revoked) return;
    if (this.refreshToken !== undefined) this.markConsumed(this.refreshToken);
    this.refreshToken = undefined;
    this.token = undefined;
    this.cancelTimer();
    this.nextAttemptAt = undefined;
    this.permanent = { reason: 'permanent failure: revoked', fingerprint };
    this.log.warn({ event: EVENTS.revoked }, 'the refresh token was revoked; waiting for a new seed');
  }

  private rememberRefreshToken(rt: string, seedHash: string | undefined, consumed: string | undefined): void {
    if (consumed !== undefined) this.markConsumed(consumed);
    if (this.consumed.has(secretHash(rt))) return;
    this.refreshToken = rt;
    this.refreshTokenSeedHash = seedHash;
  }

  /**
   * The store holds a refresh token this replica already presented (consumed) while this replica
   * holds its successor: a commit whose outcome was unknown did not land.
   */
  private holdsNewerRefreshTokenThan(state: StoredState): boolean {
    return (
      this.config.grant === 'refresh_token' &&
      state.refreshToken !== undefined &&
      this.refreshToken !== undefined &&
      this.refreshToken !== state.refreshToken &&
      this.consumed.has(secretHash(state.refreshToken)) &&
      !this.consumed.has(secretHash(this.refreshToken))
    );
  }

  /** The store lacks the refresh token this replica holds (data loss, or a commit that did not land). */
  private refreshTokenLost(state: StoredState): boolean {
    return (
      (this.config.grant === 'refresh_token' && state.refreshToken === undefined && this.refreshToken !== undefined) ||
      this.holdsNewerRefreshTokenThan(state)
    );
  }

  /** True when the shared store lacks what this replica holds (data loss), so it should be written back. */
  private storeLost(state: StoredState): boolean {
    if (!this.shared || !this.shared.isAvailable() || this.inflight !== undefined || state.revoked || this.permanent) return false;
    const rtLost = this.refreshTokenLost(state);
    const held = this.current();
    const accessLost = held !== undefined && (state.access === undefined || state.access.expiresAt < held.expiresAt - 1_000);
    return rtLost || accessLost;
  }

  /**
   * Writes back what the shared store lost (Redis FLUSHALL, restart without persistence, failover
   * to an empty replica): under the lease and fenced, so a newer commit is never overwritten.
   */
  private restoreShared(): Promise<void> {
    const store = this.shared;
    if (!store) return Promise.resolve();
    this.restoring ??= (async () => {
      try {
        await store.withLease(this.name, async (lease) => {
          const state = await store.load(this.name);
          if (!this.storeLost(state)) return;
          const held = this.current();
          if (held === undefined) return;
          const rtLost = this.refreshTokenLost(state);
          await store.commit(lease, {
            access: held,
            refreshToken: rtLost ? this.refreshToken : undefined,
            seedHash: rtLost ? this.refreshTokenSeedHash : undefined,
          });
          this.log.warn(
            { event: EVENTS.storeRestored, what: rtLost ? 'refresh_token' : 'access_token' },
            'the shared store had lost this token; wrote back the copy held in memory',
          );
        });
      } catch (err) {
        this.log.debug({ error: errorSummary(err) }, 'could not write back to the shared store; will try again');
      } finally {
        this.restoring = undefined;
      }
    })();
    return this.restoring;
  }

  /** Watch notification: some replica (this one included) committed, or the store reconnected. */
  private onCommitted(state: StoredState): void {
    for (const wake of this.commitWaiters) wake();
    this.commitWaiters.clear();
    if (this.stopped || this.revoked) return;
    if (this.revokedFor(state)) {
      void this.readCredentials().then((c) => this.markRevoked(c.fingerprint));
      return;
    }
    // Keep the fleet's newest refresh token in memory: if the shared store loses its data, a
    // replica can put it back instead of falling back to a consumed seed.
    if (
      this.config.grant === 'refresh_token' &&
      state.refreshToken !== undefined &&
      (this.seedHash === undefined || state.seedHash === this.seedHash)
    ) {
      this.rememberRefreshToken(state.refreshToken, state.seedHash, undefined);
    }
    if (this.storeLost(state)) void this.restoreShared();
    // An attempt in flight re-reads the store itself (and adopts from there); our own commits
    // arrive here too while we hold the lease.
    if (this.stopped || this.revoked || this.inflight !== undefined) return;
    const access = state.access;
    const now = this.clock.now();
    if (!isUsable(access, this.clock) || !sameGrant(access, this.grantKey)) return;
    if (this.token !== undefined && access.expiresAt <= this.token.expiresAt) return;
    if (this.config.grant === 'refresh_token' && this.seedHash !== undefined && state.seedHash !== this.seedHash) return;
    this.attemptStartedAt = now;
    this.publish(access, 'adopted');
    this.observe('adopted', now);
    this.permanent = undefined; // another replica's success proves the credential works
    this.backoff.reset();
    this.scheduleRefreshOf(access);
  }

  /** Resolves on the next watch notification or after ms; rejects when stopped. */
  private waitForCommit(ms: number): Promise<void> {
    const signal = this.abort.signal;
    return new Promise<void>((resolve, reject) => {
      if (signal.aborted) return reject(signal.reason);
      const done = (): void => {
        this.commitWaiters.delete(wake);
        signal.removeEventListener('abort', onAbort);
        timerController.abort();
      };
      const wake = (): void => {
        done();
        resolve();
      };
      const onAbort = (): void => {
        done();
        reject(signal.reason);
      };
      const timerController = new AbortController();
      this.commitWaiters.add(wake);
      signal.addEventListener('abort', onAbort, { once: true });
      // A few ms past the holder's TTL, so its lease has surely lapsed when we try again.
      sleep(this.clock, Math.max(0, ms) + LEASE_LAPSE_SLACK_MS, timerController.signal).then(
        () => {
          done();
          resolve();
        },
        () => undefined,
      );
    });
  }

  // ---------------------------------------------------------------- helpers

  /** Presents rt (never a consumed one) and records rotation. */
  private async obtain(rt: string | undefined, signal: AbortSignal, seedHash?: string): Promise<GrantResult> {
    if (this.config.grant === 'refresh_token') {
      if (rt === undefined) {
        throw localRefusal(`token ${this.name}: no refresh token (refreshTokenFile / refreshToken) is available`, 'no refresh token');
      }
      if (this.consumed.has(secretHash(rt))) {
        throw localRefusal(
          `token ${this.name}: the only refresh token available was already used and rotated away`,
          'refresh token already used',
        );
      }
    }
    let result: GrantResult;
    try {
      // A refresh_token grant is never aborted by stop(): once sent, the IdP may rotate, and the
      // answer must land and be saved. The source's own timeout bounds it.
      result = await this.source.obtain(rt, this.config.grant === 'refresh_token' ? undefined : signal);
    } catch (err) {
      const rotated = rotatedRefreshTokenOf(err);
      if (rt !== undefined && rotated !== undefined && rotated !== rt) this.keepRotated(rt, rotated, seedHash);
      throw err;
    }
    if (rt !== undefined && result.refreshToken !== undefined && result.refreshToken !== rt) this.markConsumed(rt);
    return { ...result, token: { ...result.token, grantKey: this.grantKey } };
  }

  /** An answer was refused but the IdP rotated: hold (and, for a local store, save) the new refresh token. */
  private keepRotated(presented: string, rotated: string, seedHash: string | undefined): void {
    this.markConsumed(presented);
    this.refreshToken = rotated;
    this.refreshTokenSeedHash = seedHash ?? this.refreshTokenSeedHash;
    if (!this.shared) {
      this.refreshTokenUnsaved = true;
      void this.persistRefreshToken();
    }
  }

  /** Remembers (a hash of) a refresh token that must never be presented again; keeps the newest 64. */
  private markConsumed(rt: string): void {
    this.consumed.add(secretHash(rt));
    if (this.consumed.size > 64) this.consumed.delete(this.consumed.values().next().value as string);
  }

  /**
   * The refresh token to present: the stored/held one if it descends from the current seed,
   * else the seed (a new Secret was mounted, or nothing was stored yet).
   */
  private pickRefreshToken(
    held: string | undefined,
    heldSeedHash: string | undefined,
    creds: Credentials,
  ): { rt: string | undefined; seedHash: string | undefined } {
    // An unreadable seed file (mid-remount) or no seed configured: keep the chain we have.
    if (held !== undefined && (creds.seedHash === undefined || heldSeedHash === creds.seedHash || creds.seed === undefined)) {
      return { rt: held, seedHash: heldSeedHash };
    }
    if (creds.seed === undefined && creds.seedError !== undefined) throw creds.seedError;
    if (held !== undefined) this.log.info({ event: EVENTS.seedChanged }, 'refresh-token seed changed: using the new seed');
    return { rt: creds.seed, seedHash: creds.seedHash };
  }

  /** True when a stored refresh token exists but descends from a seed other than the current one. */
  private seedChangedFor(state: StoredState): boolean {
    return (
      this.config.grant === 'refresh_token' &&
      state.refreshToken !== undefined &&
      this.seedHash !== undefined &&
      state.seedHash !== this.seedHash
    );
  }

  private async readCredentials(): Promise<Credentials> {
    let seed: string | undefined;
    let seedHash = this.seedHash;
    let seedError: unknown;
    let seedPart = 'none';
    if (this.config.grant === 'refresh_token') {
      try {
        seed = await this.source.readSeed();
        seedHash = seed === undefined ? undefined : secretHash(seed);
        seedPart = seedHash ?? 'none';
      } catch (err) {
        seedError = err;
        seedPart = `unreadable:${hasCode(err) ? err.code : 'error'}`;
      }
    }
    let credPart = '';
    if (this.source.credentialFingerprint) {
      try {
        credPart = await this.source.credentialFingerprint();
      } catch (err) {
        credPart = `unreadable:${hasCode(err) ? err.code : 'error'}`;
      }
    }
    return { seed, seedHash, seedError, fingerprint: `${seedPart}|${credPart}` };
  }

  private async reconcileNow(): Promise<void> {
    this.current(); // logs token.expired if it lapsed without a timer noticing (clock jump)
    if (this.refreshTokenUnsaved && !this.inflight && !this.shared) await this.persistRefreshToken();
    const creds = await this.readCredentials();
    if (this.stopped || this.revoked) return;
    if (this.config.grant === 'refresh_token' && creds.seedHash !== undefined && creds.seedHash !== this.seedHash) {
      this.log.info({ event: EVENTS.seedChanged }, 'refresh-token seed changed: refreshing with the new seed');
      this.seedHash = creds.seedHash;
      this.permanent = undefined;
      this.backoff.reset();
      void this.refresh({ needTtlMs: 0 });
      return;
    }
    if (this.permanent) {
      if (creds.fingerprint !== this.permanent.fingerprint) {
        this.log.info({ event: EVENTS.seedChanged }, 'credentials changed after a permanent failure: trying again');
        this.permanent = undefined;
        this.backoff.reset();
        void this.refresh({ needTtlMs: 0 });
      }
      return;
    }
    if (this.inflight) return;
    if (!this.shared && this.store.kind === 'file' && this.config.grant === 'refresh_token' && this.token !== undefined) {
      // `tokend revoke` run beside a running daemon leaves a tombstone: stop serving the revoked token.
      const state = await this.store.load(this.name).catch(() => undefined);
      if (state !== undefined && this.revokedFor(state)) {
        this.markRevoked(creds.fingerprint);
        return;
      }
    }
    if (this.shared && this.shared.isAvailable()) {
      // FLUSHALL and an empty failover replica announce nothing: look.
      const state = await this.shared.load(this.name).catch(() => undefined);
      if (state !== undefined && this.storeLost(state)) await this.restoreShared();
    }
    // Timers run on monotonic time; the wall clock decides whether a refresh is overdue.
    if (this.nextAttemptAt === undefined || this.clock.now() >= this.nextAttemptAt) void this.refresh({ needTtlMs: 0 });
  }

  private publish(token: AccessToken, how: 'grant' | 'adopted' | 'loaded'): void {
    const prev = this.token;
    if (prev !== undefined && prev.accessToken === token.accessToken && prev.expiresAt === token.expiresAt) return;
    const first = !this.everPublished;
    this.token = token;
    this.everPublished = true;
    this.armExpiryTimer(token);
    for (const l of this.listeners) {
      try {
        l.tokenChanged(this.name, token, how);
      } catch (err) {
        this.log.error({ error: errorSummary(err) }, 'a token listener failed');
      }
    }
    const expires_at = Math.floor(token.expiresAt / 1000);
    if (how === 'loaded') {
      this.log.info({ event: EVENTS.loaded, expires_at }, 'loaded a valid token from the store');
    } else {
      this.log.info(
        { event: first ? EVENTS.acquired : EVENTS.refreshed, expires_at, duration_ms: how === 'grant' ? Math.max(0, this.clock.now() - this.attemptStartedAt) : 0, adopted: how === 'adopted' },
        how === 'adopted' ? 'adopted a token another replica obtained' : first ? 'token acquired' : 'token refreshed',
      );
    }
  }

  private armExpiryTimer(token: AccessToken): void {
    this.expiryTimer?.cancel();
    if (this.stopped) return;
    this.expiryTimer = this.clock.setTimer(() => {
      this.expiryTimer = undefined;
      if (this.token === token) this.current();
    }, token.expiresAt - this.clock.now());
  }

  private noteExpired(token: AccessToken): void {
    if (this.expiredLoggedFor === token) return;
    this.expiredLoggedFor = token;
    this.log.warn({ event: EVENTS.expired, expires_at: Math.floor(token.expiresAt / 1000) }, 'token expired without a replacement');
  }

  /** Schedules the refresh of token at its jittered due time, but not before notBefore (ms). */
  private scheduleRefreshOf(token: AccessToken, notBefore = Number.NEGATIVE_INFINITY): void {
    // Replicas sharing a store jitter by the token itself: they all pick the same moment, one takes
    // the lease and the rest adopt its result, so the fleet grants exactly as often as one
    // instance (independent jitter would let the earliest of N random picks win every cycle).
    const random = this.shared ? this.sharedJitter(token) : this.random();
    this.scheduleAt(Math.max(notBefore, refreshDueAt(token, { refreshAt: this.config.refreshAt, random })));
  }

  private scheduleIn(ms: number): void {
    this.scheduleAt(this.clock.now() + ms);
  }

  private scheduleAt(at: number): void {
    this.cancelTimer();
    if (this.stopped || this.revoked) return;
    this.nextAttemptAt = at;
    this.timer = this.clock.setTimer(() => {
      this.timer = undefined;
      void this.refresh({ needTtlMs: 0 });
    }, at - this.clock.now());
  }

  private cancelTimer(): void {
    this.timer?.cancel();
    this.timer = undefined;
    this.nextAttemptAt = undefined;
  }

  private observe(result: RefreshResult, startedAt: number): void {
    this.observer?.refreshFinished(this.name, result, Math.max(0, this.clock.now() - startedAt));
  }

  private track(p: Promise<unknown>): void {
    this.writes.add(p);
    void p.finally(() => this.writes.delete(p));
  }

  private orUnavailable(t: AccessToken | undefined): AccessToken {
    if (t !== undefined) return t;
    throw new TokendError('TOKEN_UNAVAILABLE', `token ${this.name}: no valid token (${this.status().reason ?? 'unknown'})`);
  }
}

/** A GRANT_PERMANENT raised without asking the IdP, e.g. when there is no refresh token to present. */
function localRefusal(message: string, reason: string): TokendError {
  return new TokendError('GRANT_PERMANENT', message, { reason });
}

function revokedError(name: string): TokendError {
  return localRefusal(`token ${name}: the refresh token was revoked; mount a new seed to continue`, 'revoked');
}

/** 'permanent failure: <oauth error or cause>' for errors retrying cannot fix, else undefined. */
export function permanentReason(err: unknown): string | undefined {
  if (hasCode(err, 'GRANT_PERMANENT')) return `permanent failure: ${err.oauthError ?? err.reason ?? 'grant refused'}`;
  if (hasCode(err, 'CONFIG_INVALID')) return 'permanent failure: config_invalid';
  return undefined;
}

/** The loggable part of an error: code, OAuth error, HTTP status, and our own message (never a library's). */
export function errorSummary(err: unknown): Record<string, unknown> {
  if (err instanceof TokendError) {
    const out: Record<string, unknown> = { code: err.code, message: err.message };
    if (err.oauthError !== undefined) out.oauth_error = err.oauthError;
    if (err.status !== undefined) out.status = err.status;
    return out;
  }
  return { code: 'INTERNAL', type: err instanceof Error ? err.name : typeof err };
}
