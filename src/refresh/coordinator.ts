import type { Clock } from '../clock.js';
import { hasCode, TokendError } from '../errors.js';
import { errorSummary, EVENTS, type Logger } from '../log.js';
import type { TokenSource } from '../oauth/source.js';
import type { Lease, StoredState, StoreUpdate, TokenStore } from '../store/store.js';
import { isUsable, remainingMs, sameGrant, withDeadline, type AccessToken, type GrantResult } from '../token.js';
import { sha256Hex } from '../util/hash.js';
import { linkSignals } from '../util/abort.js';
import type { Chain, Pick } from './chain.js';
import { localRefusal } from './chain.js';
import { readCredentials, type Credentials } from './credentials.js';
import { decideWhenStoreDown, refreshDueAt } from './policy.js';
import { ChangeWaiter } from './change-waiter.js';
import { consumedNothing, inDoubt, intentKey } from './intent.js';
import { PendingWrite } from './write-back.js';

/** Lease attempts in one refresh before counting it as failed (the holder's lease lapsed without a commit). */
const MAX_LEASE_ROUNDS = 3;
// A few ms past the holder's lease TTL, so it has surely lapsed when we try again.
const LEASE_LAPSE_SLACK_MS = 25;

/** What one attempt wants and holds. */
export interface AttemptContext {
  readonly creds: Credentials;
  /** A token with more than this much left (ms) is wanted; 0 for the usual schedule. */
  readonly needTtlMs: number;
  /** The token served now, if any. */
  readonly held: AccessToken | undefined;
}

/** What a stored token must offer to be adopted instead of granting. */
export interface AdoptionWants {
  /** The configured seed's hash: a token of another chain is not adopted. */
  readonly seedHash: string | undefined;
  readonly needTtlMs: number;
  /** Only a token newer than this one is adopted. */
  readonly held: AccessToken | undefined;
}

function want(ctx: AttemptContext): AdoptionWants {
  return { seedHash: ctx.creds.seedHash, needTtlMs: ctx.needTtlMs, held: ctx.held };
}

/** A token to serve, and how it was had. */
export interface Obtained {
  readonly token: AccessToken;
  readonly origin: 'grant' | 'adopted';
  /** The answer's expires_in and its JWT's own lifetime disagreed (the shorter was believed), for the log. */
  readonly lifetimeDisagreement?: GrantResult['lifetimeDisagreement'];
}

/** Dependencies of a Coordinator. Durations in ms. */
export interface CoordinatorDeps {
  readonly name: string;
  readonly store: TokenStore;
  readonly source: TokenSource;
  readonly chain: Chain;
  readonly clock: Clock;
  readonly log: Logger;
  /** Fingerprint of the settings tokens are obtained with. */
  readonly grantKey: string;
  readonly refreshAt: number;
  /** Aborted when the refresher stops. */
  readonly stopSignal: AbortSignal;
  /**
   * How long a process that finds another holder's uncommitted refresh_token grant waits for that
   * holder to write its result back before giving up on this attempt. Default 5 000.
   */
  readonly writeBackWaitMs?: number | undefined;
  readonly random: () => number;
}

/**
 * Obtains tokens for one configured token through the store protocol (store.ts), the same way
 * for every store: under the lease, adopt what another process stored, else grant and commit;
 * record the intent before presenting a refresh token; never present one another process may have
 * used; write back what a commit could not store. Knows nothing of schedules or serving.
 */
export class Coordinator {
  private readonly d: CoordinatorDeps;
  private readonly writeBackWaitMs: number;
  private readonly changes: ChangeWaiter;
  /** A write the store has not confirmed (a rotation above all): retried until it lands or is superseded. */
  private readonly pending: PendingWrite;
  /** The intent already reported as in doubt (holder and time), so it is logged once. */
  private reportedIntent: string | undefined;

  constructor(deps: CoordinatorDeps) {
    this.d = deps;
    this.writeBackWaitMs = deps.writeBackWaitMs ?? 5_000;
    this.changes = new ChangeWaiter(deps.clock, deps.stopSignal);
    this.pending = new PendingWrite({ name: deps.name, store: deps.store, chain: deps.chain, clock: deps.clock, log: deps.log, random: deps.random, stopSignal: deps.stopSignal });
  }

  /** True while a write the store has not confirmed is held. */
  get hasPendingWrite(): boolean {
    return this.pending.waiting;
  }

  /** Wakes every attempt waiting for another process's commit (call on every watch notification). */
  notified(): void {
    this.changes.wakeAll();
    void this.pending.flush();
  }

  /**
   * Obtains a fresh token: adopts one another process stored, or grants under the lease and
   * commits it. Rejects with the grant's error, STORE_UNAVAILABLE (refresh_token grants while the
   * store cannot take the intent or the lease) or LEASE_LOST (another holder kept the lease
   * without committing anything newer).
   */
  async obtain(ctx: AttemptContext): Promise<Obtained> {
    for (let round = 1; ; round++) {
      let outcome;
      try {
        outcome = await this.d.store.withLease(this.d.name, (lease) => this.underLease(lease, ctx));
      } catch (err) {
        if (hasCode(err, 'STORE_UNAVAILABLE')) return this.whenStoreDown(err);
        throw err;
      }
      if (outcome.acquired) return outcome.value;
      if (outcome.distrusted) {
        return this.whenStoreDown(new TokendError('STORE_UNAVAILABLE', `token ${this.d.name}: the refresh lease is held by something tokend does not trust`));
      }
      // Another replica is refreshing: wait for its commit (or its lease to lapse), then adopt.
      await this.changes.wait(outcome.holderTtlMs + LEASE_LAPSE_SLACK_MS);
      let state: StoredState;
      try {
        state = await this.d.store.load(this.d.name);
      } catch (err) {
        if (hasCode(err, 'STORE_UNAVAILABLE')) return this.whenStoreDown(err);
        throw err;
      }
      this.d.chain.observe(state, ctx.creds.seedHash);
      if (this.canAdopt(state, want(ctx), false)) return { token: state.access, origin: 'adopted' };
      // A wake-up without an adoptable token (a reconnect notification, a commit of something
      // older) is not a failure yet: try the lease again, a bounded number of times.
      if (round >= MAX_LEASE_ROUNDS) {
        throw new TokendError('LEASE_LOST', `token ${this.d.name}: another replica holds the refresh lease and committed no newer token`);
      }
    }
  }

  private async underLease(lease: Lease, attempt: AttemptContext): Promise<Obtained> {
    const { store, chain, name, log } = this.d;
    log.debug({ event: EVENTS.leaseAcquired, fence: lease.fence }, 'refresh lease acquired');
    let state = await store.load(name);
    const ctx = await this.freshCredentials(state, attempt);
    chain.observe(state, ctx.creds.seedHash);
    if (this.canAdopt(state, want(ctx), true)) return { token: state.access, origin: 'adopted' };
    if (this.revokedFor(state, ctx.creds.seedHash)) {
      // Revoked (by `tokend revoke`, on any process): only a new seed may start a new chain.
      if (ctx.creds.seedHash === undefined || ctx.creds.seedHash === state.seedHash) throw revokedError(name);
      chain.revoke();
    }
    let pick = chain.pick(state.revoked ? {} : state, ctx.creds);
    if (pick.rt !== undefined && inDoubt(state, pick.rt, store.holderId)) {
      // Waited for this intent's holder once already: do not hold the lease waiting again.
      if (this.reportedIntent === intentKey(state)) throw this.reportInDoubt(state);
      state = await this.awaitHolder(state, ctx);
      if (this.canAdopt(state, want(ctx), true)) return { token: state.access, origin: 'adopted' };
      pick = chain.pick(state.revoked ? {} : state, ctx.creds);
      if (pick.rt !== undefined && inDoubt(state, pick.rt, store.holderId)) throw this.reportInDoubt(state);
    }
    if (pick.seedWon) {
      log.info({ event: EVENTS.seedChanged }, 'refresh-token seed changed: using the new seed');
      // The old chain is over for this process: its token is never presented, and a write-back of
      // the new chain may replace it.
      if (state.refreshToken !== undefined) chain.abandon(state.refreshToken);
    }
    if (pick.rt !== undefined) await this.recordIntent(lease, pick.rt);
    const result = await this.grant(lease, pick);
    chain.rotated(pick.rt, result.refreshToken, pick.seedHash);
    const token = this.stamp(result.token);
    const update: StoreUpdate = { access: token, refreshToken: chain.current, seedHash: chain.presents ? pick.seedHash : undefined };
    try {
      await store.commit(lease, update);
      this.pending.succeeded();
    } catch (err) {
      const rotated = result.refreshToken !== undefined && result.refreshToken !== pick.rt;
      if (hasCode(err, 'LEASE_LOST')) {
        log.warn({ event: EVENTS.leaseLost, error: errorSummary(err) }, 'lost the refresh lease before committing; nothing written');
        // Nothing was consumed: fail, and adopt what the new holder commits.
        if (!rotated) throw err;
      }
      // The IdP rotated (or the store is down): serve the new token whatever happened to the write.
      // A rotation the store may not have is held and written back, conditioned on content, not
      // on the lapsed lease; the new holder, seeing our intent, waits for it.
      this.pending.hold(update, err);
    }
    return { token, origin: 'grant', lifetimeDisagreement: result.lifetimeDisagreement };
  }

  /**
   * No refresh_token grant unless the store can take what follows it: the intent is the proof
   * (a full disk, a Redis that does not answer, refuse it). Said at error level: until the store
   * accepts writes again, the token is not refreshed.
   */
  private async recordIntent(lease: Lease, rt: string): Promise<void> {
    try {
      await this.d.store.recordIntent(lease, sha256Hex(rt));
    } catch (err) {
      if (hasCode(err, 'STORE_UNAVAILABLE')) {
        this.d.log.error(
          { event: EVENTS.storeFailed, error: errorSummary(err), what: 'intent' },
          'the store cannot be written; not presenting the refresh token until it can (the rotated one could not be saved)',
        );
      }
      throw err;
    }
  }

  /**
   * The stored chain descends from another seed than the one this attempt read: either this
   * process has a new seed, or the seed file changed after the attempt read it and another process
   * has already started the new chain. Reading the seed again, under the lease, tells which: a
   * stale read must never make this process present the old seed (long consumed).
   */
  private async freshCredentials(state: StoredState, ctx: AttemptContext): Promise<AttemptContext> {
    const stored = state.seedHash;
    if (!this.d.chain.presents || stored === undefined || ctx.creds.seedHash === undefined || stored === ctx.creds.seedHash) return ctx;
    return { ...ctx, creds: await readCredentials(this.d.source, true, ctx.creds.seedHash) };
  }

  /** Runs the grant; an answer refused after the IdP rotated still gets its refresh token stored. */
  private async grant(lease: Lease, pick: Pick): Promise<GrantResult> {
    const { chain, store } = this.d;
    // A refresh_token grant is never aborted by stop(): once sent, the IdP may rotate, and the
    // answer must land and be saved. The source's own timeout bounds it.
    const linked = chain.presents ? undefined : linkSignals(this.d.stopSignal, lease.signal);
    try {
      return await this.d.source.obtain(pick.rt, linked?.signal);
    } catch (err) {
      const rotated = err instanceof TokendError ? err.rotatedRefreshToken : undefined;
      if (pick.rt !== undefined && rotated !== undefined && rotated !== pick.rt) {
        chain.rotated(pick.rt, rotated, pick.seedHash);
        const update: StoreUpdate = { refreshToken: rotated, seedHash: pick.seedHash };
        await store.commit(lease, update).catch((e: unknown) => this.pending.hold(update, e));
      } else if (pick.rt !== undefined && consumedNothing(err)) {
        // The IdP answered without rotating, or the request never left: the token was not
        // consumed, and another process may present it.
        await store.clearIntent(lease, sha256Hex(pick.rt)).catch(() => undefined);
      }
      throw err;
    } finally {
      linked?.dispose();
    }
  }

  /**
   * The store is down (or refused the intent, or its lease cannot be trusted). client_credentials:
   * grant without the lease and serve it locally, writing it when the store answers.
   * refresh_token: no grant (a rotation the others could not see would be replayed); keep serving.
   */
  private async whenStoreDown(err: unknown): Promise<Obtained> {
    if (decideWhenStoreDown(this.d.chain.presents) === 'keep-serving') {
      throw hasCode(err, 'STORE_UNAVAILABLE')
        ? err
        : new TokendError('STORE_UNAVAILABLE', `token ${this.d.name}: store unavailable; not rotating the refresh token without it`);
    }
    const linked = linkSignals(this.d.stopSignal);
    let result: GrantResult;
    try {
      result = await this.d.source.obtain(undefined, linked.signal);
    } finally {
      linked.dispose();
    }
    const token = this.stamp(result.token);
    this.pending.hold({ access: token }, err);
    return { token, origin: 'grant', lifetimeDisagreement: result.lifetimeDisagreement };
  }

  /** The token as this process holds it: our grant key, and a monotonic deadline from its arrival. */
  private stamp(token: AccessToken): AccessToken {
    const stamped = token.deadline === undefined ? withDeadline(token, this.d.clock) : token;
    return { ...stamped, grantKey: this.d.grantKey };
  }

  /**
   * A stored token may be adopted instead of granting when it is usable, of our settings and seed,
   * newer than ours, long enough for the caller, and (under the lease) not yet due for refresh.
   */
  canAdopt(state: StoredState, w: AdoptionWants, underLease: boolean): state is StoredState & { access: AccessToken } {
    const access = state.access;
    const { clock, chain } = this.d;
    if (!isUsable(access, clock) || !sameGrant(access, this.d.grantKey)) return false;
    if (chain.presents && w.seedHash !== undefined && state.seedHash !== w.seedHash) return false;
    if (w.held !== undefined && access.expiresAt <= w.held.expiresAt) return false;
    if (remainingMs(access, clock) <= w.needTtlMs) return false;
    const now = clock.now();
    // random 1 = the earliest point of the jitter window: a token already in it is due.
    if (underLease && now >= refreshDueAt(access, { refreshAt: this.d.refreshAt, random: 1 })) return false;
    return true;
  }

  /** The stored state is a revocation tombstone for the chain this process is on. */
  revokedFor(state: StoredState, seedHash: string | undefined): boolean {
    return (
      state.revoked === true &&
      this.d.chain.presents &&
      (state.seedHash === undefined || seedHash === undefined || state.seedHash === seedHash)
    );
  }

  /**
   * After a watch notification (the refresher is idle): the store lacks what this process holds
   * (Redis FLUSHALL or an empty failover replica; a file another program deleted): write it back.
   */
  restoreIfLost(state: StoredState, held: AccessToken | undefined): void {
    if (state.revoked) return;
    const chain = this.d.chain;
    const rtLost = chain.storeLacks(state);
    const accessLost =
      held !== undefined &&
      isUsable(held, this.d.clock) &&
      (state.access === undefined || (sameGrant(state.access, held.grantKey) && state.access.expiresAt < held.expiresAt - 1_000));
    if (!rtLost && !accessLost) return;
    this.pending.restore({
      ...(accessLost ? { access: held } : {}),
      ...(rtLost ? { refreshToken: chain.current, seedHash: chain.seedHash } : {}),
    });
  }

  /** Tries the write the store has not confirmed, now. */
  flush(): Promise<void> {
    return this.pending.flush();
  }

  /** Cancels the retry timer and wakes every waiter (the refresher is stopping). */
  stop(): void {
    this.pending.stop();
    this.changes.wakeAll();
  }

  /** Waits (bounded) for the holder of an intent to write its result back; returns the state then. */
  private async awaitHolder(state: StoredState, ctx: AttemptContext): Promise<StoredState> {
    const deadline = this.d.clock.monotonic() + this.writeBackWaitMs;
    let current = state;
    while (this.d.clock.monotonic() < deadline) {
      await this.changes.wait(deadline - this.d.clock.monotonic());
      current = await this.d.store.load(this.d.name);
      this.d.chain.observe(current, ctx.creds.seedHash);
      if (current.refreshToken !== state.refreshToken || current.intent === undefined) break;
    }
    return current;
  }

  private reportInDoubt(state: StoredState): TokendError {
    const intent = state.intent;
    const key = intentKey(state);
    if (this.reportedIntent !== key) {
      this.reportedIntent = key;
      this.d.log.error(
        { event: EVENTS.refreshTokenLost, holder: intent?.holder, presented_at: intent ? new Date(intent.at).toISOString() : undefined },
        'another tokend presented this refresh token and never stored the result; it may be consumed, so it is not presented again. If that process is gone, mount a new refresh-token seed',
      );
    }
    return new TokendError('GRANT_TRANSIENT', `token ${this.d.name}: the stored refresh token is in doubt (another process presented it and stored no result)`, {
      reason: 'refresh token in doubt',
    });
  }

}

function revokedError(name: string): TokendError {
  return localRefusal(`token ${name}: the refresh token was revoked; mount a new seed to continue`, 'revoked');
}
