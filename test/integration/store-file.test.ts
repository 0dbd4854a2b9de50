import { execFile } from 'node:child_process';
import { watch, readFileSync } from 'node:fs';
import { chmod, chown, mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { systemClock, type Clock } from '../../src/clock.js';
import { parseFileMode } from '../../src/config/fields.js';
import { hasCode, TokendError } from '../../src/errors.js';
import { decodeMeta, decodeMetaMs, decodeStateDoc, encodeMetaMs, encodeStateDoc } from '../../src/store/codec.js';
import { FileStore, type FileStoreOptions } from '../../src/store/file.js';
import type { Lease, StoredState, StoreUpdate } from '../../src/store/store.js';
import type { AccessToken } from '../../src/token.js';
import { sha256Hex } from '../../src/util/hash.js';
import { describeTokenStore } from '../support/store-contract.js';
import { until } from '../support/until.js';

const T0 = Date.UTC(2030, 0, 1); // 1893456000 s
const SEED = 'ab'.repeat(32);

// Wall time fixed at T0 + 1.234 s (for exact updated_at values), monotonic from the real clock.
const fixedClock: Clock = { now: () => T0 + 1_234, monotonic: () => performance.now(), setTimer: systemClock.setTimer };

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
const open: FileStore[] = [];

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'tokend-store-file-'));
  reports = [];
});

afterEach(async () => {
  await Promise.all(open.splice(0).map((s) => s.close()));
  await rm(root, { recursive: true, force: true });
});

function newStore(opts: Partial<FileStoreOptions> = {}): FileStore {
  const store = new FileStore({
    dir: join(root, 'tokens'),
    clock: fixedClock,
    onCorrupt: (name, what, reason) => reports.push({ name, what, reason }),
    ...opts,
  });
  open.push(store);
  return store;
}

async function commit(store: FileStore, name: string, update: StoreUpdate): Promise<void> {
  const out = await store.withLease(name, (lease) => store.commit(lease, update));
  expect(out.acquired).toBe(true);
}

async function modeOf(path: string): Promise<number> {
  return (await stat(path)).mode & 0o7777;
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

describeTokenStore('FileStore', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'tokend-contract-file-'));
  // `other` stands for another process on the same directory (`tokend revoke` beside the daemon).
  const store = new FileStore({ dir });
  const other = new FileStore({ dir });
  await store.init();
  await other.init();
  return {
    store,
    other,
    sharedLease: false,
    async cleanup() {
      await Promise.all([store.close(), other.close()]);
      await rm(dir, { recursive: true, force: true });
    },
  };
});

describe('FileStore layout', () => {
  it('writes the raw token without a newline, the metadata as documented and the state file', async () => {
    const store = newStore();
    await store.init();
    const t = token('at-secret-1', T0 + 3_600_500);
    await commit(store, 'orders', { access: t, refreshToken: 'rt-secret-1', seedHash: SEED });
    const dir = join(root, 'tokens');
    expect(await readFile(join(dir, 'orders'), 'utf8')).toBe('at-secret-1');
    expect(await readFile(join(dir, 'orders.json'), 'utf8')).toBe(
      '{"access_token":"at-secret-1","token_type":"Bearer","expires_at":1893459600,"obtained_at":1893456000,"scope":"orders:read",' +
        '"expires_at_ms":1893459600500,"obtained_at_ms":1893456000000}',
    );
    expect(JSON.parse(await readFile(join(dir, '.state', 'orders.state.json'), 'utf8'))).toStrictEqual({
      version: 1,
      refresh_token: 'rt-secret-1',
      seed_hash: SEED,
      updated_at: 1893456001,
    });
    // Nothing else: no temp files, no probe files.
    expect((await readdir(dir)).sort()).toEqual(['.state', 'orders', 'orders.json']);
    expect(await readdir(join(dir, '.state'))).toEqual(['orders.state.json']);
  });

  it('omits scope when there is none and writes seed_hash null without a seed', async () => {
    const store = newStore();
    await store.init();
    await commit(store, 'orders', { access: token('at', T0 + 60_000, null), refreshToken: 'rt' });
    const meta = JSON.parse(await readFile(join(root, 'tokens', 'orders.json'), 'utf8'));
    expect(Object.keys(meta)).toEqual(['access_token', 'token_type', 'expires_at', 'obtained_at', 'expires_at_ms', 'obtained_at_ms']);
    const state = JSON.parse(await readFile(join(root, 'tokens', '.state', 'orders.state.json'), 'utf8'));
    expect(state.seed_hash).toBeNull();
  });

  it('loads back what it wrote in a fresh store, to the millisecond, with a monotonic deadline stamped', async () => {
    const first = newStore();
    await first.init();
    await commit(first, 'orders', { access: token('at-1', T0 + 60_123), refreshToken: 'rt-1', seedHash: SEED });
    const second = newStore();
    await second.init();
    const before = performance.now();
    const loaded = await second.load('orders');
    const after = performance.now();
    expect(loaded).toEqual({ access: { ...token('at-1', T0 + 60_123), deadline: expect.any(Number) }, refreshToken: 'rt-1', seedHash: SEED });
    // deadline = monotonic reading when loaded + (expiresAt - wall now) = + 58.889 s.
    expect(loaded.access!.deadline!).toBeGreaterThanOrEqual(before + 58_889);
    expect(loaded.access!.deadline!).toBeLessThanOrEqual(after + 58_889);
    expect(reports).toEqual([]);
  });

  it('honours a separate stateDir', async () => {
    const stateDir = join(root, 'state');
    const store = newStore({ stateDir });
    await store.init();
    await commit(store, 'orders', { refreshToken: 'rt-1' });
    expect(await readdir(stateDir)).toEqual(['orders.state.json']);
    expect(await readdir(join(root, 'tokens'))).toEqual([]);
  });

  it('records the intent in the state file, durably, before recordIntent resolves', async () => {
    const store = newStore();
    await store.init();
    await commit(store, 'orders', { refreshToken: 'rt-1', seedHash: SEED });
    await store.withLease('orders', async (lease) => {
      await store.recordIntent(lease, sha256Hex('rt-1'));
      const doc = JSON.parse(await readFile(join(root, 'tokens', '.state', 'orders.state.json'), 'utf8'));
      expect(doc).toStrictEqual({
        version: 1,
        refresh_token: 'rt-1',
        seed_hash: SEED,
        updated_at: 1893456001,
        intent: { holder: store.holderId, presented: sha256Hex('rt-1'), at: T0 + 1_234 },
      });
    });
  });
});

describe('FileStore modes', () => {
  it('creates 0600 token files, a 0755 dir, a 0700 state dir and 0600 state files under umask 0', async () => {
    await withUmask(0, async () => {
      const store = newStore();
      await store.init();
      await commit(store, 'orders', { access: token('at', T0 + 60_000), refreshToken: 'rt' });
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
        await commit(store, 'orders', { access: token('at', T0 + 60_000), refreshToken: 'rt' });
      });
      expect(await modeOf(join(dir, 'orders'))).toBe(0o640);
      expect(await modeOf(join(dir, 'orders.json'))).toBe(0o640);
      expect(await modeOf(join(dir, '.state'))).toBe(0o700);
      expect(await modeOf(join(dir, '.state', 'orders.state.json'))).toBe(0o600);
    }
  });

  it('refuses every mode the schema refuses, 0644 (world-readable) and 0700 (executable) included', () => {
    for (const mode of [0o644, 0o700, 0o666, 0o620, 0o602, 0o400, 0o1600, 0o740]) {
      expect(() => parseFileMode(mode), mode.toString(8)).toThrow(RangeError);
      expect(() => newStore({ mode }), mode.toString(8)).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID' }));
    }
    expect(newStore({ mode: 0o640 }).mode).toBe(0o640);
    expect(newStore().mode).toBe(0o600);
  });
});

describe('FileStore atomicity and write order', () => {
  it('never shows a reader a partial or empty file during 200 rapid commits', async () => {
    const store = newStore();
    await store.init();
    const dir = join(root, 'tokens');
    // Lengths vary, so a truncated file would not be mistaken for a whole one.
    const values = Array.from({ length: 200 }, (_, i) => `at-${i}-${'x'.repeat((i * 37) % 700)}`);
    const valid = new Set(values);
    await commit(store, 'orders', { access: token(values[0]!, T0 + 1_000) });

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
      await commit(store, 'orders', { access: token(values[i]!, T0 + 1_000 * (i + 1)) });
    }
    done = true;
    await reader;

    expect(bad).toEqual([]);
    expect(reads).toBeGreaterThan(50);
    expect(readFileSync(join(dir, 'orders'), 'utf8')).toBe(values[199]);
    expect((await readdir(dir)).sort()).toEqual(['.state', 'orders', 'orders.json']);
  });

  it('replaces NAME.json before NAME: a reader woken by the event on NAME reads matching metadata', async () => {
    const store = newStore();
    await store.init();
    const dir = join(root, 'tokens');
    await commit(store, 'orders', { access: token('at-0', T0 + 1_000) });
    const mismatches: string[] = [];
    let seen = '';
    let wake: (() => void) | undefined;
    // What a service does: watch the directory, and on an event for NAME read NAME, then NAME.json.
    const w = watch(dir, (_e, file) => {
      if (file !== 'orders') return;
      const raw = readFileSync(join(dir, 'orders'), 'utf8');
      const meta = decodeMeta(readFileSync(join(dir, 'orders.json'), 'utf8'));
      if (meta.accessToken !== raw) mismatches.push(`${raw} with metadata of ${meta.accessToken}`);
      seen = raw;
      wake?.();
    });
    try {
      for (let i = 1; i <= 40; i++) {
        const woken = new Promise<void>((r) => (wake = r));
        await commit(store, 'orders', { access: token(`at-${i}`, T0 + 1_000 * (i + 1)) });
        await woken;
        // The next write starts only after the reader handled this one.
        await until(() => seen === `at-${i}`, `the reader to see at-${i}`, 5_000, 1);
      }
    } finally {
      w.close();
    }
    expect(mismatches).toEqual([]);
  });

  it('writes the state file first: a commit whose access files cannot be written has stored the refresh token', async () => {
    const store = newStore();
    await store.init();
    await commit(store, 'orders', { access: token('at-1', T0 + 60_000), refreshToken: 'rt-1' });
    // NAME.json as a non-empty directory: renaming the new metadata over it fails.
    const metaPath = join(root, 'tokens', 'orders.json');
    await rm(metaPath);
    await mkdir(join(metaPath, 'blocker'), { recursive: true });
    const out = await store.withLease('orders', (lease) =>
      storeError(store.commit(lease, { access: token('at-2', T0 + 120_000), refreshToken: 'rt-2-secret' })),
    );
    expect(out.acquired && out.value.code).toBe('STORE_UNAVAILABLE');
    expect(out.acquired && out.value.message).toContain(metaPath);
    expect(out.acquired && out.value.message).not.toContain('rt-2-secret');
    expect(decodeStateDoc(await readFile(join(root, 'tokens', '.state', 'orders.state.json'), 'utf8')).refreshToken).toBe('rt-2-secret');
    expect(await readFile(join(root, 'tokens', 'orders'), 'utf8')).toBe('at-1');
  });

  it('serializes concurrent commits for one name, so the newest wins whatever the order', async () => {
    const store = newStore();
    await store.init();
    const order = [5, 19, 2, 11, 0, 17, 8, 13, 1, 16, 6, 3, 18, 9, 12, 4, 14, 7, 15, 10];
    await Promise.all(order.map((i) => commit(store, 'orders', { access: token(`at-${i}`, T0 + 1_000 * (i + 1)) })));
    expect(await readFile(join(root, 'tokens', 'orders'), 'utf8')).toBe('at-19');
    expect(decodeMeta(await readFile(join(root, 'tokens', 'orders.json'), 'utf8')).accessToken).toBe('at-19');
  });

  it('drops a commit older than what another store wrote to the directory', async () => {
    const first = newStore();
    await first.init();
    await commit(first, 'orders', { access: token('on-disk', T0 + 60_000) });
    const second = newStore();
    await second.init();
    await commit(second, 'orders', { access: token('older', T0 + 30_000) });
    expect(await readFile(join(root, 'tokens', 'orders'), 'utf8')).toBe('on-disk');
  });
});

describe('FileStore corrupt entries', () => {
  const goodMeta = (accessToken: string, expiresAtSec: number): string =>
    JSON.stringify({ access_token: accessToken, token_type: 'Bearer', expires_at: expiresAtSec, obtained_at: 1893456000 });
  const FAR = 1893459600;

  const cases: Array<{ what: string; raw?: string; meta?: string; reason: RegExp }> = [
    { what: 'invalid JSON', raw: 'at', meta: 'not json {', reason: /not valid JSON/ },
    { what: 'truncated JSON', raw: 'at', meta: goodMeta('at', FAR).slice(0, 30), reason: /not valid JSON/ },
    { what: 'an empty file', raw: 'at', meta: '', reason: /empty/ },
    { what: 'a JSON array', raw: 'at', meta: '[1,2]', reason: /not a JSON object/ },
    { what: 'expires_at as a string', raw: 'at', meta: goodMeta('at', 1).replace('1,', '"soon",'), reason: /expires_at/ },
    { what: 'expires_at overflowing to Infinity', raw: 'at', meta: goodMeta('at', FAR).replace(String(FAR), '1e999'), reason: /expires_at is not a finite number/ },
    { what: 'a missing access_token', raw: 'at', meta: '{"token_type":"Bearer","expires_at":1,"obtained_at":1}', reason: /access_token/ },
    { what: 'a raw file that disagrees', raw: 'other-token', meta: goodMeta('at', FAR), reason: /disagrees/ },
    { what: 'a raw file with a trailing newline', raw: 'at\n', meta: goodMeta('at', FAR), reason: /disagrees/ },
    { what: 'a missing raw file', meta: goodMeta('at', FAR), reason: /raw token file is missing/ },
    { what: 'a missing metadata file', raw: 'at', reason: /metadata file is missing/ },
    { what: 'an oversized metadata file', raw: 'at', meta: ' '.repeat(70_000), reason: /larger than 65536 bytes/ },
    { what: 'invalid UTF-8', raw: 'at', meta: '\u0000', reason: /not valid JSON/ },
  ];

  for (const c of cases) {
    it(`reports ${c.what} and returns no access token, then the next commit replaces it`, async () => {
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
      await commit(store, 'orders', { access: token('fresh', T0 + 10_000) });
      expect(await readFile(join(dir, 'orders'), 'utf8')).toBe('fresh');
      const reported = reports.length;
      expect((await store.load('orders')).access?.accessToken).toBe('fresh');
      expect(reports).toHaveLength(reported);
    });
  }

  it('treats a symlinked metadata file as corrupt instead of following it; the commit replaces the link, not its target', async () => {
    const store = newStore();
    await store.init();
    const dir = join(root, 'tokens');
    await writeFile(join(root, 'elsewhere.json'), goodMeta('at', FAR));
    await writeFile(join(dir, 'orders'), 'at');
    await symlink(join(root, 'elsewhere.json'), join(dir, 'orders.json'));
    expect((await store.load('orders')).access).toBeUndefined();
    expect(reports.map((r) => r.reason)).toEqual(['is a symbolic link']);
    await commit(store, 'orders', { access: token('fresh', T0 + 10_000) });
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
    { what: 'with a malformed intent', text: '{"version":1,"refresh_token":"rt","seed_hash":null,"updated_at":1,"intent":{"holder":"h","presented":"rt-sec","at":1}}', reason: /intent\.presented/ },
  ];

  for (const c of badStates) {
    it(`reports a state file ${c.what} and returns no refresh token, then the next commit replaces it`, async () => {
      const store = newStore();
      await store.init();
      await commit(store, 'orders', { access: token('at', T0 + 60_000) });
      const path = join(root, 'tokens', '.state', 'orders.state.json');
      await writeFile(path, c.text);

      const state = await store.load('orders');
      expect(state.refreshToken).toBeUndefined();
      expect(state.seedHash).toBeUndefined();
      expect(state.intent).toBeUndefined();
      // A corrupt state file does not cost the (good) access token.
      expect(state.access?.accessToken).toBe('at');
      expect(reports).toEqual([{ name: 'orders', what: path, reason: expect.stringMatching(c.reason) }]);
      expect(reports[0]!.reason).not.toContain('rt-sec');

      await commit(store, 'orders', { refreshToken: 'rt-2' });
      const reported = reports.length;
      expect((await store.load('orders')).refreshToken).toBe('rt-2');
      expect(reports).toHaveLength(reported);
    });
  }
});

describe('FileStore temp files', () => {
  it('ignores leftover temp files on load and removes them at init', async () => {
    const dir = join(root, 'tokens');
    const first = newStore();
    await first.init();
    await commit(first, 'orders', { access: token('at', T0 + 60_000), refreshToken: 'rt' });
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
    expect(await second.load('orders')).toMatchObject({ access: { accessToken: 'at' }, refreshToken: 'rt' });
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

describe('FileStore refuses directories other users could write', () => {
  it('refuses a world-writable token or state directory (CONFIG_INVALID, naming it)', async () => {
    for (const which of ['dir', 'stateDir'] as const) {
      const dir = join(root, `open-${which}`);
      await mkdir(dir);
      await chmod(dir, 0o777);
      const opts = which === 'dir' ? { dir } : { stateDir: dir };
      const err = await storeError(newStore(opts).init());
      expect(err.code).toBe('CONFIG_INVALID');
      expect(err.message).toContain(dir);
      expect(err.message).toMatch(/world-writable/);
    }
  });

  it('refuses a symlink to a world-writable directory, naming both', async () => {
    const target = join(root, 'open');
    await mkdir(target);
    await chmod(target, 0o777);
    const link = join(root, 'link');
    await symlink(target, link);
    const err = await storeError(newStore({ dir: link }).init());
    expect(err.code).toBe('CONFIG_INVALID');
    expect(err.message).toContain(link);
    expect(err.message).toContain(target);
  });

  it('accepts a directory it creates inside a world-writable volume root (a Kubernetes emptyDir): that one is its own', async () => {
    const volume = join(root, 'volume');
    await mkdir(volume);
    await chmod(volume, 0o777);
    const store = newStore({ dir: join(volume, 'tokens'), stateDir: join(volume, 'state') });
    await store.init();
    expect(await modeOf(join(volume, 'tokens'))).toBe(0o755);
    expect(await modeOf(join(volume, 'state'))).toBe(0o700);
  });

  it('accepts a sticky world-writable directory, but believes only files owned by its own user', async () => {
    const dir = join(root, 'sticky');
    await mkdir(dir);
    await chmod(dir, 0o1777);
    const store = newStore({ dir, stateDir: join(root, 'state') });
    await store.init();
    await commit(store, 'orders', { access: token('at-mine', T0 + 60_000) });
    expect((await store.load('orders')).access?.accessToken).toBe('at-mine');
    // Another user plants a token under a name tokend has not written yet.
    const meta = encodeMetaMs(token('at-planted', T0 + 60_000));
    await writeFile(join(dir, 'billing'), 'at-planted');
    await writeFile(join(dir, 'billing.json'), meta);
    await chown(join(dir, 'billing'), 65534, 65534);
    await chown(join(dir, 'billing.json'), 65534, 65534);
    expect((await store.load('billing')).access).toBeUndefined();
    expect(reports.map((r) => r.reason)).toContain("is not owned by tokend's user");
  });
});

describe('FileStore remove, watch and errors', () => {
  it('removes the raw and metadata files and leaves a 0600 tombstone without the refresh token', async () => {
    const store = newStore();
    await store.init();
    await commit(store, 'orders', { access: token('at', T0 + 60_000), refreshToken: 'rt-secret-value', seedHash: SEED });
    await store.remove('orders');
    const dir = join(root, 'tokens');
    expect(await readdir(dir)).toEqual(['.state']);
    expect(await readdir(join(dir, '.state'))).toEqual(['orders.state.json']);
    const tombstone = await readFile(join(dir, '.state', 'orders.state.json'), 'utf8');
    expect(tombstone).not.toContain('rt-secret-value');
    expect(await modeOf(join(dir, '.state', 'orders.state.json'))).toBe(0o600);
    expect(await store.load('orders')).toEqual({ revoked: true, seedHash: SEED });
  });

  it('reports a tombstone another process wrote (tokend revoke beside a running daemon) through watch', async () => {
    const store = newStore();
    await store.init();
    await commit(store, 'orders', { access: token('at', T0 + 60_000), refreshToken: 'rt-1', seedHash: SEED });
    const seen: StoredState[] = [];
    const stop = store.watch('orders', (s) => seen.push(s));
    await until(() => seen.length === 1, 'the first call', 5_000, 5);
    // A separate process replaces the state file the way the store does (write a temp file, rename).
    const statePath = join(root, 'tokens', '.state', 'orders.state.json');
    const tmp = join(root, 'tokens', '.state', '.orders.state.json.0011223344556677.tmp');
    const doc = encodeStateDoc({ revoked: true, seedHash: SEED, updatedAt: T0 });
    await promisify(execFile)('sh', ['-c', 'printf "%s" "$1" > "$2" && mv "$2" "$3"', 'sh', doc, tmp, statePath]);
    await until(() => seen.some((s) => s.revoked === true), 'the tombstone to reach the watcher', 5_000, 5);
    expect(seen.at(-1)).toMatchObject({ revoked: true, seedHash: SEED, refreshToken: undefined });
    stop();
  });

  it('rejects a commit with STORE_UNAVAILABLE naming the file, never the token, when the directory is gone', async () => {
    const store = newStore();
    await store.init();
    const dir = join(root, 'tokens');
    await rm(dir, { recursive: true });
    await writeFile(dir, 'now a file');
    const out = await store.withLease('orders', async (lease) => {
      const err = await storeError(store.commit(lease, { access: token('at-secret-value', T0 + 60_000), refreshToken: 'rt-secret-value' }));
      return err;
    });
    const err = out.acquired ? out.value : undefined;
    expect(err?.code).toBe('STORE_UNAVAILABLE');
    expect(err?.message).toContain(dir);
    expect(err?.message).not.toContain('secret-value');
  });

  it('refuses a token it could not read back, without writing it or echoing it', async () => {
    const store = newStore();
    await store.init();
    const out = await store.withLease('orders', (lease) =>
      storeError(store.commit(lease, { access: token('line1\nline2-secret', T0 + 60_000) })),
    );
    expect(out.acquired && out.value.code).toBe('STORE_UNAVAILABLE');
    expect(out.acquired && out.value.message).toMatch(/access_token/);
    expect(out.acquired && out.value.message).not.toContain('secret');
    expect(await readdir(join(root, 'tokens'))).toEqual(['.state']);
  });

  it('refuses a name ending in .json (it would share NAME.json) and names that are not safe file names', async () => {
    const store = newStore();
    await store.init();
    for (const name of ['orders.json', '../escape', '.hidden', 'a/b']) {
      const err = await storeError(store.writeBack(name, new Set(), { access: token('at', T0 + 60_000) }));
      expect(hasCode(err, 'CONFIG_INVALID'), name).toBe(true);
    }
    expect(await readdir(root)).toEqual(['tokens']);
  });

  it('waits for queued writes and lease holders on close', async () => {
    const store = newStore();
    await store.init();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const held = store.withLease('orders', async (lease: Lease) => {
      await gate;
      await store.commit(lease, { access: token('at', T0 + 60_000) });
    });
    const closing = store.close();
    release();
    await closing;
    expect(await readFile(join(root, 'tokens', 'orders'), 'utf8')).toBe('at');
    await held;
  });
});

describe('codec', () => {
  it('round-trips metadata to the millisecond, and the seconds fields never later than the original', () => {
    const t = { accessToken: 'a.b.c', tokenType: 'DPoP', expiresAt: T0 + 59_999, obtainedAt: T0 + 1, scope: '' };
    expect(decodeMetaMs(encodeMetaMs(t))).toEqual(t);
    expect(decodeMeta(encodeMetaMs(t))).toEqual({ ...t, expiresAt: T0 + 59_000, obtainedAt: T0 });
  });

  it('round-trips a state document with an intent, and refuses unknown versions', () => {
    const intent = { holder: 'replica-a', presented: sha256Hex('rt'), at: T0 + 5 };
    const text = encodeStateDoc({ refreshToken: 'rt', seedHash: SEED, intent, updatedAt: T0 + 999 });
    expect(decodeStateDoc(text)).toEqual({ refreshToken: 'rt', seedHash: SEED, intent, updatedAt: T0 });
    expect(() => decodeStateDoc(text.replace('"version":1', '"version":3'))).toThrow(TokendError);
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
