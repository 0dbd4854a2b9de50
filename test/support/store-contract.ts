/**
 * The store protocol (src/store/store.ts) as one suite, run against every store and the test fake,
 * so that no store (and no fake) can quietly disagree with the others. Real time: tokens expire
 * minutes from now, except where a test wants one that is no longer usable.
 */
import { describe, expect, it } from 'vitest';
import { hasCode } from '../../src/errors.js';
import type { Lease, StoredState, TokenStore } from '../../src/store/store.js';
import { MIN_USABLE_MS, type AccessToken } from '../../src/token.js';
import { sha256Hex } from '../../src/util/hash.js';
import { until } from './until.js';

/** What makeStore gives the suite for one test. */
export interface StoreFixture {
  readonly store: TokenStore;
  /**
   * A second holder on the same backend: another replica (Redis, memory with a shared backend)
   * or another process writing the same directory (file). Its commits must reach store's watchers.
   */
  readonly other: TokenStore;
  /** True when other is refused the lease while store holds it (Redis, memory); file leases are per process. */
  readonly sharedLease: boolean;
  /** Closes both stores and whatever backs them. */
  cleanup(): Promise<void>;
}

const SEED = sha256Hex('seed');
const GK_A = 'a'.repeat(32);
const GK_B = 'b'.repeat(32);

/** An access token that expires lifetimeMs from now (whole ms, as every store keeps them). */
export function token(accessToken: string, lifetimeMs: number, extra: Partial<AccessToken> = {}): AccessToken {
  const now = Date.now();
  return { accessToken, tokenType: 'Bearer', expiresAt: now + lifetimeMs, obtainedAt: now, scope: 'orders:read', ...extra };
}

/** The stored facts of a token, without the process-local deadline a store stamps when loading. */
function facts(t: AccessToken | undefined): Omit<AccessToken, 'deadline'> | undefined {
  if (t === undefined) return undefined;
  const { deadline: _d, ...rest } = t;
  return rest;
}

/** A loaded state without undefined fields and deadlines, for exact comparisons. */
function plain(s: StoredState): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries({ ...s, access: facts(s.access) })) if (v !== undefined) out[k] = v;
  return out;
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => new Error('expected a rejection, but it resolved'),
    (e: unknown) => e,
  );
}

async function commit(store: TokenStore, name: string, update: Parameters<TokenStore['commit']>[1]): Promise<void> {
  const out = await store.withLease(name, (lease) => store.commit(lease, update));
  expect(out.acquired).toBe(true);
}

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

/** Defines the protocol's specification for one store. makeStore gives a fresh, empty store (initialised). */
export function describeTokenStore(label: string, makeStore: () => Promise<StoreFixture>): void {
  const withStore = (fn: (f: StoreFixture) => Promise<void>) => async () => {
    const f = await makeStore();
    try {
      await fn(f);
    } finally {
      await f.cleanup();
    }
  };

  describe(`${label}: the store protocol`, () => {
    describe('load and commit', () => {
      it('loads nothing for a name never written', withStore(async ({ store }) => {
        expect(plain(await store.load('orders'))).toEqual({});
      }));

      it('stores the refresh token, its seed and the access token in one commit', withStore(async ({ store, other }) => {
        const t = token('at-1', 600_000, { grantKey: GK_A });
        await commit(store, 'orders', { access: t, refreshToken: 'rt-1', seedHash: SEED });
        for (const reader of [store, other]) {
          expect(plain(await reader.load('orders'))).toEqual({ access: t, refreshToken: 'rt-1', seedHash: SEED });
        }
      }));

      it('keeps names apart', withStore(async ({ store }) => {
        await commit(store, 'orders', { access: token('at-orders', 600_000), refreshToken: 'rt-orders' });
        await commit(store, 'billing', { access: token('at-billing', 300_000) });
        expect((await store.load('orders')).access?.accessToken).toBe('at-orders');
        expect(plain(await store.load('billing'))).toEqual({ access: expect.objectContaining({ accessToken: 'at-billing' }) });
      }));

      it('drops a stale access token: one expiring earlier, or at the same time, never replaces the stored one', withStore(async ({ store }) => {
        const newest = token('newest', 600_000);
        await commit(store, 'orders', { access: newest });
        await commit(store, 'orders', { access: { ...newest, accessToken: 'older', expiresAt: newest.expiresAt - 60_000 } });
        await commit(store, 'orders', { access: { ...newest, accessToken: 'same-expiry' } });
        expect((await store.load('orders')).access?.accessToken).toBe('newest');
        await commit(store, 'orders', { access: { ...newest, accessToken: 'later', expiresAt: newest.expiresAt + 1 } });
        expect((await store.load('orders')).access?.accessToken).toBe('later');
      }));

      it('replaces a token obtained under other settings (another grantKey) even when it expires sooner', withStore(async ({ store }) => {
        await commit(store, 'orders', { access: token('old-settings', 3_600_000, { grantKey: GK_A }) });
        await commit(store, 'orders', { access: token('new-settings', 300_000, { grantKey: GK_B }) });
        expect(facts((await store.load('orders')).access)).toMatchObject({ accessToken: 'new-settings', grantKey: GK_B });
      }));

      it('stores a rotated refresh token even when the stored access token is newer', withStore(async ({ store }) => {
        await commit(store, 'orders', { access: token('at-long', 900_000), refreshToken: 'rt-1' });
        await commit(store, 'orders', { access: token('at-short', 300_000), refreshToken: 'rt-2' });
        const s = await store.load('orders');
        expect(s.access?.accessToken).toBe('at-long');
        expect(s.refreshToken).toBe('rt-2');
      }));

      it('replaces the seed with the refresh token, dropping it when the new one has none', withStore(async ({ store }) => {
        await commit(store, 'orders', { refreshToken: 'rt-1', seedHash: SEED });
        await commit(store, 'orders', { refreshToken: 'rt-2' });
        expect(plain(await store.load('orders'))).toEqual({ refreshToken: 'rt-2' });
      }));

      it('hands out copies: mutating a committed token or a loaded state changes nothing stored', withStore(async ({ store }) => {
        const t = { ...token('at-1', 600_000) };
        await commit(store, 'orders', { access: t, refreshToken: 'rt-1' });
        (t as { accessToken: string }).accessToken = 'mutated';
        const loaded = await store.load('orders');
        (loaded as { refreshToken?: string }).refreshToken = 'injected';
        try {
          (loaded.access as { accessToken: string }).accessToken = 'mutated-too';
        } catch {
          // A frozen token refuses the write: just as good.
        }
        const again = await store.load('orders');
        expect(again.access?.accessToken).toBe('at-1');
        expect(again.refreshToken).toBe('rt-1');
      }));

      it(`never returns an access token with less than ${MIN_USABLE_MS} ms of life left`, withStore(async ({ store }) => {
        await commit(store, 'orders', { access: token('at-dying', MIN_USABLE_MS / 2), refreshToken: 'rt-1' });
        const s = await store.load('orders');
        expect(s.access).toBeUndefined();
        expect(s.refreshToken).toBe('rt-1');
      }));
    });

    describe('lease', () => {
      it('refuses a commit under a lease already released: LEASE_LOST, nothing written', withStore(async ({ store }) => {
        let kept: Lease | undefined;
        await store.withLease('orders', async (lease) => {
          kept = lease;
        });
        const err = await rejection(store.commit(kept as Lease, { access: token('at-late', 600_000), refreshToken: 'rt-late' }));
        expect(hasCode(err, 'LEASE_LOST')).toBe(true);
        expect(plain(await store.load('orders'))).toEqual({});
      }));

      it('refuses a commit under an older lease while a newer one is held (the fence differs)', withStore(async ({ store }) => {
        let old: Lease | undefined;
        await store.withLease('orders', async (lease) => {
          old = lease;
        });
        const out = await store.withLease('orders', async (fresh) => {
          expect(fresh.fence).toBeGreaterThan((old as Lease).fence);
          await store.commit(fresh, { access: token('at-fresh', 600_000), refreshToken: 'rt-fresh' });
          return rejection(store.commit(old as Lease, { access: token('at-old', 900_000), refreshToken: 'rt-old' }));
        });
        expect(out.acquired && hasCode(out.value, 'LEASE_LOST')).toBe(true);
        expect((await store.load('orders')).refreshToken).toBe('rt-fresh');
      }));

      it('never lets two holders of this store hold one name at once', withStore(async ({ store }) => {
        let active = 0;
        let most = 0;
        const gate = deferred();
        const hold = async (): Promise<void> => {
          active++;
          most = Math.max(most, active);
          await gate.promise;
          active--;
        };
        const first = store.withLease('orders', hold);
        await until(() => active === 1, 'the first holder to start', 5_000, 5);
        const second = store.withLease('orders', hold);
        gate.resolve();
        expect((await first).acquired).toBe(true);
        await second; // acquired after the first released, or refused: never both at once
        expect(most).toBe(1);
      }));

      it('refuses another holder the lease while one holds it, then lets it take the lease', withStore(async (f) => {
        if (!f.sharedLease) return; // the file store's lease is per process: covered by the test above
        const held = await f.store.withLease('orders', async () => {
          const other = await f.other.withLease('orders', async () => 'ran');
          expect(other.acquired).toBe(false);
          if (!other.acquired) expect(other.holderTtlMs).toBeGreaterThan(0);
          return 'held';
        });
        expect(held).toEqual({ acquired: true, value: 'held' });
        expect(await f.other.withLease('orders', async () => 'ran')).toEqual({ acquired: true, value: 'ran' });
      }));

      it('passes an error thrown under the lease to the caller, and releases the lease', withStore(async ({ store, other }) => {
        await expect(store.withLease('orders', async () => Promise.reject(new Error('grant failed')))).rejects.toThrow('grant failed');
        expect((await other.withLease('orders', async () => 1)).acquired).toBe(true);
        expect((await store.withLease('orders', async () => 1)).acquired).toBe(true);
      }));
    });

    describe('intent', () => {
      const H1 = sha256Hex('rt-1');

      it('records the intent (holder, presented hash, time) and clears it again', withStore(async ({ store, other }) => {
        await commit(store, 'orders', { refreshToken: 'rt-1', seedHash: SEED });
        const before = Date.now();
        await store.withLease('orders', async (lease) => {
          await store.recordIntent(lease, H1);
          const s = await other.load('orders');
          expect(s.intent).toEqual({ holder: lease.holder, presented: H1, at: expect.any(Number) });
          expect(s.intent?.at).toBeGreaterThanOrEqual(before - 1_000);
          expect(s.refreshToken).toBe('rt-1');
          await store.clearIntent(lease, sha256Hex('another token'));
          expect((await store.load('orders')).intent?.presented).toBe(H1);
          await store.clearIntent(lease, H1);
        });
        expect(plain(await other.load('orders'))).toEqual({ refreshToken: 'rt-1', seedHash: SEED });
      }));

      it('records an intent for a seed when nothing is stored yet', withStore(async ({ store }) => {
        await store.withLease('orders', (lease) => store.recordIntent(lease, H1));
        expect((await store.load('orders')).intent?.presented).toBe(H1);
      }));

      it('refuses recordIntent and clearIntent under a released lease (LEASE_LOST), changing nothing', withStore(async ({ store }) => {
        let kept: Lease | undefined;
        await store.withLease('orders', async (lease) => {
          kept = lease;
          await store.recordIntent(lease, H1);
        });
        expect(hasCode(await rejection(store.recordIntent(kept as Lease, sha256Hex('x'))), 'LEASE_LOST')).toBe(true);
        expect(hasCode(await rejection(store.clearIntent(kept as Lease, H1)), 'LEASE_LOST')).toBe(true);
        expect((await store.load('orders')).intent?.presented).toBe(H1);
      }));

      it('is cleared by a commit that rotates the refresh token, kept by one that does not', withStore(async ({ store }) => {
        await commit(store, 'orders', { refreshToken: 'rt-1' });
        await store.withLease('orders', async (lease) => {
          await store.recordIntent(lease, H1);
          await store.commit(lease, { access: token('at-1', 600_000) });
        });
        expect((await store.load('orders')).intent?.presented).toBe(H1);
        await commit(store, 'orders', { access: token('at-2', 900_000), refreshToken: 'rt-2' });
        expect(plain(await store.load('orders'))).toEqual({ access: expect.objectContaining({ accessToken: 'at-2' }), refreshToken: 'rt-2' });
      }));
    });

    describe('writeBack', () => {
      const consumed = new Set([sha256Hex('rt-1')]);

      it("is 'written' when nothing is stored", withStore(async ({ store }) => {
        const t = token('at-2', 600_000);
        expect(await store.writeBack('orders', consumed, { access: t, refreshToken: 'rt-2', seedHash: SEED })).toBe('written');
        expect(plain(await store.load('orders'))).toEqual({ access: t, refreshToken: 'rt-2', seedHash: SEED });
      }));

      it("is 'written' over a superseded refresh token, and clears its intent", withStore(async ({ store, other }) => {
        await commit(store, 'orders', { refreshToken: 'rt-1', seedHash: SEED });
        await store.withLease('orders', (lease) => store.recordIntent(lease, sha256Hex('rt-1')));
        expect(await other.writeBack('orders', consumed, { refreshToken: 'rt-2', seedHash: SEED })).toBe('written');
        expect(plain(await store.load('orders'))).toEqual({ refreshToken: 'rt-2', seedHash: SEED });
      }));

      it("is 'already' when the store holds that refresh token (the commit had landed)", withStore(async ({ store }) => {
        const t = token('at-2', 600_000);
        await commit(store, 'orders', { access: t, refreshToken: 'rt-2' });
        expect(await store.writeBack('orders', consumed, { access: t, refreshToken: 'rt-2' })).toBe('already');
        expect(await store.writeBack('orders', consumed, { refreshToken: 'rt-2' })).toBe('already');
      }));

      it("is 'superseded' over a newer refresh token, writing nothing", withStore(async ({ store }) => {
        await commit(store, 'orders', { access: token('at-3', 300_000), refreshToken: 'rt-3' });
        expect(await store.writeBack('orders', consumed, { access: token('at-2', 900_000), refreshToken: 'rt-2' })).toBe('superseded');
        const s = await store.load('orders');
        expect([s.refreshToken, s.access?.accessToken]).toEqual(['rt-3', 'at-3']);
      }));

      it("is 'superseded' over a revocation tombstone, writing nothing", withStore(async ({ store }) => {
        await commit(store, 'orders', { refreshToken: 'rt-1', seedHash: SEED });
        await store.remove('orders');
        expect(await store.writeBack('orders', consumed, { refreshToken: 'rt-2', seedHash: SEED })).toBe('superseded');
        expect(plain(await store.load('orders'))).toEqual({ revoked: true, seedHash: SEED });
      }));

      it('writes an access token alone only when it is newer', withStore(async ({ store }) => {
        const t = token('at-1', 300_000);
        expect(await store.writeBack('orders', new Set(), { access: t })).toBe('written');
        expect(await store.writeBack('orders', new Set(), { access: { ...t, accessToken: 'same-expiry' } })).toBe('already');
        expect(await store.writeBack('orders', new Set(), { access: token('at-2', 600_000) })).toBe('written');
        expect((await store.load('orders')).access?.accessToken).toBe('at-2');
      }));
    });

    describe('remove', () => {
      it('leaves a tombstone (revoked, with the seed) for a refresh-token chain; a new chain replaces it', withStore(async ({ store }) => {
        await commit(store, 'orders', { access: token('at-1', 600_000), refreshToken: 'rt-1', seedHash: SEED });
        await store.remove('orders');
        expect(plain(await store.load('orders'))).toEqual({ revoked: true, seedHash: SEED });
        await commit(store, 'orders', { refreshToken: 'rt-new', seedHash: sha256Hex('new seed') });
        expect(plain(await store.load('orders'))).toEqual({ refreshToken: 'rt-new', seedHash: sha256Hex('new seed') });
      }));

      it('clears a plain access token entirely, so an earlier-expiring one can be written again', withStore(async ({ store }) => {
        await commit(store, 'orders', { access: token('at-1', 900_000) });
        await store.remove('orders');
        expect(plain(await store.load('orders'))).toEqual({});
        await commit(store, 'orders', { access: token('at-2', 300_000) });
        expect((await store.load('orders')).access?.accessToken).toBe('at-2');
        await expect(store.remove('never-written')).resolves.toBeUndefined();
      }));
    });

    describe('watch', () => {
      it('calls the watcher once with the current state, then after commits by this and another holder', withStore(async ({ store, other }) => {
        await commit(store, 'orders', { access: token('at-0', 600_000), refreshToken: 'rt-0' });
        const seen: StoredState[] = [];
        const stop = store.watch('orders', (s) => seen.push(s));
        await until(() => seen.length >= 1, 'the first call', 5_000, 5);
        expect(seen[0]?.access?.accessToken).toBe('at-0');
        expect(seen[0]?.refreshToken).toBe('rt-0');

        await commit(store, 'orders', { access: token('at-1', 700_000), refreshToken: 'rt-1' });
        await until(() => seen.some((s) => s.refreshToken === 'rt-1'), 'this holder’s commit', 5_000, 5);
        await commit(other, 'orders', { access: token('at-2', 800_000), refreshToken: 'rt-2' });
        await until(() => seen.some((s) => s.refreshToken === 'rt-2' && s.access?.accessToken === 'at-2'), 'the other holder’s commit', 5_000, 5);
        await other.remove('orders');
        await until(() => seen.at(-1)?.revoked === true, 'the tombstone', 5_000, 5);
        stop();
      }));

      it('stops calling a watcher after unsubscribe', withStore(async ({ store, other }) => {
        const stopped: StoredState[] = [];
        const kept: StoredState[] = [];
        const stop = store.watch('orders', (s) => stopped.push(s));
        const stopKept = store.watch('orders', (s) => kept.push(s));
        await until(() => stopped.length >= 1 && kept.length >= 1, 'the first calls', 5_000, 5);
        stop();
        const before = stopped.length;
        await commit(other, 'orders', { access: token('at-after', 600_000), refreshToken: 'rt-after' });
        await until(() => kept.some((s) => s.refreshToken === 'rt-after'), 'the commit to reach the remaining watcher', 5_000, 5);
        expect(stopped.length).toBe(before);
        stopKept();
      }));
    });

    describe('names', () => {
      const bad = ['../escape', '.hidden', 'a/b', 'Upper', '', 'x'.repeat(64), 'orders\n'];

      it('refuses names that are not valid token names (CONFIG_INVALID), touching nothing', withStore(async ({ store }) => {
        for (const name of bad) {
          for (const op of [
            () => store.load(name),
            () => store.withLease(name, async () => 1),
            () => store.writeBack(name, new Set(), { refreshToken: 'rt' }),
            () => store.remove(name),
          ]) {
            expect(hasCode(await rejection(op()), 'CONFIG_INVALID'), JSON.stringify(name)).toBe(true);
          }
          expect(() => store.watch(name, () => undefined)).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID' }));
        }
      }));
    });
  });
}
