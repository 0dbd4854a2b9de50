import type { Clock } from '../clock.js';
import type { TokenConfig } from '../config/types.js';
import { TokendError } from '../errors.js';
import { errorSummary, EVENTS, type Logger } from '../log.js';
import type { TokenSource } from '../oauth/source.js';
import type { StoredState, TokenStore } from '../store/store.js';
import { isUsable, remainingMs, sameGrant, type AccessToken } from '../token.js';
import { linkSignals, raceAbort } from '../util/abort.js';
import { SingleFlight } from '../util/single-flight.js';
import { AttemptTimer } from './attempt-timer.js';
import { Backoff, type RetryBounds } from './backoff.js';
import { HeldToken } from './held-token.js';
import { chainFor, type Chain } from './chain.js';
import { Coordinator, type Obtained } from './coordinator.js';
import { readCredentials, type Credentials } from './credentials.js';
import type { RefreshObserver, RefreshResult, TokenHandle, TokenListener, TokenStatus } from './handle.js';
import { grantKeyOf, msUntilRefresh, permanentReason, tokenJitter } from './policy.js';
import { revokeToken } from './revocation.js';

/** Dependencies of a {@link Refresher}. Durations in ms. */
export interface RefresherDeps {
  readonly config: TokenConfig;
  /**
   * The grant. When it implements credentialFingerprint(), a permanent failure is retried as soon
   * as the fingerprint changes (a new Kubernetes Secret); otherwise only the seed is watched.
   */
  readonly source: TokenSource;
  readonly store: TokenStore;
  readonly clock: Clock;
  /** Uniform random in [0, 1), for backoff. */
  readonly random: () => number;
  /** Already a child logger bound to `{ token: name }`. */
  readonly logger: Logger;
  readonly observer?: RefreshObserver | undefined;
  /** Told about every new token held (outputs, notifications). */
  readonly listeners?: readonly TokenListener[] | undefined;
  /** Refreshes forced by a caller (min_ttl, an upstream's 401) happen at most once per this interval while a valid token is held. Default 5 000. */
  readonly minForcedRefreshIntervalMs?: number | undefined;
  /** Retry bounds (see backoff.ts). */
  readonly backoff?: Partial<RetryBounds> | undefined;
  /**
   * Refresh jitter in [0, 1) for a token. Default tokenJitter: derived from the token, so replicas
   * holding the same token aim at the same moment, one takes the lease and the rest adopt.
   */
  readonly jitter?: ((token: AccessToken) => number) | undefined;
  /** See CoordinatorDeps.writeBackWaitMs. */
  readonly writeBackWaitMs?: number | undefined;
  /** Longest a caller (min_ttl, an upstream's 401) waits for an attempt, in ms. Default 15 000. */
  readonly maxCallerWaitMs?: number | undefined;
}

/** While no valid token exists, a caller may trigger an attempt at most this often (ms). */
const MIN_ON_DEMAND_INTERVAL_MS = 1_000;

interface PermanentFailure {
  readonly reason: string;
  /** Credentials fingerprint when it failed; a different one means "try again". */
  readonly fingerprint: string;
}

/**
 * Keeps one token fresh: loads it, refreshes it ahead of expiry (jittered), retries with backoff
 * and serves it from memory. How a token is obtained, adopted and committed is the Coordinator's;
 * which refresh token to present is the Chain's. What remains here: schedule, single flight,
 * backoff and serving.
 *
 * Invariants: at most one attempt in flight (timer, reconcile and callers share it); an expired
 * token is never handed out; a permanent failure stops retries until the credentials change.
 *
 * Longer than the house's ~400 lines on purpose: it is the TokenHandle, and every path into it
 * (timer, tick, store notification, callers) must share one single flight and one state. Its
 * parts live in their own modules: HeldToken (what is served), AttemptTimer, Chain, Coordinator,
 * PendingWrite, Backoff and the pure policy.
 */
export class Refresher implements TokenHandle {
  readonly name: string;
  private readonly d: RefresherDeps;
  private readonly chain: Chain;
  private readonly coordinator: Coordinator;
  private readonly backoff: Backoff;
  private readonly jitter: (token: AccessToken) => number;
  private readonly minForcedIntervalMs: number;
  private readonly maxCallerWaitMs: number;
  private readonly grantKey: string;
  private readonly abort = new AbortController();
  private readonly attempts = new SingleFlight<'attempt', void>();

  private readonly held: HeldToken;
  private readonly timer: AttemptTimer;
  /** sha256 of the seed as last read. */
  private seedHash: string | undefined;
  /** No attempt before this monotonic time (the IdP's Retry-After). */
  private notBefore = Number.NEGATIVE_INFINITY;
  private lastForcedAt = Number.NEGATIVE_INFINITY;
  private attemptStartedAt = 0;
  private permanent: PermanentFailure | undefined;
  /** The last failed attempt's message, until one succeeds. */
  private lastError: string | undefined;
  private started = false;
  /** Set while start() reads the stored state: callers wait for it rather than grant. */
  private loading: Promise<boolean> | undefined;
  private stopped = false;
  private revoked = false;
  private reconciling = false;
  private unwatch: (() => void) | undefined;

  constructor(deps: RefresherDeps) {
    this.d = deps;
    this.name = deps.config.name;
    this.chain = chainFor(deps.config);
    this.grantKey = grantKeyOf(deps.config);
    this.minForcedIntervalMs = deps.minForcedRefreshIntervalMs ?? 5_000;
    this.maxCallerWaitMs = deps.maxCallerWaitMs ?? 15_000;
    this.backoff = new Backoff({ ...deps.backoff, random: deps.random });
    // Computed once per token, not on every tick (a SHA-256 per token every 15 s was most of the
    // idle CPU at 10,000 tokens).
    const jitterOf = deps.jitter ?? ((t: AccessToken) => tokenJitter(t.accessToken));
    let jitterFor: AccessToken | undefined;
    let jitter = 0;
    this.jitter = (t) => {
      if (t !== jitterFor) {
        jitterFor = t;
        jitter = jitterOf(t);
      }
      return jitter;
    };
    this.held = new HeldToken(this.name, deps.clock, deps.logger, deps.listeners ?? []);
    this.timer = new AttemptTimer(deps.clock, () => void this.refresh(0));
    this.coordinator = new Coordinator({
      name: this.name,
      store: deps.store,
      source: deps.source,
      chain: this.chain,
      clock: deps.clock,
      log: deps.logger,
      grantKey: this.grantKey,
      refreshAt: deps.config.refreshAt,
      stopSignal: this.abort.signal,
      writeBackWaitMs: deps.writeBackWaitMs,
      random: deps.random,
    });
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
    this.unwatch = this.d.store.watch(this.name, (state) => this.onStoreChange(state));
    const loading = this.loadStored();
    this.loading = loading;
    let needGrant: boolean;
    try {
      needGrant = await loading;
    } finally {
      this.loading = undefined;
    }
    if (needGrant && !this.stopped) await this.refresh(0);
  }

  /** Reads the seed and the stored state; true when a grant is needed now. Never rejects. */
  private async loadStored(): Promise<boolean> {
    const creds = await this.readCredentials();
    this.seedHash = creds.seedHash;
    let state: StoredState;
    try {
      state = await this.d.store.load(this.name);
    } catch (err) {
      this.d.logger.warn({ event: EVENTS.refreshFailed, error: errorSummary(err), attempt: 0, retry_in_ms: 0 }, 'could not load the stored state');
      return true;
    }
    if (this.stopped) return false;
    if (this.coordinator.revokedFor(state, creds.seedHash)) {
      this.markRevoked(creds.fingerprint);
      return false;
    }
    this.chain.observe(state, undefined);
    const seedChanged = this.chain.presents && state.refreshToken !== undefined && creds.seedHash !== undefined && state.seedHash !== creds.seedHash;
    // A stored token obtained under other settings (scope, audience, client… changed) is not served.
    if (isUsable(state.access, this.d.clock) && sameGrant(state.access, this.grantKey)) {
      this.held.publish(state.access, 'loaded', this.d.clock.now());
      // A new seed means a new credential: refresh with it now, serving the stored token meanwhile.
      if (!seedChanged) {
        this.scheduleRefreshOf(state.access);
        return false;
      }
    }
    return true;
  }

  /** Cancels timers, aborts sleeps and client_credentials grants in flight, waits for writes in flight. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.timer.cancel();
    this.held.close();
    this.unwatch?.();
    this.unwatch = undefined;
    this.abort.abort(new TokendError('TOKEN_UNAVAILABLE', `token ${this.name}: refresher stopped`));
    this.coordinator.stop();
    await this.attempts.current('attempt')?.catch(() => undefined);
    // A rotation the store has not confirmed gets one last try before the process goes.
    await this.coordinator.flush();
  }

  /**
   * Wall-clock check, called periodically by the daemon. Starts an overdue refresh (VM suspended,
   * clock stepped, timer lost), retries a write the store has not confirmed, notices a changed seed
   * or, after a permanent failure, changed credentials.
   */
  reconcile(): void {
    if (!this.started || this.stopped || this.revoked || this.reconciling) return;
    this.reconciling = true;
    this.reconcileNow()
      .catch((err: unknown) => this.d.logger.warn({ event: EVENTS.refreshFailed, error: errorSummary(err) }, 'reconcile failed'))
      .finally(() => {
        this.reconciling = false;
      });
  }

  /**
   * The cheap periodic check (every reconcile tick): no I/O unless something is due. Logs an expiry
   * no timer noticed, retries a write the store has not confirmed, starts an overdue refresh; only
   * a token in permanent failure re-reads its credentials (the full reconcile) each time.
   */
  tick(): void {
    if (!this.started || this.stopped || this.revoked) return;
    if (this.permanent) return this.reconcile();
    this.current();
    if (this.coordinator.hasPendingWrite) void this.coordinator.flush();
    if (this.attempts.current('attempt') === undefined && this.isOverdue()) void this.refresh(0);
  }

  private async reconcileNow(): Promise<void> {
    this.current(); // logs token.expired if it lapsed without a timer noticing (clock jump)
    if (this.coordinator.hasPendingWrite) await this.coordinator.flush();
    const creds = await this.readCredentials();
    if (this.stopped || this.revoked) return;
    if (this.chain.presents && creds.seedHash !== undefined && creds.seedHash !== this.seedHash) {
      this.d.logger.info({ event: EVENTS.seedChanged }, 'refresh-token seed changed: refreshing with the new seed');
      this.seedHash = creds.seedHash;
      return this.retryNow();
    }
    if (this.permanent) {
      if (creds.fingerprint !== this.permanent.fingerprint) {
        this.d.logger.info({ event: EVENTS.seedChanged }, 'credentials changed after a permanent failure: trying again');
        this.retryNow();
      }
      return;
    }
    if (this.attempts.current('attempt')) return;
    if (this.isOverdue()) void this.refresh(0);
  }

  /** RFC 7009 revocation of the refresh and access tokens, then removal of the stored copies (see revocation.ts). */
  async revoke(): Promise<void> {
    await this.attempts.current('attempt')?.catch(() => undefined);
    this.revoked = true;
    this.timer.cancel();
    const held = this.held.latest;
    try {
      await revokeToken({ name: this.name, store: this.d.store, source: this.d.source, chain: this.chain, held, clock: this.d.clock, log: this.d.logger, signal: this.abort.signal });
    } catch (err) {
      this.revoked = false;
      if (this.started && !this.stopped && held !== undefined && !this.permanent) this.scheduleRefreshOf(held);
      throw err;
    }
    this.held.drop();
  }

  // ---------------------------------------------------------------- TokenHandle

  /** The published token if it is still valid; never an expired one. */
  current(): AccessToken | undefined {
    return this.held.current();
  }

  /**
   * Returns a token with more than minTtlMs left, refreshing first if needed (joining the attempt
   * in flight). Refreshes forced only by min_ttl happen at most once per minForcedRefreshIntervalMs
   * (once a second while no valid token exists, never inside the IdP's Retry-After); otherwise,
   * and when the refresh fails, the current valid token is returned even with less than minTtlMs
   * left. Rejects with TOKEN_UNAVAILABLE when no valid token exists, or with signal's reason.
   */
  async ensureFresh(minTtlMs: number, signal?: AbortSignal): Promise<AccessToken> {
    const t = this.current();
    if (t !== undefined && remainingMs(t, this.d.clock) > minTtlMs) return t;
    signal?.throwIfAborted();
    if (this.loading) {
      await raceAbort(this.loading, signal);
      return this.ensureFresh(minTtlMs, signal);
    }
    const pending = this.attempts.current('attempt') ?? (this.mayForce(t) ? this.refresh(Math.max(0, minTtlMs)) : undefined);
    if (pending !== undefined) await this.waitBounded(pending, signal);
    return this.orUnavailable(this.current());
  }

  /**
   * Waits for an attempt on a caller's behalf, at most maxCallerWaitMs: an attempt may wait for
   * another replica's lease or a slow IdP far longer than a caller should hang. The attempt goes on.
   */
  private async waitBounded(pending: Promise<void>, signal: AbortSignal | undefined): Promise<void> {
    const bound = new AbortController();
    const timer = this.d.clock.setTimer(() => bound.abort(), this.maxCallerWaitMs);
    const linked = linkSignals(signal, bound.signal);
    try {
      await raceAbort(pending, linked.signal);
    } catch (err) {
      if (!bound.signal.aborted || signal?.aborted) throw err;
    } finally {
      timer.cancel();
      linked.dispose();
    }
  }

  /** See TokenHandle.wake. */
  wake(): void {
    if (this.current() !== undefined || this.attempts.current('attempt') !== undefined) return;
    if (this.mayForce(undefined)) void this.refresh(0);
  }

  /** See TokenHandle.refreshAfterRejection. */
  async refreshAfterRejection(rejected: AccessToken, signal?: AbortSignal): Promise<AccessToken> {
    const t = this.current();
    if (t !== undefined && t.accessToken !== rejected.accessToken) return t;
    const pending = this.attempts.current('attempt') ?? (this.mayForce(undefined) ? this.refresh(Number.MAX_SAFE_INTEGER) : undefined);
    if (pending !== undefined) await this.waitBounded(pending, signal);
    const next = this.current();
    return this.orUnavailable(next !== undefined && next.accessToken !== rejected.accessToken ? next : undefined);
  }

  /** Runs a refresh now if the held token is already due (a one-shot run must not hand over a token about to be replaced). */
  async refreshIfDue(): Promise<void> {
    const t = this.current();
    if (t === undefined || msUntilRefresh(t, this.d.clock, { refreshAt: this.d.config.refreshAt, random: this.jitter(t) }) > 0) return;
    await this.refresh(0);
  }

  /** Ready iff a valid token is held and no permanent failure is pending. */
  status(): TokenStatus {
    const t = this.current();
    if (this.permanent) return { name: this.name, ready: false, reason: this.permanent.reason, expiresAt: t?.expiresAt };
    if (t !== undefined) return { name: this.name, ready: true, expiresAt: t.expiresAt };
    let reason = 'not yet acquired';
    if (this.revoked) reason = 'revoked';
    else if (this.held.latest !== undefined) reason = 'expired';
    else if (this.stopped) reason = 'stopped';
    return { name: this.name, ready: false, reason, ...(this.lastError !== undefined ? { lastError: this.lastError } : {}) };
  }

  /** ms until the next scheduled attempt, at least 1 000; the backoff maximum when nothing is scheduled. */
  retryAfterMs(): number {
    if (this.attempts.current('attempt')) return 1_000;
    const next = this.timer.msUntil();
    if (next === undefined) return Math.max(1_000, this.backoff.bounds.maxMs);
    return Math.max(1_000, Math.ceil(next));
  }

  // ---------------------------------------------------------------- attempts

  /** May a caller start an attempt now (rate limits, Retry-After, no permanent failure)? Records it. */
  private mayForce(held: AccessToken | undefined): boolean {
    if (this.stopped || this.revoked || this.permanent !== undefined || !this.started) return false;
    const now = this.d.clock.monotonic();
    if (now < this.notBefore) return false;
    const interval = held === undefined ? MIN_ON_DEMAND_INTERVAL_MS : this.minForcedIntervalMs;
    if (now - this.lastForcedAt < interval) return false;
    this.lastForcedAt = now;
    return true;
  }

  /** Starts an attempt, or joins the one in flight. Never rejects. */
  private refresh(needTtlMs: number): Promise<void> {
    return this.attempts.run('attempt', () => this.attempt(needTtlMs));
  }

  private async attempt(needTtlMs: number): Promise<void> {
    this.timer.cancel();
    if (this.stopped || this.revoked || this.permanent) return;
    const startedAt = this.d.clock.now();
    this.attemptStartedAt = startedAt;
    let creds: Credentials | undefined;
    try {
      creds = await this.readCredentials();
      this.seedHash = creds.seedHash;
      const obtained = await this.coordinator.obtain({ creds, needTtlMs, held: this.current() });
      this.backoff.reset();
      this.notBefore = Number.NEGATIVE_INFINITY;
      this.permanent = undefined;
      this.lastError = undefined;
      this.onObtained(obtained, startedAt);
    } catch (err) {
      if (this.stopped) return;
      this.onFailure(err, startedAt, creds);
    }
  }

  private onObtained(obtained: Obtained, startedAt: number): void {
    const lifetimes = obtained.lifetimeDisagreement;
    if (lifetimes !== undefined) {
      this.d.logger.warn(
        { event: EVENTS.lifetimeDisagreement, expires_in_ms: lifetimes.expiresInMs, jwt_lifetime_ms: lifetimes.jwtLifetimeMs },
        "the IdP's expires_in and the access token's own exp disagree; using the shorter",
      );
    }
    if (this.stopped) return;
    this.held.publish(obtained.token, obtained.origin, this.attemptStartedAt);
    this.observe(obtained.origin === 'adopted' ? 'adopted' : 'success', startedAt);
    // A token issued already inside its refresh window (tiny lifetimes) must not become a grant loop.
    const t = this.held.latest;
    if (t) this.scheduleRefreshOf(t, this.backoff.bounds.minMs);
  }

  private onFailure(err: unknown, startedAt: number, creds: Credentials | undefined): void {
    this.lastError = err instanceof TokendError ? err.message : 'unexpected error';
    const permanent = permanentReason(err);
    if (permanent !== undefined) {
      this.permanent = { reason: permanent, fingerprint: creds?.fingerprint ?? '' };
      this.timer.cancel();
      this.observe('permanent_error', startedAt);
      // Still a token.refresh_failed (operators tail that one event), marked permanent, with no retry.
      this.d.logger.error(
        { event: EVENTS.refreshFailed, error: errorSummary(err), attempt: this.backoff.attempt + 1, retry_in_ms: null, permanent: true, reason: permanent },
        'the IdP refused the credential; not retrying until the secret or seed changes',
      );
      return;
    }
    const held = this.current();
    const retryAfter = err instanceof TokendError ? err.retryAfterMs : undefined;
    const delay = this.backoff.nextAfter(held === undefined ? undefined : remainingMs(held, this.d.clock), retryAfter);
    if (retryAfter !== undefined) this.notBefore = this.d.clock.monotonic() + delay;
    this.scheduleIn(delay);
    this.observe('transient_error', startedAt);
    this.d.logger.warn(
      { event: EVENTS.refreshFailed, error: errorSummary(err), attempt: this.backoff.attempt, retry_in_ms: delay },
      'refresh failed; retrying',
    );
  }

  /** Clears a permanent failure and backoff and tries at once (new seed, new credentials). */
  private retryNow(): void {
    this.permanent = undefined;
    this.backoff.reset();
    this.notBefore = Number.NEGATIVE_INFINITY;
    void this.refresh(0);
  }

  // ---------------------------------------------------------------- the store's notifications

  /** Watch notification: some process (this one included) wrote the token, or the store reconnected. */
  private onStoreChange(state: StoredState): void {
    this.coordinator.notified();
    // Until start() has read the store itself, its own load decides (a lone instance restarting
    // logs token.loaded, not "adopted").
    if (this.stopped || this.revoked || this.loading !== undefined || !this.started) return;
    if (this.coordinator.revokedFor(state, this.seedHash)) {
      void this.readCredentials().then((c) => this.markRevoked(c.fingerprint));
      return;
    }
    // Keep the fleet's newest refresh token in memory: if the store loses its data, this process
    // can put it back instead of falling back to a consumed seed.
    this.chain.observe(state, this.seedHash);
    // An attempt in flight re-reads the store itself; our own commits arrive here too.
    if (this.attempts.current('attempt') !== undefined) return;
    if (this.permanent === undefined) this.coordinator.restoreIfLost(state, this.current());
    const held = this.current();
    if (!this.coordinator.canAdopt(state, { seedHash: this.seedHash, needTtlMs: 0, held }, false)) return;
    this.attemptStartedAt = this.d.clock.now();
    this.held.publish(state.access, 'adopted', this.attemptStartedAt);
    this.observe('adopted', this.attemptStartedAt);
    this.permanent = undefined; // another replica's success proves the credential works
    this.backoff.reset();
    this.scheduleRefreshOf(state.access);
  }

  /** Another process (or `tokend revoke`) revoked this token: forget it; wait for a new seed. */
  private markRevoked(fingerprint: string): void {
    if (this.stopped || this.revoked) return;
    this.chain.revoke();
    this.held.drop();
    this.timer.cancel();
    this.permanent = { reason: 'permanent failure: revoked', fingerprint };
    this.d.logger.warn({ event: EVENTS.revoked }, 'the refresh token was revoked; waiting for a new seed');
  }

  // ---------------------------------------------------------------- helpers

  private readCredentials(): Promise<Credentials> {
    return readCredentials(this.d.source, this.chain.presents, this.seedHash);
  }

  /** True when the refresh of the held token is due by either clock, or nothing is scheduled. */
  private isOverdue(): boolean {
    const next = this.timer.msUntil();
    if (next === undefined || next <= 0) return true;
    const t = this.held.latest;
    return t !== undefined && msUntilRefresh(t, this.d.clock, { refreshAt: this.d.config.refreshAt, random: this.jitter(t) }) <= 0;
  }

  /** Schedules the refresh of token at its jittered due time, but not sooner than minDelayMs. */
  private scheduleRefreshOf(token: AccessToken, minDelayMs = 0): void {
    const due = msUntilRefresh(token, this.d.clock, { refreshAt: this.d.config.refreshAt, random: this.jitter(token) });
    this.scheduleIn(Math.max(minDelayMs, due));
  }

  private scheduleIn(ms: number): void {
    if (this.stopped || this.revoked) return this.timer.cancel();
    this.timer.in(ms);
  }

  private observe(result: RefreshResult, startedAt: number): void {
    this.d.observer?.refreshFinished(this.name, result, Math.max(0, this.d.clock.now() - startedAt));
  }

  private orUnavailable(t: AccessToken | undefined): AccessToken {
    if (t !== undefined) return t;
    throw new TokendError('TOKEN_UNAVAILABLE', `token ${this.name}: no valid token (${this.status().reason ?? 'unknown'})`);
  }
}
