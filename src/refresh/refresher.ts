import { TokendError } from '../errors.js';
import { errorSummary, EVENTS } from '../log.js';
import type { StoredState } from '../store/store.js';
import { isUsable, remainingMs, sameGrant, type AccessToken } from '../token.js';
import { raceAbort } from '../util/abort.js';
import { SingleFlight } from '../util/single-flight.js';
import { HeldToken } from './held-token.js';
import { chainFor, type Chain } from './chain.js';
import { Coordinator, type Obtained } from './coordinator.js';
import { readCredentials, type Credentials } from './credentials.js';
import type { RefreshResult, TokenHandle, TokenStatus } from './handle.js';
import { grantKeyOf, tokenJitter } from './policy.js';
import { CallerGate } from './caller-gate.js';
import { Failures } from './failures.js';
import type { RefresherDeps } from './refresher-deps.js';
import { RefreshSchedule } from './schedule.js';
import { revokeToken } from './revocation.js';

/**
 * Keeps one token fresh: loads it, refreshes it ahead of expiry (jittered), retries with backoff
 * and serves it from memory. What remains here is the lifecycle and the single flight; the parts
 * are the Coordinator (how a token is obtained, adopted, committed), the Chain (which refresh token
 * to present), HeldToken (what is served), RefreshSchedule (when), CallerGate (what callers may
 * start, how long they wait), Failures (backoff, permanent failure) and the pure policy.
 *
 * Invariants: at most one attempt in flight (timer, reconcile and callers share it); an expired
 * token is never handed out; a permanent failure stops retries until the credentials change.
 */
export class Refresher implements TokenHandle {
  readonly name: string;
  private readonly d: RefresherDeps;
  private readonly chain: Chain;
  private readonly coordinator: Coordinator;
  private readonly failures: Failures;
  private readonly gate: CallerGate;
  private readonly grantKey: string;
  private readonly abort = new AbortController();
  /** At most one attempt and one reconcile in flight. */
  private readonly flights = new SingleFlight<'attempt' | 'reconcile', void>();
  private readonly held: HeldToken;
  private readonly schedule: RefreshSchedule;
  /** sha256 of the seed as last read. */
  private seedHash: string | undefined;
  private started = false;
  /** Set while start() reads the stored state: callers wait for it rather than grant. */
  private loading: Promise<boolean> | undefined;
  private stopped = false;
  private revoked = false;
  private unwatch: (() => void) | undefined;

  constructor(deps: RefresherDeps) {
    this.d = deps;
    this.name = deps.config.name;
    this.chain = chainFor(deps.config);
    this.grantKey = grantKeyOf(deps.config);
    this.gate = new CallerGate(deps.clock, deps.minForcedRefreshIntervalMs ?? 5_000, deps.maxCallerWaitMs ?? 15_000);
    this.failures = new Failures(deps.logger, { ...deps.backoff, random: deps.random });
    this.held = new HeldToken(this.name, deps.clock, deps.logger, deps.listeners ?? []);
    this.schedule = new RefreshSchedule({
      clock: deps.clock,
      refreshAt: deps.config.refreshAt,
      jitterOf: deps.jitter ?? ((t) => tokenJitter(t.accessToken)),
      fire: () => void this.refresh(0),
      live: () => !this.stopped && !this.revoked,
    });
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
        this.schedule.refreshOf(state.access);
        return false;
      }
    }
    return true;
  }

  /** Cancels timers, aborts sleeps and client_credentials grants in flight, waits for writes in flight. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.schedule.cancel();
    this.held.close();
    this.unwatch?.();
    this.unwatch = undefined;
    this.abort.abort(new TokendError('TOKEN_UNAVAILABLE', `token ${this.name}: refresher stopped`));
    this.coordinator.stop();
    await this.flights.current('attempt')?.catch(() => undefined);
    // A rotation the store has not confirmed gets one last try before the process goes.
    await this.coordinator.flush();
  }

  /**
   * Wall-clock check, called periodically by the daemon. Starts an overdue refresh (VM suspended,
   * clock stepped, timer lost), retries a write the store has not confirmed, notices a changed seed
   * or, after a permanent failure, changed credentials.
   */
  reconcile(): void {
    if (!this.started || this.stopped || this.revoked) return;
    void this.flights.run('reconcile', () =>
      this.reconcileNow().catch((err: unknown) => this.d.logger.warn({ event: EVENTS.refreshFailed, error: errorSummary(err) }, 'reconcile failed')),
    );
  }

  /**
   * The cheap periodic check (every reconcile tick): no I/O unless something is due. Logs an expiry
   * no timer noticed, retries a write the store has not confirmed, starts an overdue refresh; only
   * a token in permanent failure re-reads its credentials (the full reconcile) each time.
   */
  tick(): void {
    if (!this.started || this.stopped || this.revoked) return;
    if (this.failures.permanent) return this.reconcile();
    this.current();
    if (this.coordinator.hasPendingWrite) void this.coordinator.flush();
    if (this.flights.current('attempt') === undefined && this.schedule.isOverdue(this.held.latest)) void this.refresh(0);
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
    if (this.failures.permanent) {
      if (creds.fingerprint !== this.failures.permanent.fingerprint) {
        this.d.logger.info({ event: EVENTS.seedChanged }, 'credentials changed after a permanent failure: trying again');
        this.retryNow();
      }
      return;
    }
    if (this.flights.current('attempt')) return;
    if (this.schedule.isOverdue(this.held.latest)) void this.refresh(0);
  }

  /** RFC 7009 revocation of the refresh and access tokens, then removal of the stored copies (see revocation.ts). */
  async revoke(): Promise<void> {
    await this.flights.current('attempt')?.catch(() => undefined);
    this.revoked = true;
    this.schedule.cancel();
    const held = this.held.latest;
    try {
      await revokeToken({ name: this.name, store: this.d.store, source: this.d.source, chain: this.chain, held, clock: this.d.clock, log: this.d.logger, signal: this.abort.signal });
    } catch (err) {
      this.revoked = false;
      if (this.started && !this.stopped && held !== undefined && !this.failures.permanent) this.schedule.refreshOf(held);
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
    const pending = this.flights.current('attempt') ?? (this.mayForce(t) ? this.refresh(Math.max(0, minTtlMs)) : undefined);
    if (pending !== undefined) await this.gate.wait(pending, signal);
    return this.orUnavailable(this.current());
  }

  /** See TokenHandle.wake. */
  wake(): void {
    if (this.current() !== undefined || this.flights.current('attempt') !== undefined) return;
    if (this.mayForce(undefined)) void this.refresh(0);
  }

  /** See TokenHandle.refreshAfterRejection. */
  async refreshAfterRejection(rejected: AccessToken, signal?: AbortSignal): Promise<AccessToken> {
    const t = this.current();
    if (t !== undefined && t.accessToken !== rejected.accessToken) return t;
    const pending = this.flights.current('attempt') ?? (this.mayForce(undefined) ? this.refresh(Number.MAX_SAFE_INTEGER) : undefined);
    if (pending !== undefined) await this.gate.wait(pending, signal);
    const next = this.current();
    return this.orUnavailable(next !== undefined && next.accessToken !== rejected.accessToken ? next : undefined);
  }

  /** Runs a refresh now if the held token is already due (a one-shot run must not hand over a token about to be replaced). */
  async refreshIfDue(): Promise<void> {
    const t = this.current();
    if (t === undefined || this.schedule.msUntilDue(t) > 0) return;
    await this.refresh(0);
  }

  /** True while a permanent failure stops retries (until the credentials change). */
  get failedPermanently(): boolean {
    return this.failures.permanent !== undefined;
  }

  /** Ready iff a valid token is held and no permanent failure is pending. */
  status(): TokenStatus {
    const t = this.current();
    if (this.failures.permanent) return { name: this.name, ready: false, reason: this.failures.permanent.reason, expiresAt: t?.expiresAt };
    if (t !== undefined) return { name: this.name, ready: true, expiresAt: t.expiresAt };
    const reason = this.revoked ? 'revoked' : this.held.latest !== undefined ? 'expired' : this.stopped ? 'stopped' : 'not yet acquired';
    return { name: this.name, ready: false, reason, ...(this.failures.lastError !== undefined ? { lastError: this.failures.lastError } : {}) };
  }

  /** ms until the next scheduled attempt, at least 1 000; the backoff maximum when nothing is scheduled. */
  retryAfterMs(): number {
    const next = this.flights.current('attempt') ? 0 : this.schedule.msUntil();
    return Math.max(1_000, next === undefined ? this.failures.bounds.maxMs : Math.ceil(next));
  }

  // ---------------------------------------------------------------- attempts

  /** May a caller start an attempt now (rate limits, Retry-After, no permanent failure)? Records it. */
  private mayForce(held: AccessToken | undefined): boolean {
    if (this.stopped || this.revoked || this.failures.permanent !== undefined || !this.started) return false;
    return this.gate.allow(held !== undefined);
  }

  /** Starts an attempt, or joins the one in flight. Never rejects. */
  private refresh(needTtlMs: number): Promise<void> {
    return this.flights.run('attempt', () => this.attempt(needTtlMs));
  }

  private async attempt(needTtlMs: number): Promise<void> {
    this.schedule.cancel();
    if (this.stopped || this.revoked || this.failures.permanent) return;
    const startedAt = this.d.clock.now();
    let creds: Credentials | undefined;
    try {
      creds = await this.readCredentials();
      this.seedHash = creds.seedHash;
      const obtained = await this.coordinator.obtain({ creds, needTtlMs, held: this.current() });
      this.failures.succeeded();
      this.gate.clearPause();
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
    this.held.publish(obtained.token, obtained.origin, startedAt);
    this.observe(obtained.origin === 'adopted' ? 'adopted' : 'success', startedAt);
    // A token issued already inside its refresh window (tiny lifetimes) must not become a grant loop.
    const t = this.held.latest;
    if (t) this.schedule.refreshOf(t, this.failures.bounds.minMs);
  }

  private onFailure(err: unknown, startedAt: number, creds: Credentials | undefined): void {
    const held = this.current();
    const next = this.failures.record(err, creds?.fingerprint ?? '', held === undefined ? undefined : remainingMs(held, this.d.clock));
    if (next.permanent) {
      this.schedule.cancel();
      this.observe('permanent_error', startedAt);
      return;
    }
    if (next.retryAfter) this.gate.pauseFor(next.delayMs);
    this.schedule.in(next.delayMs);
    this.observe('transient_error', startedAt);
  }

  /** Clears a permanent failure and backoff and tries at once (new seed, new credentials). */
  private retryNow(): void {
    this.failures.reset();
    this.gate.clearPause();
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
    if (this.flights.current('attempt') !== undefined) return;
    if (this.failures.permanent === undefined) this.coordinator.restoreIfLost(state, this.current());
    const held = this.current();
    if (!this.coordinator.canAdopt(state, { seedHash: this.seedHash, needTtlMs: 0, held }, false)) return;
    const now = this.d.clock.now();
    this.held.publish(state.access, 'adopted', now);
    this.observe('adopted', now);
    this.failures.reset(); // another replica's success proves the credential works
    this.schedule.refreshOf(state.access);
  }

  /** Another process (or `tokend revoke`) revoked this token: forget it; wait for a new seed. */
  private markRevoked(fingerprint: string): void {
    if (this.stopped || this.revoked) return;
    this.chain.revoke();
    this.held.drop();
    this.schedule.cancel();
    this.failures.markPermanent('permanent failure: revoked', fingerprint);
    this.d.logger.warn({ event: EVENTS.revoked }, 'the refresh token was revoked; waiting for a new seed');
  }

  // ---------------------------------------------------------------- helpers

  private readCredentials(): Promise<Credentials> {
    return readCredentials(this.d.source, this.chain.presents, this.seedHash);
  }

  private observe(result: RefreshResult, startedAt: number): void {
    this.d.observer?.refreshFinished(this.name, result, Math.max(0, this.d.clock.now() - startedAt));
  }

  private orUnavailable(t: AccessToken | undefined): AccessToken {
    if (t !== undefined) return t;
    throw new TokendError('TOKEN_UNAVAILABLE', `token ${this.name}: no valid token (${this.status().reason ?? 'unknown'})`);
  }
}
