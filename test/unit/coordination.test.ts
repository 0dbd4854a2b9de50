import { afterEach, describe, expect, it } from 'vitest';
import type { TokenConfig } from '../../src/config/types.js';
import { TokendError } from '../../src/errors.js';
import { Refresher } from '../../src/refresh/refresher.js';
import type { Lease, LeaseOutcome } from '../../src/store/store.js';
import { remainingMs, type AccessToken } from '../../src/token.js';
import { sha256Hex } from '../../src/util/hash.js';
import { FakeClock } from '../support/fake-clock.js';
import { logSink } from '../support/log-sink.js';
import { tokenConfig } from '../support/token-config.js';
import { FakeSource, transientError } from '../support/fake-source.js';
import { FakeBackend, FakeStore } from '../support/fake-store.js';

const NAME = 'orders';
const SECOND = 1_000;
const MINUTE = 60 * SECOND;



const running: Refresher[] = [];
afterEach(async () => {
  await Promise.all(running.splice(0).map((r) => r.stop()));
});

function refresher(store: FakeStore, source: FakeSource, clock: FakeClock, over: Partial<TokenConfig> = {}, random = 0) {
  const log = logSink();
  const r = new Refresher({ config: tokenConfig(over), source, store, clock, random: () => random, jitter: () => random, logger: log.logger });
  running.push(r);
  return { r, log };
}

/** A started refresher whose grants all fail transiently from the first one on: no token is ever held. */
async function failingFromStart(): Promise<{ clock: FakeClock; source: FakeSource; r: Refresher }> {
  const clock = new FakeClock();
  const source = new FakeSource({ clock });
  const { r } = refresher(new FakeStore({ clock }), source, clock, {}, 0.999999);
  source.failAlwaysWith(transientError);
  await r.start();
  return { clock, source, r };
}

/** Two replicas sharing one fake Redis and one rotating fake IdP. */
function fleet(opts: { grant?: TokenConfig['grant'] } = {}) {
  const clock = new FakeClock();
  const backend = new FakeBackend(clock);
  const idp = new FakeSource({ clock, lifetimeMs: MINUTE, rotate: true, seed: 'seed-1' });
  const grant = opts.grant ?? 'refresh_token';
  const a = { store: backend.replica('a'), ...({} as object) };
  const b = { store: backend.replica('b') };
  const ra = refresher(a.store, idp, clock, { grant });
  const rb = refresher(b.store, idp, clock, { grant });
  return { clock, backend, idp, a: { ...a, ...ra }, b: { ...b, ...rb } };
}

describe('a rotation is never lost: a commit with an unknown outcome', () => {
  it('the script ran but the reply was lost: the replica serves the new token, finds it stored, and nothing is presented twice', async () => {
    const { clock, backend, idp, a, b } = fleet();
    await a.r.start();
    await b.r.start();
    a.store.fail('commit', 'outcome-unknown');
    await a.r.ensureFresh(2 * MINUTE); // a takes the lease and rotates rt-1 → rt-2; the reply to its commit is lost
    a.store.heal();
    expect(a.r.current()?.accessToken).toBe('at-2');
    expect(backend.states.get(NAME)?.refreshToken).toBe('rt-2');
    a.r.reconcile();
    await clock.flush();
    expect(a.log.events('store.restored')).toHaveLength(0); // 'already': nothing to write back
    await clock.advance(10 * MINUTE);
    expect(idp.reuses).toBe(0);
    expect(a.r.status().ready && b.r.status().ready).toBe(true);
  });

  it('the script never ran: another replica that takes over waits for the holder\'s write-back, then adopts it', async () => {
    const { clock, backend, idp, a, b } = fleet();
    await a.r.start();
    await b.r.start();
    await clock.advance(30 * SECOND);
    a.store.fail('commit');
    a.store.fail('writeBack');
    await a.r.ensureFresh(31 * SECOND); // rt-1 presented and rotated; nothing stored
    expect(backend.states.get(NAME)).toMatchObject({ refreshToken: 'rt-1', intent: { holder: 'a', presented: sha256Hex('rt-1') } });

    await clock.advance(SECOND);
    const forced = b.r.ensureFresh(30 * SECOND); // b takes the lease, finds a's intent on rt-1 and waits
    await clock.advance(SECOND);
    expect(idp.presented).toEqual(['seed-1', 'rt-1']);
    a.store.heal();
    a.r.reconcile(); // the store answers a again: it writes rt-2 back
    await clock.flush();
    await forced;
    expect(backend.states.get(NAME)?.refreshToken).toBe('rt-2');
    expect(b.r.current()?.accessToken).toBe('at-2');
    expect(idp.presented).toEqual(['seed-1', 'rt-1']);
    expect(idp.reuses).toBe(0);
  });

  it('a holder that died mid-grant: the others never present its token, and say so at error level once', async () => {
    const { clock, backend, idp, a, b } = fleet();
    await a.r.start();
    await b.r.start();
    // a presents rt-1 and dies before anything is stored (its write never comes).
    a.store.fail('commit');
    a.store.fail('writeBack');
    await a.r.ensureFresh(2 * MINUTE);
    await a.r.stop();
    backend.available = true;
    await clock.advance(5 * MINUTE);
    expect(idp.presented.filter((rt) => rt === 'rt-1')).toHaveLength(1);
    expect(idp.reuses).toBe(0);
    const lost = b.log.events('token.refresh_token_lost');
    expect(lost).toHaveLength(1);
    expect(lost[0]).toMatchObject({ level: 'error', holder: 'a' });
    expect(b.r.status().ready).toBe(false); // its token expired; nothing it may present
    // A new seed starts a new chain.
    idp.seed = 'seed-2';
    b.r.reconcile();
    await clock.advance(6 * SECOND);
    expect(idp.presented.at(-1)).toBe('seed-2');
    expect(b.r.status().ready).toBe(true);
  });

  it('after data loss (FLUSHALL), the replicas write back the newest refresh token and access token', async () => {
    const { clock, backend, idp, a, b } = fleet();
    await a.r.start();
    await b.r.start();
    await clock.advance(MINUTE); // a few rotations
    const newest = backend.states.get(NAME)?.refreshToken;
    backend.states.clear();
    backend.announce(NAME);
    await clock.flush();
    expect(backend.states.get(NAME)?.refreshToken).toBe(newest);
    expect(backend.states.get(NAME)?.access?.accessToken).toBe(a.r.current()?.accessToken);
    await clock.advance(5 * MINUTE);
    expect(idp.reuses).toBe(0);
  });
});

describe('the intent after a failed refresh_token grant', () => {
  it('is cleared when nothing can have been consumed (an IdP answer, a request never sent), and kept after a timeout', async () => {
    const clock = new FakeClock();
    const store = new FakeStore({ clock });
    const source = new FakeSource({ clock, rotate: true, seed: 'seed-1' });
    const { r } = refresher(store, source, clock, { grant: 'refresh_token' });
    await r.start();
    const cases: Array<[string, () => TokendError, boolean]> = [
      ['an IdP 503', () => new TokendError('GRANT_TRANSIENT', 'fake idp: 503', { status: 503 }), false],
      ['the IdP limiter said wait', () => new TokendError('GRANT_TRANSIENT', 'paused', { reason: 'idp_paused', retryAfterMs: 1_000 }), false],
      ['an expired assertion file', () => new TokendError('GRANT_TRANSIENT', 'expired', { reason: 'client_assertion_expired' }), false],
      ['a timeout', () => new TokendError('GRANT_TRANSIENT', 'timed out waiting for the IdP'), true],
    ];
    for (const [what, make, kept] of cases) {
      source.failNext(make);
      await r.ensureFresh(2 * MINUTE);
      expect(store.stored(NAME).intent !== undefined, what).toBe(kept);
      await clock.advance(6 * SECOND);
    }
  });
});

describe('a new seed mounted on a fleet', () => {
  it('a replica that read the seed file before it changed never presents the old seed over the chain another replica started', async () => {
    const { clock, idp, a, b } = fleet();
    await a.r.start();
    await b.r.start();
    expect(idp.presented).toEqual(['seed-1']);
    // The operator mounts seed-2; a picks it up first and starts the new chain.
    idp.seed = 'seed-2';
    a.r.reconcile();
    await clock.flush();
    expect(idp.presented).toEqual(['seed-1', 'seed-2']);
    // b's next attempt read the seed file a moment before it changed (stale: seed-1).
    const realRead = idp.readSeed.bind(idp);
    let stale = true;
    idp.readSeed = async () => {
      if (stale) {
        stale = false;
        return 'seed-1';
      }
      return realRead();
    };
    await b.r.ensureFresh(2 * MINUTE);
    expect(idp.presented.filter((rt) => rt === 'seed-1')).toHaveLength(1);
    expect(idp.reuses).toBe(0);
    expect(b.r.status().ready).toBe(true);
  });

  it('a holder whose lease lapsed while it started the new chain writes it back over the old one', async () => {
    const clock = new FakeClock();
    const store = new FakeStore({ clock });
    const idp = new FakeSource({ clock, lifetimeMs: MINUTE, rotate: true, seed: 'seed-1' });
    const { r } = refresher(store, idp, clock, { grant: 'refresh_token' });
    await r.start();
    idp.seed = 'seed-2';
    store.fail('commit');
    store.fail('writeBack');
    r.reconcile();
    await clock.flush();
    expect(idp.presented).toEqual(['seed-1', 'seed-2']);
    expect(store.stored(NAME).refreshToken).toBe('rt-1'); // the old chain, not yet replaced
    store.heal();
    r.reconcile();
    await clock.flush();
    expect(store.stored(NAME)).toMatchObject({ refreshToken: 'rt-2', seedHash: sha256Hex('seed-2') });
  });
});

describe('an expired token is never served: clock steps', () => {
  it('a wall clock stepped back an hour neither stretches the token nor delays its refresh', async () => {
    const clock = new FakeClock();
    const store = new FakeStore({ clock });
    const source = new FakeSource({ clock, lifetimeMs: 8 * SECOND });
    const { r } = refresher(store, source, clock);
    await r.start();
    clock.step(-3_600_000);
    const t = r.current() as AccessToken;
    expect(remainingMs(t, clock)).toBe(8 * SECOND);
    await clock.advance(6 * SECOND); // refresh due at 75 % of 8 s
    expect(source.grants).toBe(2);
    // At no point is a token with under a second left served, whatever the wall clock says.
    for (let i = 0; i < 40; i++) {
      await clock.advance(250);
      const cur = r.current();
      if (cur) expect(remainingMs(cur, clock)).toBeGreaterThanOrEqual(SECOND);
    }
  });

  it('a wall clock stepped forward an hour makes the held token count as expired and refreshes at once', async () => {
    const clock = new FakeClock();
    const store = new FakeStore({ clock });
    const source = new FakeSource({ clock, lifetimeMs: MINUTE });
    const { r } = refresher(store, source, clock);
    await r.start();
    clock.step(3_600_000);
    expect(r.current()).toBeUndefined();
    r.reconcile();
    await clock.flush();
    expect(source.grants).toBe(2);
    expect(r.current()?.accessToken).toBe('at-2');
  });
});

describe('recovery after an outage', () => {
  it('honours Retry-After (capped), and no caller can start an attempt inside it', async () => {
    const clock = new FakeClock();
    const store = new FakeStore({ clock });
    const source = new FakeSource({ clock });
    const { r } = refresher(store, source, clock);
    source.failNext(() => new TokendError('GRANT_TRANSIENT', 'fake idp: 429', { status: 429, retryAfterMs: 30 * SECOND }));
    await r.start();
    expect(source.grants).toBe(1);
    for (let i = 0; i < 29; i++) {
      await expect(r.ensureFresh(0)).rejects.toMatchObject({ code: 'TOKEN_UNAVAILABLE' });
      await clock.advance(SECOND);
    }
    expect(source.grants).toBe(1);
    await clock.advance(SECOND);
    expect(source.grants).toBe(2);
    expect(r.status().ready).toBe(true);

    source.failNext(() => new TokendError('GRANT_TRANSIENT', 'fake idp: 503', { status: 503, retryAfterMs: 3_600_000 }));
    await r.ensureFresh(2 * MINUTE);
    expect(r.retryAfterMs()).toBeLessThanOrEqual(300 * SECOND); // capped at 5 minutes
  });

  it('while no valid token exists, callers trigger at most one attempt per second, coalesced', async () => {
    const { clock, source, r } = await failingFromStart();
    const before = source.grants;
    for (let i = 0; i < 100; i++) {
      await Promise.all(Array.from({ length: 10 }, () => r.ensureFresh(0).catch(() => undefined)));
      await clock.advance(100);
    }
    // 10 s of callers: ≤ 10 on-demand attempts plus the scheduled retries (≤ 5 s apart).
    expect(source.grants - before).toBeLessThanOrEqual(10 + 3);
    expect(source.grants - before).toBeGreaterThanOrEqual(9);
    source.succeed();
    await r.ensureFresh(0).catch(() => undefined);
    await clock.advance(SECOND);
    expect((await r.ensureFresh(0)).accessToken).toMatch(/^at-/);
  });
});

describe('a consumer waking the refresher', () => {
  it('starts at most one attempt a second while no token is held, and none inside Retry-After', async () => {
    const { clock, source, r } = await failingFromStart();
    const before = source.grants;
    for (let i = 0; i < 50; i++) {
      r.wake();
      await clock.advance(100);
    }
    // 5 s of wakes every 100 ms: one attempt per second, plus at most the one scheduled retry.
    expect(source.grants - before).toBeGreaterThanOrEqual(4);
    expect(source.grants - before).toBeLessThanOrEqual(6);

    source.failAlwaysWith(() => new TokendError('GRANT_TRANSIENT', 'fake idp: 429', { status: 429, retryAfterMs: 30 * SECOND }));
    await clock.advance(5 * SECOND); // the next attempt meets the 429
    const paused = source.grants;
    for (let i = 0; i < 20; i++) {
      r.wake();
      await clock.advance(SECOND);
    }
    expect(source.grants).toBe(paused);
  });
});

describe('callers wait a bounded time', () => {
  it('a min_ttl caller gets the valid token it has after 15 s while another replica keeps the lease', async () => {
    const clock = new FakeClock();
    const backend = new FakeBackend(clock);
    const source = new FakeSource({ clock });
    const a = refresher(backend.replica('a'), source, clock);
    await a.r.start();
    // Another replica holds the lease and never commits (a slow IdP on its side).
    let release!: () => void;
    const held = backend.replica('b').withLease(NAME, () => new Promise<void>((r) => (release = r)));
    await clock.flush();
    let answered: AccessToken | undefined;
    const caller = a.r.ensureFresh(2 * MINUTE).then((t) => (answered = t));
    await clock.advance(14 * SECOND);
    expect(answered).toBeUndefined();
    await clock.advance(SECOND);
    await caller;
    expect(answered?.accessToken).toBe('at-1'); // the valid token it has, not a hang
    release();
    await held;
  });
});

describe('a lease tokend does not trust', () => {
  class Distrusting extends FakeStore {
    override async withLease<T>(name: string, fn: (lease: Lease) => Promise<T>): Promise<LeaseOutcome<T>> {
      void name;
      void fn;
      return { acquired: false, holderTtlMs: 600_000, distrusted: true };
    }
  }

  it('client_credentials grants locally instead of waiting for it', async () => {
    const clock = new FakeClock();
    const store = new Distrusting({ clock });
    const source = new FakeSource({ clock });
    const { r } = refresher(store, source, clock);
    await r.start();
    expect(r.current()?.accessToken).toBe('at-1');
  });

  it('refresh_token never grants under it, and says why', async () => {
    const clock = new FakeClock();
    const store = new Distrusting({ clock });
    const source = new FakeSource({ clock, rotate: true, seed: 'seed-1' });
    const { r, log } = refresher(store, source, clock, { grant: 'refresh_token' });
    await r.start();
    expect(source.grants).toBe(0);
    expect(log.events('token.refresh_failed')[0]).toMatchObject({ error: { code: 'STORE_UNAVAILABLE' } });
  });
});

describe('start-up and forced refreshes', () => {
  it('a lone instance restarting from its store logs token.loaded, not an adoption', async () => {
    const clock = new FakeClock();
    const store = new FakeStore({ clock });
    const source = new FakeSource({ clock });
    const first = refresher(store, source, clock);
    await first.r.start();
    await first.r.stop();
    const second = refresher(store, source, clock);
    await second.r.start();
    await clock.flush();
    expect(second.log.events('token.loaded')).toHaveLength(1);
    expect(second.log.events('token.acquired')).toHaveLength(0);
    expect(source.grants).toBe(1);
  });

  it('refreshAfterRejection: one grant for every caller that saw the same token refused; a newer token is returned at once', async () => {
    const clock = new FakeClock();
    const store = new FakeStore({ clock });
    const source = new FakeSource({ clock });
    const { r } = refresher(store, source, clock);
    await r.start();
    const rejected = r.current() as AccessToken;
    const release = source.hold();
    const callers = Array.from({ length: 10 }, () => r.refreshAfterRejection(rejected));
    await clock.flush();
    release();
    const tokens = await Promise.all(callers);
    expect(new Set(tokens.map((t) => t.accessToken))).toEqual(new Set(['at-2']));
    expect(source.grants).toBe(2);
    // A caller holding the older token gets the current one without another grant.
    expect((await r.refreshAfterRejection(rejected)).accessToken).toBe('at-2');
    expect(source.grants).toBe(2);
  });
});
