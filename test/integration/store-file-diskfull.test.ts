import { execFile } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hasCode } from '../../src/errors.js';
import { decodeStateDoc } from '../../src/store/codec.js';
import { FileStore } from '../../src/store/file.js';
import type { AccessToken } from '../../src/token.js';
import { sha256Hex } from '../../src/util/hash.js';
import { fill } from '../support/tmpfs.js';

// Issue 9.3: with the state directory on a full filesystem, no refresh_token grant may happen,
// because the state write that would follow it cannot succeed. The store's part: recordIntent
// (made before every such grant) rejects while the disk is full, nothing stored is damaged, and
// writes succeed again once space is freed. Needs root and permission to mount a tmpfs (CI runs as
// root); elsewhere the test is skipped with a message saying so.

const run = promisify(execFile);
let mnt = '';
let mounted = false;
let why = '';

function token(accessToken: string, lifetimeMs: number): AccessToken {
  const now = Date.now();
  return { accessToken, tokenType: 'Bearer', expiresAt: now + lifetimeMs, obtainedAt: now };
}


beforeAll(async () => {
  mnt = await mkdtemp(join(tmpdir(), 'tokend-diskfull-'));
  try {
    await run('mount', ['-t', 'tmpfs', '-o', 'size=1m,mode=0755', 'tmpfs', mnt]);
    mounted = true;
  } catch (err) {
    why = `cannot mount a tmpfs here (needs root and mount permission): ${(err as Error).message.split('\n')[0]}`;
  }
});

afterAll(async () => {
  if (mounted) await run('umount', [mnt]);
  await rm(mnt, { recursive: true, force: true });
});

describe('FileStore on a full disk (tmpfs)', () => {
  it('refuses recordIntent and commits while the disk is full, corrupts nothing, and writes again once space is freed', async (ctx) => {
    if (!mounted) {
      console.warn(`skipped: ${why}`);
      ctx.skip();
    }
    const store = new FileStore({ dir: join(mnt, 'tokens') });
    await store.init();
    try {
      const at1 = token('at-1', 600_000);
      await store.withLease('orders', (lease) => store.commit(lease, { access: at1, refreshToken: 'rt-1' }));
      const filler = join(mnt, 'filler');
      await fill(filler);

      const full = await store.withLease('orders', async (lease) => {
        const intent = await store.recordIntent(lease, sha256Hex('rt-1')).catch((e: unknown) => e);
        const commit = await store.commit(lease, { access: token('at-2', 900_000), refreshToken: 'rt-2' }).catch((e: unknown) => e);
        return { intent, commit };
      });
      expect(full.acquired).toBe(true);
      if (!full.acquired) return;
      expect(hasCode(full.value.intent, 'STORE_UNAVAILABLE')).toBe(true);
      expect((full.value.intent as Error).message).toContain('ENOSPC');
      expect(hasCode(full.value.commit, 'STORE_UNAVAILABLE')).toBe(true);
      const wb = await store.writeBack('orders', new Set([sha256Hex('rt-1')]), { refreshToken: 'rt-2' }).catch((e: unknown) => e);
      expect(hasCode(wb, 'STORE_UNAVAILABLE')).toBe(true);

      // What is stored is intact: the old refresh token, no intent, the old access token, no temp files.
      const stateText = await readFile(join(mnt, 'tokens', '.state', 'orders.state.json'), 'utf8');
      expect(decodeStateDoc(stateText)).toMatchObject({ refreshToken: 'rt-1', intent: undefined });
      expect((await store.load('orders')).access?.accessToken).toBe('at-1');
      expect((await readdir(join(mnt, 'tokens'))).sort()).toEqual(['.state', 'orders', 'orders.json']);
      expect(await readdir(join(mnt, 'tokens', '.state'))).toEqual(['orders.state.json']);

      await rm(filler);
      await store.withLease('orders', async (lease) => {
        await store.recordIntent(lease, sha256Hex('rt-1'));
        await store.commit(lease, { access: token('at-2', 900_000), refreshToken: 'rt-2' });
      });
      const after = await store.load('orders');
      expect([after.refreshToken, after.access?.accessToken, after.intent]).toEqual(['rt-2', 'at-2', undefined]);
    } finally {
      await store.close();
    }
  });
});
