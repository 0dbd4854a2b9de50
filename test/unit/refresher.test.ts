import { afterEach, describe, expect, it } from 'vitest';
import type { TokenConfig } from '../../src/config/types.js';
import { TokendError } from '../../src/errors.js';
import type { RefreshResult } from '../../src/refresh/handle.js';
import { Refresher } from '../../src/refresh/refresher.js';
import { sha256Hex as secretHash } from '../../src/util/hash.js';
import { grantKeyOf, refreshDueAt, tokenJitter } from '../../src/refresh/policy.js';
import { MIN_USABLE_MS } from '../../src/token.js';
import type { Lease, StoreUpdate, TokenStore, WriteBackResult } from '../../src/store/store.js';
import type { AccessToken } from '../../src/token.js';
import { FakeClock } from '../support/fake-clock.js';
import { logSink } from '../support/log-sink.js';
import { tokenConfig } from '../support/token-config.js';
import { FakeSource, permanentError, transientError } from '../support/fake-source.js';
import { attachRotatedRefreshToken } from '../../src/oauth/source.js';
import { FakeBackend as FakeSharedBackend, FakeStore } from '../support/fake-store.js';

const NAME = 'orders';
const SECOND = 1_000;
const MINUTE = 60 * SECOND;
const DAY = 86_400_000;


/** The grant fingerprint of tokens obtained with the default test config (client_credentials). */
const CC_KEY = grantKeyOf(tokenConfig());


interface SetupOptions {
  grant?: TokenConfig['grant'];
  lifetimeMs?: number;
  rotate?: boolean;
  seed?: string;
  random?: number;
  store?: TokenStore;
  clock?: FakeClock;
  minForcedRefreshIntervalMs?: number;
}

const running: Refresher[] = [];
afterEach(async () => {
  await Promise.all(running.splice(0).map((r) => r.stop()));
});

function setup(opts: SetupOptions = {}) {
  const clock = opts.clock ?? new FakeClock();
  const order: string[] = [];
  const source = new FakeSource({
    clock,
    lifetimeMs: opts.lifetimeMs ?? MINUTE,
    rotate: opts.rotate ?? false,
    ...(opts.seed !== undefined ? { seed: opts.seed } : {}),
    events: order,
  });
  const fakeStore = new FakeStore({ events: order, clock });
  const store = opts.store ?? fakeStore;
  const log = logSink();
  const observed: RefreshResult[] = [];
  const refresher = new Refresher({
    config: tokenConfig({ grant: opts.grant ?? 'client_credentials' }),
    source,
    store,
    clock,
    random: () => opts.random ?? 0,
    jitter: () => opts.random ?? 0,
    logger: log.logger,
    observer: { refreshFinished: (name, result) => name === NAME && observed.push(result) },
    minForcedRefreshIntervalMs: opts.minForcedRefreshIntervalMs,
  });
  running.push(refresher);
  return { clock, source, store: fakeStore, log, observed, refresher, order };
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  throw new Error('expected a rejection');
}

describe('Refresher: acquiring and scheduling', () => {
  it('acquires a token at start and announces it as token.acquired with expires_at and duration_ms', async () => {
    const { refresher, source, log, observed, clock } = setup();
    await refresher.start();
    expect(source.grants).toBe(1);
    expect(refresher.current()?.accessToken).toBe('at-1');
    expect(refresher.status()).toMatchObject({ name: NAME, ready: true });
    const [acquired] = log.events('token.acquired');
    expect(acquired).toMatchObject({ token: NAME, expires_at: Math.floor((clock.now() + MINUTE) / 1000), duration_ms: 0 });
    expect(observed).toEqual(['success']);
  });

  it('refreshes at the jittered fraction of the lifetime: refreshAt minus random * 10 %', async () => {
    // refreshAt 0.75, random 0.5: at 70 % of a 60 s lifetime = 42 s.
    const { refresher, source, log, clock } = setup({ random: 0.5 });
    await refresher.start();
    await clock.advance(42 * SECOND - 1);
    expect(source.grants).toBe(1);
    await clock.advance(1);
    expect(source.grants).toBe(2);
    expect(refresher.current()?.accessToken).toBe('at-2');
    expect(log.events('token.refreshed')).toHaveLength(1);
  });

  it('schedules a 40-day token for day 30, beyond what one setTimeout can hold', async () => {
    const { refresher, source, clock } = setup({ lifetimeMs: 40 * DAY });
    await refresher.start();
    await clock.advance(30 * DAY - 1);
    expect(source.grants).toBe(1);
    await clock.advance(1);
    expect(source.grants).toBe(2);
  });

  it('serves a stored, still valid token at start without any grant (token.loaded)', async () => {
    const { refresher, source, store, log, clock } = setup();
    const stored: AccessToken = { accessToken: 'stored', tokenType: 'Bearer', obtainedAt: clock.now() - 10 * SECOND, expiresAt: clock.now() + 50 * SECOND, grantKey: CC_KEY };
    store.put(NAME, { access: stored });
    await refresher.start();
    expect(source.grants).toBe(0);
    expect(refresher.current()).toEqual(stored);
    expect(refresher.status().ready).toBe(true);
    expect(log.events('token.loaded')).toHaveLength(1);
    // ...and refreshes it on its schedule: 45 s after it was obtained.
    await clock.advance(35 * SECOND);
    expect(source.grants).toBe(1);
    expect(log.events('token.refreshed')).toHaveLength(1);
  });

  it('makes a caller arriving while the stored state loads wait for it rather than grant', async () => {
    const { refresher, source, store, clock } = setup();
    store.put(NAME, { access: { accessToken: 'stored', tokenType: 'Bearer', obtainedAt: clock.now(), expiresAt: clock.now() + MINUTE, grantKey: CC_KEY } });
    const started = refresher.start();
    const t = await refresher.ensureFresh(0);
    await started;
    expect(t.accessToken).toBe('stored');
    expect(source.grants).toBe(0);
  });

  it('makes callers arriving during start join its first grant', async () => {
    const { refresher, source } = setup();
    const started = refresher.start();
    const tokens = await Promise.all([refresher.ensureFresh(0), refresher.ensureFresh(0)]);
    await started;
    expect(tokens.map((t) => t.accessToken)).toEqual(['at-1', 'at-1']);
    expect(source.grants).toBe(1);
  });

  it('acquires at once when the stored token has expired', async () => {
    const { refresher, source, store, clock } = setup();
    store.put(NAME, { access: { accessToken: 'old', tokenType: 'Bearer', obtainedAt: clock.now() - 2 * MINUTE, expiresAt: clock.now() - MINUTE } });
    await refresher.start();
    expect(source.grants).toBe(1);
    expect(refresher.current()?.accessToken).toBe('at-1');
  });

  it('reports "not yet acquired" before start', () => {
    const { refresher } = setup();
    expect(refresher.status()).toEqual({ name: NAME, ready: false, reason: 'not yet acquired' });
    expect(refresher.current()).toBeUndefined();
  });
});

describe('Refresher: failures', () => {
  it('never hands out an expired token while the IdP keeps failing', async () => {
    const { refresher, source, clock, log } = setup();
    await refresher.start();
    const first = refresher.current();
    source.failAlwaysWith(transientError);
    // The last second does not count: a token that would expire in the caller's hands is not handed out.
    await clock.advance(MINUTE - MIN_USABLE_MS);
    expect(refresher.current()).toBe(first);
    await clock.advance(1);
    expect(refresher.current()).toBeUndefined();
    const err = await rejection(refresher.ensureFresh(0));
    expect(err).toBeInstanceOf(TokendError);
    expect((err as TokendError).code).toBe('TOKEN_UNAVAILABLE');
    expect(refresher.status()).toMatchObject({ ready: false, reason: 'expired' });
    await clock.advance(5 * MINUTE);
    expect(refresher.current()).toBeUndefined();
    expect(log.events('token.expired')).toHaveLength(1);
  });

  it('notices expiry by the wall clock even when timers did not run (clock jump)', async () => {
    const { refresher, clock, log } = setup();
    await refresher.start();
    clock.set(clock.now() + 2 * MINUTE);
    expect(refresher.current()).toBeUndefined();
    expect(refresher.current()).toBeUndefined();
    expect(log.events('token.expired')).toHaveLength(1);
  });

  it('retries transient failures with exponential backoff, capped at 5 s while no valid token exists, logging error, attempt and retry_in_ms', async () => {
    const { refresher, source, clock, log, observed } = setup({ random: 0.999999 });
    source.failAlwaysWith(transientError);
    await refresher.start();
    expect(refresher.status()).toMatchObject({ ready: false, reason: 'not yet acquired' });
    // Ceilings 2 s, 4 s, then 5 s (consumers are getting 503: recovery must follow the IdP closely).
    await clock.advance(2 * SECOND);
    await clock.advance(4 * SECOND);
    await clock.advance(5 * SECOND);
    const failures = log.events('token.refresh_failed');
    expect(failures.map((f) => f.attempt)).toEqual([1, 2, 3, 4]);
    expect(failures.map((f) => Math.round((f.retry_in_ms as number) / 1000))).toEqual([2, 4, 5, 5]);
    expect(failures[0]).toMatchObject({ level: 'warn', error: { code: 'GRANT_TRANSIENT', status: 503 } });
    expect(source.grants).toBe(4);
    expect(observed).toEqual(['transient_error', 'transient_error', 'transient_error', 'transient_error']);
    expect(refresher.retryAfterMs()).toBeGreaterThan(4 * SECOND);

    source.succeed();
    await clock.advance(5 * SECOND);
    expect(refresher.status().ready).toBe(true);
    expect(log.events('token.acquired')).toHaveLength(1);
  });

  it('keeps retrying before a still-valid token expires, however long the backoff has grown', async () => {
    const { refresher, source, clock } = setup({ random: 0.999999, lifetimeMs: 10 * MINUTE });
    await refresher.start();
    source.failAlwaysWith(transientError);
    await clock.advance(10 * MINUTE - MIN_USABLE_MS - 500);
    // The last attempts crowd towards expiry instead of sleeping 60 s past it.
    const grantsBefore = source.grants;
    expect(grantsBefore).toBeGreaterThan(10);
    source.succeed();
    const expiry = refresher.current()!.expiresAt;
    await clock.advance(expiry - clock.now() - MIN_USABLE_MS);
    expect(refresher.current()).toBeDefined();
    expect(refresher.current()!.expiresAt).toBeGreaterThan(expiry);
  });

  it('stops retrying after invalid_grant and reports the permanent failure at error level', async () => {
    const { refresher, source, clock, log, observed } = setup({ grant: 'refresh_token', seed: 'seed-1' });
    source.failAlwaysWith(() => permanentError('invalid_grant'));
    await refresher.start();
    expect(refresher.status()).toEqual({ name: NAME, ready: false, reason: 'permanent failure: invalid_grant', expiresAt: undefined });
    await clock.advance(30 * MINUTE);
    expect(source.grants).toBe(1);
    expect(clock.pendingTimers()).toBe(0);
    expect(log.events('token.refresh_failed')[0]).toMatchObject({ level: 'error', permanent: true, retry_in_ms: null, error: { code: 'GRANT_PERMANENT', oauth_error: 'invalid_grant' } });
    expect(observed).toEqual(['permanent_error']);
    await expect(refresher.ensureFresh(0)).rejects.toMatchObject({ code: 'TOKEN_UNAVAILABLE' });
    expect(source.grants).toBe(1);
  });

  it('reports "permanent failure: no refresh token" when refresh_token has neither seed nor stored token', async () => {
    const { refresher, source } = setup({ grant: 'refresh_token' });
    await refresher.start();
    expect(refresher.status().reason).toBe('permanent failure: no refresh token');
    expect(source.grants).toBe(0);
  });

  it('recovers from a permanent failure once reconcile sees a new seed', async () => {
    const { refresher, source, clock } = setup({ grant: 'refresh_token', seed: 'seed-1' });
    source.failNext(() => permanentError('invalid_grant'));
    await refresher.start();
    refresher.reconcile();
    await clock.flush();
    expect(source.grants).toBe(1);

    source.seed = 'seed-2';
    refresher.reconcile();
    await clock.advance(0);
    expect(source.presented).toEqual(['seed-1', 'seed-2']);
    expect(refresher.status().ready).toBe(true);
  });

  it('recovers from invalid_client once reconcile sees a changed client credential fingerprint', async () => {
    const { refresher, source, clock } = setup();
    source.fingerprint = 'secret-v1';
    source.failNext(() => permanentError('invalid_client'));
    await refresher.start();
    expect(refresher.status().reason).toBe('permanent failure: invalid_client');
    refresher.reconcile();
    await clock.advance(0);
    expect(source.grants).toBe(1);
    source.fingerprint = 'secret-v2';
    refresher.reconcile();
    await clock.advance(0);
    expect(source.grants).toBe(2);
    expect(refresher.status().ready).toBe(true);
  });
});

describe('Refresher: ensureFresh and single flight', () => {
  it('answers from memory without a grant while the token has more than min_ttl left', async () => {
    const { refresher, source } = setup();
    await refresher.start();
    const t = await refresher.ensureFresh(30 * SECOND);
    expect(t.accessToken).toBe('at-1');
    expect(source.grants).toBe(1);
  });

  it('runs one grant for 100 concurrent callers that need a fresher token', async () => {
    const { refresher, source, clock } = setup();
    await refresher.start();
    const release = source.hold();
    // at-1 has exactly 60 s left, which is not more than a 60 s min_ttl.
    const callers = Array.from({ length: 100 }, () => refresher.ensureFresh(MINUTE));
    await clock.flush();
    release();
    const tokens = await Promise.all(callers);
    expect(source.grants).toBe(2);
    expect(new Set(tokens.map((t) => t.accessToken))).toEqual(new Set(['at-2']));
  });

  it('joins a scheduled refresh in flight instead of starting another', async () => {
    const { refresher, source, clock } = setup();
    await refresher.start();
    const release = source.hold();
    await clock.advance(45 * SECOND); // the timer starts grant 2, parked
    expect(source.grants).toBe(2);
    const joined = refresher.ensureFresh(50 * SECOND);
    refresher.reconcile();
    await clock.flush();
    release();
    expect((await joined).accessToken).toBe('at-2');
    expect(source.grants).toBe(2);
  });

  it('rate-limits refreshes forced by min_ttl and then serves the shorter-lived valid token', async () => {
    const { refresher, source, clock } = setup({ minForcedRefreshIntervalMs: 5 * SECOND });
    await refresher.start();
    expect((await refresher.ensureFresh(2 * MINUTE)).accessToken).toBe('at-2'); // forced
    expect((await refresher.ensureFresh(2 * MINUTE)).accessToken).toBe('at-2'); // limited
    expect(source.grants).toBe(2);
    await clock.advance(5 * SECOND);
    expect((await refresher.ensureFresh(2 * MINUTE)).accessToken).toBe('at-3');
    expect(source.grants).toBe(3);
  });

  it('returns the current valid token when a forced refresh fails', async () => {
    const { refresher, source } = setup();
    await refresher.start();
    source.failNext(transientError);
    expect((await refresher.ensureFresh(2 * MINUTE)).accessToken).toBe('at-1');
    expect(source.grants).toBe(2);
  });

  it('rejects with the signal reason when the caller gives up', async () => {
    const { refresher, source, clock } = setup();
    await refresher.start();
    const release = source.hold();
    const ac = new AbortController();
    const p = refresher.ensureFresh(2 * MINUTE, ac.signal);
    await clock.flush();
    ac.abort(new Error('client went away'));
    await expect(p).rejects.toThrow('client went away');
    release();
  });

  it('sets Retry-After to the time until the next attempt, at least 1 s', async () => {
    const { refresher, source } = setup({ random: 0 });
    source.failAlwaysWith(transientError);
    await refresher.start();
    expect(refresher.retryAfterMs()).toBe(1_000);
    const { refresher: ok } = setup();
    await ok.start();
    expect(ok.retryAfterMs()).toBe(45 * SECOND);
  });
});

describe('Refresher: refresh-token rotation (RFC 6749 §6)', () => {
  it('durably saves the rotated refresh token before the new access token is visible or written', async () => {
    const clock = new FakeClock();
    const order: string[] = [];
    let visibleDuringCommit: string | undefined = 'unset';
    let r: Refresher | undefined;
    class Recording extends FakeStore {
      override async commit(lease: Lease, update: StoreUpdate): Promise<void> {
        visibleDuringCommit = r?.current()?.accessToken;
        return super.commit(lease, update);
      }
    }
    const store = new Recording({ events: order, clock });
    const ctx = setup({ grant: 'refresh_token', seed: 'seed-1', rotate: true, store, clock });
    r = ctx.refresher;
    await r.start();
    await clock.advance(45 * SECOND);
    expect(visibleDuringCommit).toBe('at-1'); // during the second commit, at-2 was not yet visible
    // One atomic commit carries the refresh token and the access token; the store writes the refresh token first.
    expect(store.stored(NAME)).toMatchObject({ refreshToken: 'rt-2', seedHash: secretHash('seed-1'), access: { accessToken: 'at-2' } });
  });

  it('records the intent, then presents the refresh token, then commits: withLease → recordIntent → obtain → commit', async () => {
    const { refresher, order } = setup({ grant: 'refresh_token', seed: 'seed-1', rotate: true });
    await refresher.start();
    await refresher.stop();
    expect(order.filter((e) => e !== 'store.load')).toEqual(['store.withLease', 'store.recordIntent', 'source.obtain', 'store.commit']);
  });

  it('makes no refresh_token grant when the intent cannot be stored (disk full), and keeps serving', async () => {
    const { refresher, source, store, clock, log } = setup({ grant: 'refresh_token', seed: 'seed-1', rotate: true });
    await refresher.start();
    store.fail('recordIntent');
    await clock.advance(45 * SECOND);
    expect(source.presented).toEqual(['seed-1']);
    expect(refresher.current()?.accessToken).toBe('at-1');
    expect(log.events('token.refresh_failed').at(-1)).toMatchObject({ error: { code: 'STORE_UNAVAILABLE' } });
    store.heal();
    await clock.advance(5 * SECOND);
    expect(source.presented).toEqual(['seed-1', 'rt-1']);
    expect(source.reuses).toBe(0);
  });

  it('never presents a consumed refresh token again, even when storing the new one fails', async () => {
    const { refresher, source, store, clock, log } = setup({ grant: 'refresh_token', seed: 'seed-1', rotate: true });
    store.fail('commit');
    store.fail('writeBack');
    await refresher.start();
    expect(refresher.status().ready).toBe(true);
    expect(log.events('store.write_failed')[0]).toMatchObject({ level: 'error', what: 'refresh_token', error: { code: 'STORE_UNAVAILABLE' } });
    await clock.advance(45 * SECOND);
    await clock.advance(45 * SECOND);
    expect(source.presented).toEqual(['seed-1', 'rt-1', 'rt-2']);
    expect(source.reuses).toBe(0);

    // The store comes back: the held refresh token is written back at once.
    store.heal();
    refresher.reconcile();
    await clock.flush();
    expect(store.stored(NAME).refreshToken).toBe('rt-3');
    expect(source.reuses).toBe(0);
  });

  it('a slow write-back of an older refresh token never lands over a newer commit', async () => {
    const clock = new FakeClock();
    let gate: Promise<void> | undefined;
    class SlowStore extends FakeStore {
      override async writeBack(name: string, supersedes: ReadonlySet<string>, update: StoreUpdate): Promise<WriteBackResult> {
        const g = gate; // parks only the first write-back after the gate is set
        gate = undefined;
        if (g) await g;
        return super.writeBack(name, supersedes, update);
      }
    }
    const store = new SlowStore({ clock });
    const { refresher, source } = setup({ grant: 'refresh_token', seed: 'seed-1', rotate: true, store, clock });
    store.fail('commit');
    await refresher.start(); // rt-1 held in memory, not stored
    store.heal();
    let open!: () => void;
    gate = new Promise((r) => (open = r));
    refresher.reconcile(); // writes rt-1 back: parked
    await clock.flush();
    await clock.advance(45 * SECOND); // the refresh rotates to rt-2 and commits it meanwhile
    expect(source.presented).toEqual(['seed-1', 'rt-1']);
    expect(store.stored(NAME).refreshToken).toBe('rt-2');
    open();
    await clock.flush();
    expect(store.stored(NAME).refreshToken).toBe('rt-2');
    expect(refresher.current()?.accessToken).toBe('at-2');
  });

  it('uses the stored refresh token when it descends from the current seed', async () => {
    const { refresher, source, store } = setup({ grant: 'refresh_token', seed: 'seed-1', rotate: true });
    store.put(NAME, { refreshToken: 'rt-stored', seedHash: secretHash('seed-1') });
    await refresher.start();
    expect(source.presented).toEqual(['rt-stored']);
  });

  it('lets a changed seed win over the stored refresh token, serving the stored access token meanwhile', async () => {
    const { refresher, source, store, clock, log } = setup({ grant: 'refresh_token', seed: 'seed-2', rotate: true });
    const stored: AccessToken = { accessToken: 'stored', tokenType: 'Bearer', obtainedAt: clock.now(), expiresAt: clock.now() + MINUTE };
    store.put(NAME, { access: stored, refreshToken: 'rt-old', seedHash: secretHash('seed-1') });
    await refresher.start();
    expect(source.presented).toEqual(['seed-2']);
    expect(refresher.current()?.accessToken).toBe('at-1');
    expect(log.events('token.seed_changed').length).toBeGreaterThan(0);
    expect(store.stored(NAME)).toMatchObject({ refreshToken: 'rt-1', seedHash: secretHash('seed-2') });
  });

  it('picks up a seed mounted while running at the next reconcile', async () => {
    const { refresher, source, clock } = setup({ grant: 'refresh_token', seed: 'seed-1', rotate: true });
    await refresher.start();
    source.seed = 'seed-2';
    refresher.reconcile();
    await clock.advance(0);
    expect(source.presented).toEqual(['seed-1', 'seed-2']);
    expect(source.reuses).toBe(0);
  });

  it('does not fall back to the seed for refresh_token grants when the stored state could not be read', async () => {
    const { refresher, source, store, clock } = setup({ grant: 'refresh_token', seed: 'seed-1', rotate: true });
    store.put(NAME, { refreshToken: 'rt-live', seedHash: secretHash('seed-1') });
    store.fail('load');
    await refresher.start();
    expect(source.grants).toBe(0);
    store.heal();
    await clock.advance(2 * SECOND);
    expect(source.presented).toEqual(['rt-live']);
  });
});

describe('Refresher: reconcile, stop, revoke', () => {
  it('refreshes at once when reconcile finds the wall clock past the due time (VM suspended)', async () => {
    const { refresher, source, clock } = setup();
    await refresher.start();
    refresher.reconcile();
    await clock.flush();
    expect(source.grants).toBe(1); // nothing due yet
    clock.set(clock.now() + 50 * SECOND); // wall clock jumps; monotonic timers have not fired
    refresher.reconcile();
    await clock.flush();
    expect(source.grants).toBe(2);
    expect(refresher.current()?.accessToken).toBe('at-2');
  });

  it('stops promptly with a grant in flight and leaves no timers behind', async () => {
    const { refresher, source, clock } = setup();
    await refresher.start();
    expect(clock.pendingTimers()).toBeGreaterThan(0);
    source.hold(); // never released
    const inflight = refresher.ensureFresh(2 * MINUTE);
    await clock.flush();
    await refresher.stop();
    expect(clock.pendingTimers()).toBe(0);
    expect((await inflight).accessToken).toBe('at-1'); // the still-valid token
    refresher.reconcile();
    await clock.advance(10 * MINUTE);
    expect(source.grants).toBe(2);
  });

  it('stops promptly while waiting for another replica\'s lease', async () => {
    const clock = new FakeClock();
    const backend = new FakeSharedBackend(clock);
    backend.steal(NAME, 'other');
    const { refresher } = setup({ store: backend.replica('a'), clock });
    const started = refresher.start();
    await clock.flush();
    await refresher.stop();
    await started;
    expect(clock.pendingTimers()).toBe(0);
    expect(backend.watcherCount(NAME)).toBe(0);
  });

  it('revokes the refresh and access tokens, removes the stored copies and is no longer ready', async () => {
    const { refresher, source, store, clock, log } = setup({ grant: 'refresh_token', seed: 'seed-1', rotate: true });
    await refresher.start();
    await refresher.revoke();
    expect(source.revoked).toEqual([
      { token: 'rt-1', hint: 'refresh_token' },
      { token: 'at-1', hint: 'access_token' },
    ]);
    expect(store.calls.at(-1)).toBe('remove');
    // Only a tombstone is left: no process presents or writes back this chain again.
    expect(store.stored(NAME)).toEqual({ revoked: true, seedHash: secretHash('seed-1') });
    expect(refresher.current()).toBeUndefined();
    expect(refresher.status()).toMatchObject({ ready: false, reason: 'revoked' });
    expect(log.events('token.revoked')).toHaveLength(1);
    await clock.advance(10 * MINUTE);
    expect(source.grants).toBe(1);
  });

  it('never logs a token or secret value', async () => {
    const { refresher, source, store, clock, log } = setup({ grant: 'refresh_token', seed: 'seed-secret', rotate: true });
    store.fail('commit');
    await refresher.start();
    source.failNext(transientError);
    await clock.advance(45 * SECOND);
    source.failNext(() => permanentError('invalid_grant'));
    await clock.advance(10 * SECOND);
    expect(log.raw.length).toBeGreaterThan(3);
    for (const line of log.raw) {
      expect(line).not.toMatch(/seed-secret|"rt-\d|"at-\d|at-1|rt-1/);
    }
  });
});

describe('Refresher: shared store (replicas)', () => {
  function sharedToken(clock: FakeClock, id: string, lifetimeMs = MINUTE, grantKey = CC_KEY): AccessToken {
    return { accessToken: id, tokenType: 'Bearer', obtainedAt: clock.now(), expiresAt: clock.now() + lifetimeMs, grantKey };
  }

  it('grants under the lease and commits the result for the other replicas', async () => {
    const clock = new FakeClock();
    const backend = new FakeSharedBackend(clock);
    const { refresher, source } = setup({ store: backend.replica('a'), clock, grant: 'refresh_token', seed: 'seed-1', rotate: true });
    await refresher.start();
    expect(source.presented).toEqual(['seed-1']);
    expect(backend.commits).toBe(1);
    expect(backend.states.get(NAME)).toMatchObject({ access: { accessToken: 'at-1' }, refreshToken: 'rt-1', seedHash: secretHash('seed-1') });
  });

  it('while another replica holds the lease, waits for its commit and adopts it without a grant', async () => {
    const clock = new FakeClock();
    const backend = new FakeSharedBackend(clock);
    const other = backend.replica('b');
    let commitNow!: () => void;
    const gate = new Promise<void>((r) => (commitNow = r));
    const otherDone = other.withLease(NAME, async (lease) => {
      await gate;
      await other.commit(lease, { access: sharedToken(clock, 'from-b') });
    });
    const { refresher, source, observed, log } = setup({ store: backend.replica('a'), clock });
    const started = refresher.start();
    await clock.flush();
    expect(refresher.status().ready).toBe(false);
    commitNow();
    await otherDone;
    await started;
    expect(source.grants).toBe(0);
    expect(refresher.current()?.accessToken).toBe('from-b');
    expect(observed).toEqual(['adopted']);
    expect(log.events('token.acquired')[0]).toMatchObject({ adopted: true });
  });

  it('adopts newer tokens other replicas commit, and ignores older ones', async () => {
    const clock = new FakeClock();
    const backend = new FakeSharedBackend(clock);
    const { refresher, source } = setup({ store: backend.replica('a'), clock });
    await refresher.start();
    await clock.advance(10 * SECOND);
    backend.write(NAME, { access: sharedToken(clock, 'newer') });
    await clock.flush();
    expect(refresher.current()?.accessToken).toBe('newer');
    backend.write(NAME, { access: { ...sharedToken(clock, 'older'), expiresAt: clock.now() + SECOND } });
    await clock.flush();
    expect(refresher.current()?.accessToken).toBe('newer');
    // The schedule follows the adopted token: due 45 s after it was obtained, not at-1's.
    await clock.advance(45 * SECOND - 1);
    expect(source.grants).toBe(1);
    await clock.advance(1);
    expect(source.grants).toBe(2);
  });

  it('adopts a fresh stored token under the lease instead of granting (another replica was faster)', async () => {
    const clock = new FakeClock();
    const backend = new FakeSharedBackend(clock);
    const { refresher, source, observed } = setup({ store: backend.replica('a'), clock });
    await refresher.start();
    await clock.advance(45 * SECOND - 1);
    // b commits without a's watch noticing (pub/sub message lost), just before a's timer.
    backend.states.set(NAME, { access: sharedToken(clock, 'from-b') });
    await clock.advance(1);
    expect(source.grants).toBe(1);
    expect(refresher.current()?.accessToken).toBe('from-b');
    expect(observed).toEqual(['success', 'adopted']);
  });

  it('on LEASE_LOST at commit writes nothing, then retries and adopts what the new holder committed', async () => {
    const clock = new FakeClock();
    const backend = new FakeSharedBackend(clock, 15_000);
    const { refresher, source, log } = setup({ store: backend.replica('a'), clock, random: 0 });
    const release = source.hold();
    const started = refresher.start();
    await clock.flush();
    // Another replica takes over the lease (a's renewal failed) without a noticing in time...
    const lease = backend.leases.get(NAME)!;
    backend.leases.set(NAME, { ...lease, holder: 'b', fence: lease.fence + 100 });
    // ...and commits its own token.
    backend.write(NAME, { access: sharedToken(clock, 'from-b') });
    release();
    await started;
    expect(log.events('lease.lost')).toHaveLength(1);
    expect(log.events('token.refresh_failed')[0]).toMatchObject({ error: { code: 'LEASE_LOST' } });
    expect(backend.states.get(NAME)?.access?.accessToken).toBe('from-b'); // not overwritten by at-1
    expect(backend.commits).toBe(1);
    await clock.advance(20 * SECOND);
    expect(refresher.current()?.accessToken).toBe('from-b');
    expect(refresher.status().ready).toBe(true);
  });

  it('two replicas sharing one store make one grant per cycle and never replay a rotated refresh token', async () => {
    const clock = new FakeClock();
    const backend = new FakeSharedBackend(clock);
    const idp = new FakeSource({ clock, lifetimeMs: MINUTE, rotate: true, seed: 'seed-1' });
    const replicas = ['a', 'b'].map((holder, i) => {
      const r = new Refresher({
        config: tokenConfig({ grant: 'refresh_token' }),
        source: idp,
        store: backend.replica(holder),
        clock,
        random: () => (i === 0 ? 0 : 0.5),
        jitter: () => (i === 0 ? 0 : 0.5), // a due at 75 %, b at 70 %
        logger: logSink().logger,
      });
      running.push(r);
      return r;
    });
    await Promise.all(replicas.map((r) => r.start()));
    expect(idp.grants).toBe(1);
    await clock.advance(10 * MINUTE);
    expect(idp.reuses).toBe(0);
    // b refreshes at 42 s of each token's life; a adopts b's commits and never needs to grant.
    expect(idp.grants).toBe(1 + Math.floor((10 * MINUTE) / (42 * SECOND)));
    expect(replicas[0]!.current()?.accessToken).toBe(replicas[1]!.current()?.accessToken);
    expect(backend.states.get(NAME)?.refreshToken).toBe(`rt-${idp.issued}`);
  });

  it('replicas with independent randomness pick the same refresh moment (jitter from the token), so one grant serves each cycle', async () => {
    const clock = new FakeClock();
    const backend = new FakeSharedBackend(clock);
    const idp = new FakeSource({ clock, lifetimeMs: MINUTE, rotate: true, seed: 'seed-1' });
    const obtained = new Map<string, AccessToken>();
    const replicas = [0.1, 0.5, 0.9].map((r, i) => {
      const refresher = new Refresher({
        config: tokenConfig({ grant: 'refresh_token' }),
        source: idp,
        store: backend.replica(`r${i}`),
        clock,
        random: () => r,
        logger: logSink().logger,
      });
      running.push(refresher);
      return refresher;
    });
    await Promise.all(replicas.map((r) => r.start()));
    for (let t = 0; t < 600; t++) {
      await clock.advance(SECOND);
      const cur = replicas[0]!.current();
      if (cur) obtained.set(cur.accessToken, cur);
    }
    expect(idp.reuses).toBe(0);
    const chain = [...obtained.values()].sort((a, b) => a.obtainedAt - b.obtainedAt);
    expect(chain.length).toBeGreaterThan(10);
    // Each token was replaced exactly when its own token-derived jitter said, by one grant.
    for (let i = 1; i < chain.length; i++) {
      const prev = chain[i - 1]!;
      expect(chain[i]!.obtainedAt).toBe(refreshDueAt(prev, { refreshAt: 0.75, random: tokenJitter(prev.accessToken) }));
    }
    expect(idp.grants).toBe(chain.length);
  });

  it('client_credentials: grants locally without the lease while the store is down, and keeps serving', async () => {
    const clock = new FakeClock();
    const backend = new FakeSharedBackend(clock);
    const replica = backend.replica('a');
    const { refresher, source } = setup({ store: replica, clock });
    await refresher.start();
    backend.available = false;
    await clock.advance(45 * SECOND);
    expect(source.grants).toBe(2);
    expect(refresher.current()?.accessToken).toBe('at-2');
    // Nothing reached the store while it was down; the second token is written once it answers.
    expect(backend.states.get(NAME)?.access?.accessToken).toBe('at-1');
    backend.available = true;
    refresher.reconcile();
    await clock.flush();
    expect(backend.states.get(NAME)?.access?.accessToken).toBe('at-2');
  });

  it('refresh_token: does not grant while the store is down, serves the held token until expiry, retries with backoff', async () => {
    const clock = new FakeClock();
    const backend = new FakeSharedBackend(clock);
    const { refresher, source, log } = setup({ store: backend.replica('a'), clock, grant: 'refresh_token', seed: 'seed-1', rotate: true });
    await refresher.start();
    backend.available = false;
    await clock.advance(45 * SECOND);
    expect(source.grants).toBe(1);
    expect(refresher.current()?.accessToken).toBe('at-1');
    expect(log.events('token.refresh_failed')[0]).toMatchObject({ error: { code: 'STORE_UNAVAILABLE' } });
    await clock.advance(15 * SECOND);
    expect(refresher.current()).toBeUndefined();
    expect(source.grants).toBe(1);
    expect(source.reuses).toBe(0);

    backend.available = true;
    await clock.advance(2 * SECOND); // random 0: retries every minMs
    expect(source.presented).toEqual(['seed-1', 'rt-1']);
    expect(refresher.status().ready).toBe(true);
  });
});

describe('Refresher: a rotation the IdP already made is never lost', () => {
  it('lets a refresh_token grant in flight at stop() land, and saves its new refresh token', async () => {
    const { refresher, source, store, clock } = setup({ grant: 'refresh_token', seed: 'seed-1', rotate: true });
    await refresher.start();
    expect(store.stored(NAME)?.refreshToken).toBe('rt-1');
    const release = source.hold();
    await clock.advance(45 * SECOND); // the refresh is due; the grant is parked at the IdP
    expect(source.presented).toEqual(['seed-1', 'rt-1']);
    const stopped = refresher.stop();
    release();
    await stopped;
    // The IdP consumed rt-1 and answered rt-2: the store must hold rt-2, not the consumed one.
    expect(store.stored(NAME)?.refreshToken).toBe('rt-2');
  });

  it('keeps the new refresh token of an answer it could not use, and presents that one next', async () => {
    const { refresher, source, store, clock } = setup({ grant: 'refresh_token', seed: 'seed-1', rotate: true });
    await refresher.start();
    source.failNext(() => attachRotatedRefreshToken(transientError(), 'rt-rescued'));
    await clock.advance(45 * SECOND);
    expect(source.presented).toEqual(['seed-1', 'rt-1']);
    await clock.flush();
    expect(store.stored(NAME)?.refreshToken).toBe('rt-rescued');
    await clock.advance(2 * SECOND); // the retry
    expect(source.presented).toEqual(['seed-1', 'rt-1', 'rt-rescued']);
    expect(refresher.status().ready).toBe(true);
  });

  it('shared store: when the commit fails after the IdP rotated, serves the new token and writes its refresh token back once the store answers', async () => {
    const clock = new FakeClock();
    const backend = new FakeSharedBackend(clock);
    const { refresher, source } = setup({ store: backend.replica('a'), clock, grant: 'refresh_token', seed: 'seed-1', rotate: true });
    await refresher.start();
    expect(backend.states.get(NAME)?.refreshToken).toBe('rt-1');
    const release = source.hold();
    await clock.advance(45 * SECOND);
    backend.available = false; // Redis goes away while the grant is at the IdP
    release();
    await clock.flush();
    expect(refresher.current()?.accessToken).toBe('at-2'); // served although not committed
    expect(backend.states.get(NAME)?.refreshToken).toBe('rt-1'); // the consumed one is all Redis has
    backend.available = true;
    refresher.reconcile();
    await clock.flush();
    expect(backend.states.get(NAME)?.refreshToken).toBe('rt-2');
    await clock.advance(10 * MINUTE);
    expect(source.reuses).toBe(0);
    expect(refresher.status().ready).toBe(true);
  });
});

describe('Refresher: tokens stored under other settings', () => {
  it('does not serve a stored token obtained with another scope (the config changed), and grants at once', async () => {
    const clock = new FakeClock();
    const { refresher, source, store } = setup({ clock });
    const before = { ...tokenConfig(), scope: 'old:scope' };
    store.put(NAME, { access: { accessToken: 'stored-old', tokenType: 'Bearer', obtainedAt: clock.now(), expiresAt: clock.now() + MINUTE, grantKey: grantKeyOf(before) } });
    await refresher.start();
    expect(source.grants).toBe(1);
    expect(refresher.current()?.accessToken).toBe('at-1');
    expect(refresher.current()?.grantKey).toBe(CC_KEY);
  });

  it('does not adopt a token another replica committed under other settings', async () => {
    const clock = new FakeClock();
    const backend = new FakeSharedBackend(clock);
    const { refresher } = setup({ store: backend.replica('a'), clock });
    await refresher.start();
    const other = grantKeyOf({ ...tokenConfig(), audience: 'https://other.example' });
    backend.write(NAME, { access: { accessToken: 'foreign', tokenType: 'Bearer', obtainedAt: clock.now(), expiresAt: clock.now() + 2 * MINUTE, grantKey: other } });
    await clock.flush();
    expect(refresher.current()?.accessToken).toBe('at-1');
  });
});
