import { describe, expect, it } from 'vitest';
import { MemoryBackend, MemoryStore } from '../../src/store/memory.js';
import { FakeStore } from '../support/fake-store.js';
import { describeTokenStore, token } from '../support/store-contract.js';

// Two stores on one backend stand for two replicas sharing Redis.
describeTokenStore('MemoryStore', async () => {
  const backend = new MemoryBackend();
  const store = new MemoryStore({ backend, holderId: 'replica-a' });
  const other = new MemoryStore({ backend, holderId: 'replica-b' });
  return { store, other, sharedLease: true, cleanup: async () => void (await Promise.all([store.close(), other.close()])) };
});

// The refresher tests' fake must keep the same promises as the real stores.
describeTokenStore('FakeStore', async () => {
  const backend = new MemoryBackend();
  const store = new FakeStore({ backend, holderId: 'fake-a' });
  const other = new FakeStore({ backend, holderId: 'fake-b' });
  return { store, other, sharedLease: true, cleanup: async () => void (await Promise.all([store.close(), other.close()])) };
});

describe('MemoryStore', () => {
  it('describes itself, and its init and close succeed', async () => {
    const store = new MemoryStore();
    expect(store.description).toBe('memory store');
    await expect(store.init()).resolves.toBeUndefined();
    await expect(store.close()).resolves.toBeUndefined();
  });

  it('gives each store its own holder id unless one is given', () => {
    expect(new MemoryStore().holderId).not.toBe(new MemoryStore().holderId);
    expect(new MemoryStore({ holderId: 'replica-a' }).holderId).toBe('replica-a');
  });

  it('keeps a store without a shared backend to itself', async () => {
    const a = new MemoryStore();
    const b = new MemoryStore();
    await a.withLease('orders', (lease) => a.commit(lease, { access: token('at-a', 600_000) }));
    expect((await b.load('orders')).access).toBeUndefined();
  });
});
