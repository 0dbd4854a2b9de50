import { describe, expect, it } from 'vitest';
import { MemoryStore } from '../../src/store/memory.js';
import type { AccessToken } from '../../src/token.js';

const T0 = Date.UTC(2025, 0, 1);

function token(accessToken: string, expiresAt: number): AccessToken {
  return { accessToken, tokenType: 'Bearer', expiresAt, obtainedAt: T0, scope: 'orders:read' };
}

describe('MemoryStore', () => {
  it('is a memory store whose init and close succeed', async () => {
    const store = new MemoryStore();
    expect(store.kind).toBe('memory');
    await expect(store.init()).resolves.toBeUndefined();
    await expect(store.close()).resolves.toBeUndefined();
  });

  it('loads nothing for a name never saved', async () => {
    const store = new MemoryStore();
    const state = await store.load('orders');
    expect(state.access).toBeUndefined();
    expect(state.refreshToken).toBeUndefined();
    expect(state.seedHash).toBeUndefined();
  });

  it('returns the saved access token, refresh token and seed hash', async () => {
    const store = new MemoryStore();
    await store.saveRefreshToken('orders', 'rt-1', 'ab'.repeat(32));
    await store.saveAccessToken('orders', token('at-1', T0 + 60_000));
    expect(await store.load('orders')).toEqual({
      access: token('at-1', T0 + 60_000),
      refreshToken: 'rt-1',
      seedHash: 'ab'.repeat(32),
    });
  });

  it('keeps names apart', async () => {
    const store = new MemoryStore();
    await store.saveAccessToken('orders', token('at-orders', T0 + 60_000));
    await store.saveAccessToken('billing', token('at-billing', T0 + 1_000));
    expect((await store.load('orders')).access?.accessToken).toBe('at-orders');
    expect((await store.load('billing')).access?.accessToken).toBe('at-billing');
  });

  it('drops a write that does not expire later than the stored token', async () => {
    const store = new MemoryStore();
    await store.saveAccessToken('orders', token('newest', T0 + 60_000));
    await store.saveAccessToken('orders', token('older', T0 + 30_000));
    await store.saveAccessToken('orders', token('same-expiry', T0 + 60_000));
    expect((await store.load('orders')).access?.accessToken).toBe('newest');
    await store.saveAccessToken('orders', token('later', T0 + 90_000));
    expect((await store.load('orders')).access?.accessToken).toBe('later');
  });

  it('replaces the refresh token, including dropping the seed hash', async () => {
    const store = new MemoryStore();
    await store.saveRefreshToken('orders', 'rt-1', 'seed');
    await store.saveRefreshToken('orders', 'rt-2', undefined);
    const state = await store.load('orders');
    expect(state.refreshToken).toBe('rt-2');
    expect(state.seedHash).toBeUndefined();
  });

  it('is not changed by a caller mutating the token object or the loaded state', async () => {
    const store = new MemoryStore();
    const t = { ...token('at-1', T0 + 60_000) };
    await store.saveAccessToken('orders', t);
    (t as { accessToken: string }).accessToken = 'mutated';
    const loaded = await store.load('orders');
    (loaded as { refreshToken?: string }).refreshToken = 'injected';
    const again = await store.load('orders');
    expect(again.access?.accessToken).toBe('at-1');
    expect(again.refreshToken).toBeUndefined();
  });

  it('forgets everything on remove, so an earlier-expiring token can be written again', async () => {
    const store = new MemoryStore();
    await store.saveRefreshToken('orders', 'rt-1', undefined);
    await store.saveAccessToken('orders', token('at-1', T0 + 60_000));
    await store.remove('orders');
    expect(await store.load('orders')).toEqual({});
    await store.saveAccessToken('orders', token('at-2', T0 + 10_000));
    expect((await store.load('orders')).access?.accessToken).toBe('at-2');
    await expect(store.remove('never-saved')).resolves.toBeUndefined();
  });
});
