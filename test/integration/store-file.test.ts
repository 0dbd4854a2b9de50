import { chmod, mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Clock } from '../../src/clock.js';
import { TokendError } from '../../src/errors.js';
import { decodeMeta, decodeState, encodeMeta, encodeState } from '../../src/store/codec.js';
import { FileStore, type FileStoreOptions } from '../../src/store/file.js';
import type { AccessToken } from '../../src/token.js';

const T0 = Date.UTC(2025, 0, 1); // 1735689600 s
const SEED = 'ab'.repeat(32);

const fixedClock: Clock = {
  now: () => T0 + 1_234,
  setTimer: () => ({ cancel: () => undefined }),
};

function token(accessToken: string, expiresAt: number, scope: string | null = 'orders:read'): AccessToken {
  return { accessToken, tokenType: 'Bearer', expiresAt, obtainedAt: T0, scope: scope ?? undefined };
}

interface Report {
  name: string;
  what: string;
  reason: string;
}

let root: string;
let reports: Report[];

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'tokend-store-file-'));
  reports = [];
});

afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

function newStore(opts: Partial<FileStoreOptions> = {}): FileStore {
  return new FileStore({
    dir: join(root, 'tokens'),
    clock: fixedClock,
    onCorrupt: (name, what, reason) => reports.push({ name, what, reason }),
    ...opts,
  });
}

async function modeOf(path: string): Promise<number> {
  return (await stat(path)).mode & 0o777;
}

async function withUmask<T>(mask: number, fn: () => Promise<T>): Promise<T> {
  const previous = process.umask(mask);
  try {
    return await fn();
  } finally {
    process.umask(previous);
  }
}

async function storeError(p: Promise<unknown>): Promise<TokendError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(TokendError);
  return err as TokendError;
}

describe('FileStore layout', () => {
  it('writes the raw token without a newline, the metadata as documented and the state file', async () => {
    const store = newStore();
    await store.init();
    await store.saveRefreshToken('orders', 'rt-secret-1', SEED);
    await store.saveAccessToken('orders', token('at-secret-1', T0 + 3_600_500));
    const dir = join(root, 'tokens');

    expect(await readFile(join(dir, 'orders'), 'utf8')).toBe('at-secret-1');
    expect(await readFile(join(dir, 'orders.json'), 'utf8')).toBe(
      '{"access_token":"at-secret-1","token_type":"Bearer","expires_at":1735693200,"obtained_at":1735689600,"scope":"orders:read"}',
    );
    expect(JSON.parse(await readFile(join(dir, '.state', 'orders.state.json'), 'utf8'))).toStrictEqual({
      version: 1,
      refresh_token: 'rt-secret-1',
      seed_hash: SEED,
      updated_at: 1735689601,
    });
    // Nothing else: no temp files, no probe files.
    expect((await readdir(dir)).sort()).toEqual(['.state', 'orders', 'orders.json']);
    expect(await readdir(join(dir, '.state'))).toEqual(['orders.state.json']);
  });

  it('omits scope when there is none and writes seed_hash null without a seed', async () => {
    const store = newStore();
    await store.init();
    await store.saveAccessToken('orders', token('at', T0 + 60_000, null));
    await store.saveRefreshToken('orders', 'rt', undefined);
    const meta = JSON.parse(await readFile(join(root, 'tokens', 'orders.json'), 'utf8'));
    expect(Object.keys(meta)).toEqual(['access_token', 'token_type', 'expires_at', 'obtained_at']);
    const state = JSON.parse(await readFile(join(root, 'tokens', '.state', 'orders.state.json'), 'utf8'));
    expect(state.seed_hash).toBeNull();
  });

  it('loads back what it wrote, in a fresh store (times at second precision)', async () => {
    const first = newStore();
    await first.init();
    await first.saveRefreshToken('orders', 'rt-1', SEED);
    await first.saveAccessToken('orders', token('at-1', T0 + 60_000));
    const second = newStore();
    await second.init();
    expect(await second.load('orders')).toEqual({
      access: token('at-1', T0 + 60_000),
      refreshToken: 'rt-1',
      seedHash: SEED,
    });
    expect(reports).toEqual([]);
  });

  it('loads nothing, and reports nothing, for a name never written', async () => {
    const store = newStore();
    await store.init();
    expect(await store.load('orders')).toEqual({});
    expect(reports).toEqual([]);
  });

  it('honours a separate stateDir', async () => {
    const stateDir = join(root, 'state');
    const store = newStore({ stateDir });
    await store.init();
    await store.saveRefreshToken('orders', 'rt-1', undefined);
    expect(await readdir(stateDir)).toEqual(['orders.state.json']);
    expect(await readdir(join(root, 'tokens'))).toEqual([]);
  });
});

describe('FileStore modes', () => {
  it('creates 0600 token files, a 0700 state dir and 0600 state files under umask 0', async () => {
    await withUmask(0, async () => {
      const store = newStore();
      await store.init();
      await store.saveAccessToken('orders', token('at', T0 + 60_000));
      await store.saveRefreshToken('orders', 'rt', undefined);
    });
    const dir = join(root, 'tokens');
    expect(await modeOf(dir)).toBe(0o755);
    expect(await modeOf(join(dir, 'orders'))).toBe(0o600);
    expect(await modeOf(join(dir, 'orders.json'))).toBe(0o600);
    expect(await modeOf(join(dir, '.state'))).toBe(0o700);
    expect(await modeOf(join(dir, '.state', 'orders.state.json'))).toBe(0o600);
  });

  it('uses a configured 0640 for token files but keeps state at 0600, under umask 0 and 077', async () => {
    for (const mask of [0, 0o077]) {
      const dir = join(root, `tokens-${mask}`);
      await withUmask(mask, async () => {
        const store = newStore({ dir, mode: 0o640 });
        await store.init();
        await store.saveAccessToken('orders', token('at', T0 + 60_000));
        await store.saveRefreshToken('orders', 'rt', undefined);
      });
      expect(await modeOf(join(dir, 'orders'))).toBe(0o640);
      expect(await modeOf(join(dir, 'orders.json'))).toBe(0o640);
      expect(await modeOf(join(dir, '.state'))).toBe(0o700);
      expect(await modeOf(join(dir, '.state', 'orders.state.json'))).toBe(0o600);
    }
  });

  it('refuses a mode that lets others write, or denies the owner read/write', () => {
    for (const mode of [0o666, 0o620, 0o602, 0o700, 0o400, 0o1600]) {
      let err: unknown;
      try {
        newStore({ mode });
      } catch (e) {
        err = e;
      }
      expect(err, mode.toString(8)).toBeInstanceOf(TokendError);
      expect((err as TokendError).code).toBe('CONFIG_INVALID');
    }
    expect(newStore({ mode: 0o644 }).mode).toBe(0o644);
  });
});

describe('FileStore atomicity', () => {
  it('never shows a reader a partial or empty file during 200 rapid writes', async () => {
    const store = newStore();
    await store.init();
    const dir = join(root, 'tokens');
    // Lengths vary, so a truncated file would not be mistaken for a whole one.
    const values = Array.from({ length: 200 }, (_, i) => `at-${i}-${'x'.repeat((i * 37) % 700)}`);
    const valid = new Set(values);
    await store.saveAccessToken('orders', token(values[0]!, T0 + 1_000));

    let done = false;
    let reads = 0;
    const bad: string[] = [];
    const reader = (async () => {
      while (!done) {
        const raw = readFileSync(join(dir, 'orders'), 'utf8');
        if (!valid.has(raw)) bad.push(`raw of length ${raw.length}`);
        const metaText = readFileSync(join(dir, 'orders.json'), 'utf8');
        try {
          if (!valid.has(decodeMeta(metaText).accessToken)) bad.push('meta with unknown token');
        } catch {
          bad.push(`meta of length ${metaText.length}`);
        }
        reads++;
        await new Promise((resolve) => setImmediate(resolve));
      }
    })();

    for (let i = 1; i < values.length; i++) {
      await store.saveAccessToken('orders', token(values[i]!, T0 + 1_000 * (i + 1)));
    }
    done = true;
    await reader;

    expect(bad).toEqual([]);
    expect(reads).toBeGreaterThan(50);
    expect(readFileSync(join(dir, 'orders'), 'utf8')).toBe(values[199]);
    expect((await readdir(dir)).sort()).toEqual(['.state', 'orders', 'orders.json']);
  });
});

describe('FileStore only writes the newest token', () => {
  it('drops a save that does not expire later than the last one written', async () => {
    const store = newStore();
    await store.init();
    await store.saveAccessToken('orders', token('newest', T0 + 60_000));
    await store.saveAccessToken('orders', token('older', T0 + 30_000));
    await store.saveAccessToken('orders', token('same-expiry', T0 + 60_000));
    expect(await readFile(join(root, 'tokens', 'orders'), 'utf8')).toBe('newest');
    await store.saveAccessToken('orders', token('later', T0 + 61_000));
    expect(await readFile(join(root, 'tokens', 'orders'), 'utf8')).toBe('later');
  });

  it('writes a token obtained under other settings (a new grant key) even if it expires sooner, and keeps the key', async () => {
    const store = newStore();
    await store.init();
    await store.saveAccessToken('orders', { ...token('old-settings', T0 + 3_600_000), grantKey: 'a'.repeat(32) });
    await store.saveAccessToken('orders', { ...token('new-settings', T0 + 300_000), grantKey: 'b'.repeat(32) });
    expect(await readFile(join(root, 'tokens', 'orders'), 'utf8')).toBe('new-settings');
    const fresh = newStore();
    expect((await fresh.load('orders')).access).toMatchObject({ accessToken: 'new-settings', grantKey: 'b'.repeat(32) });
  });

  it('drops a save older than what a fresh store loaded from disk', async () => {
    const first = newStore();
    await first.init();
    await first.saveAccessToken('orders', token('on-disk', T0 + 60_000));
    const second = newStore();
    await second.init();
    await second.load('orders');
    await second.saveAccessToken('orders', token('older', T0 + 30_000));
    expect(await readFile(join(root, 'tokens', 'orders'), 'utf8')).toBe('on-disk');
  });

  it('serializes concurrent saves for one name, so the newest wins whatever the order', async () => {
    const store = newStore();
    await store.init();
    const order = [5, 19, 2, 11, 0, 17, 8, 13, 1, 16, 6, 3, 18, 9, 12, 4, 14, 7, 15, 10];
    await Promise.all(order.map((i) => store.saveAccessToken('orders', token(`at-${i}`, T0 + 1_000 * (i + 1)))));
    expect(await readFile(join(root, 'tokens', 'orders'), 'utf8')).toBe('at-19');
    expect(decodeMeta(await readFile(join(root, 'tokens', 'orders.json'), 'utf8')).accessToken).toBe('at-19');
  });

  it('keeps names apart', async () => {
    const store = newStore();
    await store.init();
    await store.saveAccessToken('orders', token('at-orders', T0 + 60_000));
    await store.saveAccessToken('billing', token('at-billing', T0 + 1_000));
    expect((await store.load('billing')).access?.accessToken).toBe('at-billing');
    expect((await store.load('orders')).access?.accessToken).toBe('at-orders');
  });
});

describe('FileStore corrupt entries', () => {
  const goodMeta = (accessToken: string, expiresAtSec: number): string =>
    JSON.stringify({ access_token: accessToken, token_type: 'Bearer', expires_at: expiresAtSec, obtained_at: 1735689600 });

  const cases: Array<{ what: string; raw?: string; meta?: string; reason: RegExp }> = [
    { what: 'invalid JSON', raw: 'at', meta: 'not json {', reason: /not valid JSON/ },
    { what: 'truncated JSON', raw: 'at', meta: goodMeta('at', 1735693200).slice(0, 30), reason: /not valid JSON/ },
    { what: 'an empty file', raw: 'at', meta: '', reason: /empty/ },
    { what: 'a JSON array', raw: 'at', meta: '[1,2]', reason: /not a JSON object/ },
    { what: 'expires_at as a string', raw: 'at', meta: goodMeta('at', 1).replace('1,', '"soon",'), reason: /expires_at/ },
    { what: 'expires_at overflowing to Infinity', raw: 'at', meta: goodMeta('at', 1735693200).replace('1735693200', '1e999'), reason: /expires_at is not a finite number/ },
    { what: 'a missing access_token', raw: 'at', meta: '{"token_type":"Bearer","expires_at":1,"obtained_at":1}', reason: /access_token/ },
    { what: 'a raw file that disagrees', raw: 'other-token', meta: goodMeta('at', 1735693200), reason: /disagrees/ },
    { what: 'a raw file with a trailing newline', raw: 'at\n', meta: goodMeta('at', 1735693200), reason: /disagrees/ },
    { what: 'a missing raw file', meta: goodMeta('at', 1735693200), reason: /raw token file is missing/ },
    { what: 'a missing metadata file', raw: 'at', reason: /metadata file is missing/ },
    { what: 'an oversized metadata file', raw: 'at', meta: ' '.repeat(70_000), reason: /larger than 65536 bytes/ },
    { what: 'invalid UTF-8', raw: 'at', meta: '\u0000', reason: /not valid JSON/ },
  ];

  for (const c of cases) {
    it(`reports ${c.what} and returns no access token, then the next write replaces it`, async () => {
      const store = newStore();
      await store.init();
      const dir = join(root, 'tokens');
      if (c.raw !== undefined) await writeFile(join(dir, 'orders'), c.raw);
      if (c.meta !== undefined) await writeFile(join(dir, 'orders.json'), c.meta);

      const state = await store.load('orders');
      expect(state.access).toBeUndefined();
      expect(reports).toHaveLength(1);
      expect(reports[0]!.name).toBe('orders');
      expect(reports[0]!.what.startsWith(dir)).toBe(true);
      expect(reports[0]!.reason).toMatch(c.reason);
      // The reason never quotes the content.
      expect(reports[0]!.reason).not.toContain('other-token');

      // Even one expiring earlier than what the corrupt file claims is written.
      await store.saveAccessToken('orders', token('fresh', T0 + 10_000));
      expect(await readFile(join(dir, 'orders'), 'utf8')).toBe('fresh');
      expect((await store.load('orders')).access?.accessToken).toBe('fresh');
      expect(reports).toHaveLength(1);
    });
  }

  it('does not return a raw file whose json claims a far-future expiry but a different token', async () => {
    const store = newStore();
    await store.init();
    const dir = join(root, 'tokens');
    await writeFile(join(dir, 'orders'), 'tampered');
    await writeFile(join(dir, 'orders.json'), goodMeta('original', 253402300000));
    expect((await store.load('orders')).access).toBeUndefined();
    await store.saveAccessToken('orders', token('fresh', T0 + 10_000));
    expect((await store.load('orders')).access?.accessToken).toBe('fresh');
  });

  it('treats a symlinked metadata file as corrupt instead of following it', async () => {
    const store = newStore();
    await store.init();
    const dir = join(root, 'tokens');
    await writeFile(join(root, 'elsewhere.json'), goodMeta('at', 1735693200));
    await writeFile(join(dir, 'orders'), 'at');
    await symlink(join(root, 'elsewhere.json'), join(dir, 'orders.json'));
    expect((await store.load('orders')).access).toBeUndefined();
    expect(reports.map((r) => r.reason)).toEqual(['is a symbolic link']);
    // The rename replaces the link itself, not its target.
    await store.saveAccessToken('orders', token('fresh', T0 + 10_000));
    expect((await store.load('orders')).access?.accessToken).toBe('fresh');
    expect(decodeMeta(await readFile(join(root, 'elsewhere.json'), 'utf8')).accessToken).toBe('at');
  });

  const badStates: Array<{ what: string; text: string; reason: RegExp }> = [
    { what: 'truncated', text: '{"version":1,"refresh_token":"rt-sec', reason: /not valid JSON/ },
    { what: 'empty', text: '', reason: /empty/ },
    { what: 'of another version', text: '{"version":2,"refresh_token":"rt","seed_hash":null,"updated_at":1}', reason: /version/ },
    { what: 'without a refresh token', text: '{"version":1,"seed_hash":null,"updated_at":1}', reason: /refresh_token/ },
    { what: 'with a numeric refresh token', text: '{"version":1,"refresh_token":42,"seed_hash":null,"updated_at":1}', reason: /refresh_token/ },
    { what: 'with a non-string seed hash', text: '{"version":1,"refresh_token":"rt","seed_hash":7,"updated_at":1}', reason: /seed_hash/ },
    { what: 'with updated_at missing', text: '{"version":1,"refresh_token":"rt","seed_hash":null}', reason: /updated_at/ },
  ];

  for (const c of badStates) {
    it(`reports a state file ${c.what} and returns no refresh token, then the next write replaces it`, async () => {
      const store = newStore();
      await store.init();
      await store.saveAccessToken('orders', token('at', T0 + 60_000));
      const path = join(root, 'tokens', '.state', 'orders.state.json');
      await writeFile(path, c.text);

      const state = await store.load('orders');
      expect(state.refreshToken).toBeUndefined();
      expect(state.seedHash).toBeUndefined();
      // A corrupt state file does not cost the (good) access token.
      expect(state.access?.accessToken).toBe('at');
      expect(reports).toEqual([{ name: 'orders', what: path, reason: expect.stringMatching(c.reason) }]);
      expect(reports[0]!.reason).not.toContain('rt-sec');

      await store.saveRefreshToken('orders', 'rt-2', undefined);
      expect((await store.load('orders')).refreshToken).toBe('rt-2');
      expect(reports).toHaveLength(1);
    });
  }
});

describe('FileStore temp files', () => {
  it('ignores leftover temp files on load and removes them at init', async () => {
    const dir = join(root, 'tokens');
    const first = newStore();
    await first.init();
    await first.saveAccessToken('orders', token('at', T0 + 60_000));
    await first.saveRefreshToken('orders', 'rt', undefined);
    // What a crash between open and rename leaves behind.
    const leftovers = [join(dir, '.orders.json.0123456789abcdef.tmp'), join(dir, '.orders.fedcba9876543210.tmp')];
    const stateLeftover = join(dir, '.state', '.orders.state.json.00112233445566ff.tmp');
    for (const p of [...leftovers, stateLeftover]) await writeFile(p, '{"access_tok');
    await writeFile(join(dir, '.keep-me'), 'not ours');

    expect((await first.load('orders')).access?.accessToken).toBe('at');
    expect(reports).toEqual([]);

    const second = newStore();
    await second.init();
    expect((await readdir(dir)).sort()).toEqual(['.keep-me', '.state', 'orders', 'orders.json']);
    expect(await readdir(join(dir, '.state'))).toEqual(['orders.state.json']);
    expect(await second.load('orders')).toEqual({ access: token('at', T0 + 60_000), refreshToken: 'rt', seedHash: undefined });
  });
});

describe('FileStore init', () => {
  it('fails with STORE_UNAVAILABLE naming the directory when it lies under a regular file', async () => {
    await writeFile(join(root, 'a-file'), 'x');
    const dir = join(root, 'a-file', 'tokens');
    const err = await storeError(newStore({ dir }).init());
    expect(err.code).toBe('STORE_UNAVAILABLE');
    expect(err.message).toContain(dir);
  });

  it('fails with STORE_UNAVAILABLE when the directory is a regular file', async () => {
    const dir = join(root, 'a-file');
    await writeFile(dir, 'x');
    const err = await storeError(newStore({ dir }).init());
    expect(err.code).toBe('STORE_UNAVAILABLE');
    expect(err.message).toContain(dir);
  });

  it('fails naming the state directory when only that one is unusable', async () => {
    await writeFile(join(root, 'a-file'), 'x');
    const stateDir = join(root, 'a-file', 'state');
    const err = await storeError(newStore({ stateDir }).init());
    expect(err.code).toBe('STORE_UNAVAILABLE');
    expect(err.message).toContain(stateDir);
  });

  it('uses an existing directory without changing its mode', async () => {
    const dir = join(root, 'existing');
    await mkdir(dir);
    await chmod(dir, 0o750);
    await newStore({ dir }).init();
    expect(await modeOf(dir)).toBe(0o750);
  });
});

describe('FileStore remove and errors', () => {
  it('removes the raw and metadata files and leaves a revocation tombstone in place of the refresh token; a missing one is fine', async () => {
    const store = newStore();
    await store.init();
    await store.saveAccessToken('orders', token('at', T0 + 60_000));
    await store.saveRefreshToken('orders', 'rt-secret-value', SEED);
    await store.remove('orders');
    const dir = join(root, 'tokens');
    expect(await readdir(dir)).toEqual(['.state']);
    expect(await readdir(join(dir, '.state'))).toEqual(['orders.state.json']);
    const tombstone = await readFile(join(dir, '.state', 'orders.state.json'), 'utf8');
    expect(tombstone).not.toContain('rt-secret-value');
    expect((await stat(join(dir, '.state', 'orders.state.json'))).mode & 0o777).toBe(0o600);
    expect(await store.load('orders')).toEqual({ revoked: true, seedHash: SEED });
    await expect(store.remove('orders')).resolves.toBeUndefined();
    // A new chain replaces the tombstone.
    await store.saveRefreshToken('orders', 'rt-new', SEED);
    expect(await store.load('orders')).toMatchObject({ refreshToken: 'rt-new', revoked: undefined });
    // Forgotten too: an earlier-expiring token is written again.
    await store.saveAccessToken('orders', token('after-remove', T0 + 1_000));
    expect(await readFile(join(dir, 'orders'), 'utf8')).toBe('after-remove');
  });

  it('rejects a write with STORE_UNAVAILABLE naming the file, never the token, when the directory is gone', async () => {
    const store = newStore();
    await store.init();
    const dir = join(root, 'tokens');
    await rm(dir, { recursive: true });
    await writeFile(dir, 'now a file');
    const err = await storeError(store.saveAccessToken('orders', token('at-secret-value', T0 + 60_000)));
    expect(err.code).toBe('STORE_UNAVAILABLE');
    expect(err.message).toContain(join(dir, 'orders'));
    expect(err.message).not.toContain('at-secret-value');
    const err2 = await storeError(store.saveRefreshToken('orders', 'rt-secret-value', undefined));
    expect(err2.code).toBe('STORE_UNAVAILABLE');
    expect(err2.message).toContain('orders.state.json');
    expect(err2.message).not.toContain('rt-secret-value');
  });

  it('refuses a token it could not read back, without writing it or echoing it', async () => {
    const store = newStore();
    await store.init();
    const err = await storeError(store.saveAccessToken('orders', token('line1\nline2-secret', T0 + 60_000)));
    expect(err.code).toBe('STORE_UNAVAILABLE');
    expect(err.message).toMatch(/access_token/);
    expect(err.message).not.toContain('secret');
    expect(await readdir(join(root, 'tokens'))).toEqual(['.state']);
  });

  it('refuses names that are not safe file names', async () => {
    const store = newStore();
    await store.init();
    for (const name of ['../escape', '.hidden', 'a/b', 'Upper', 'orders.json', '']) {
      const err = await storeError(store.saveAccessToken(name, token('at', T0 + 60_000)));
      expect(err.code).toBe('STORE_UNAVAILABLE');
    }
    expect(await readdir(root)).toEqual(['tokens']);
  });

  it('waits for queued writes on close', async () => {
    const store = newStore();
    await store.init();
    const pending = store.saveAccessToken('orders', token('at', T0 + 60_000));
    await store.close();
    expect(await readFile(join(root, 'tokens', 'orders'), 'utf8')).toBe('at');
    await pending;
  });
});

describe('codec', () => {
  it('round-trips metadata at second precision, never later than the original', () => {
    const t = { accessToken: 'a.b.c', tokenType: 'DPoP', expiresAt: T0 + 59_999, obtainedAt: T0 + 1, scope: '' };
    const back = decodeMeta(encodeMeta(t));
    expect(back).toEqual({ ...t, expiresAt: T0 + 59_000, obtainedAt: T0 });
  });

  it('round-trips state and refuses unknown versions', () => {
    const text = encodeState({ refreshToken: 'rt', seedHash: SEED, updatedAt: T0 + 999 });
    expect(decodeState(text)).toEqual({ refreshToken: 'rt', seedHash: SEED, updatedAt: T0 });
    expect(() => decodeState(text.replace('"version":1', '"version":3'))).toThrow(TokendError);
  });

  it('never quotes the content in an error', () => {
    for (const text of ['{"access_token":"leak-me', 'leak-me', '{"access_token":"leak-me\\u0001"}']) {
      let message = '';
      try {
        decodeMeta(text);
      } catch (e) {
        message = (e as Error).message;
      }
      expect(message).not.toBe('');
      expect(message).not.toContain('leak-me');
    }
  });
});
