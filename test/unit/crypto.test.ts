import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hasCode } from '../../src/errors.js';
import {
  decryptRefreshToken,
  encryptRefreshToken,
  ENCRYPTED_PREFIX,
  isEncrypted,
  loadEncryptionKey,
  parseEncryptionKey,
} from '../../src/store/crypto.js';

const key = Buffer.alloc(32, 7);
const otherKey = Buffer.alloc(32, 8);

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return hasCode(err, 'STORE_UNAVAILABLE', 'CONFIG_INVALID') ? err.code : 'other';
  }
  return undefined;
}

describe('refresh token encryption (AES-256-GCM)', () => {
  it('round-trips any printable token and never contains the plaintext', () => {
    fc.assert(
      fc.property(fc.stringMatching(/^[\x20-\x7e]{8,200}$/), fc.stringMatching(/^[a-z0-9][a-z0-9_.-]{0,20}$/), (plain, name) => {
        const stored = encryptRefreshToken(plain, key, name);
        expect(stored.startsWith(ENCRYPTED_PREFIX)).toBe(true);
        expect(isEncrypted(stored)).toBe(true);
        expect(stored.includes(plain)).toBe(false);
        expect(decryptRefreshToken(stored, key, name)).toBe(plain);
      }),
      { numRuns: 100 },
    );
  });

  it('uses a fresh IV every time, so equal tokens give different ciphertexts', () => {
    const a = encryptRefreshToken('rt-1', key, 'orders');
    const b = encryptRefreshToken('rt-1', key, 'orders');
    expect(a).not.toBe(b);
    const iv = (s: string) => Buffer.from(s.slice(ENCRYPTED_PREFIX.length), 'base64').subarray(0, 12).toString('hex');
    expect(iv(a)).not.toBe(iv(b));
  });

  it('refuses another key, another token name (AAD) and any altered byte, with STORE_UNAVAILABLE', () => {
    const stored = encryptRefreshToken('rt-secret', key, 'orders');
    expect(codeOf(() => decryptRefreshToken(stored, otherKey, 'orders'))).toBe('STORE_UNAVAILABLE');
    expect(codeOf(() => decryptRefreshToken(stored, key, 'billing'))).toBe('STORE_UNAVAILABLE');
    const raw = Buffer.from(stored.slice(ENCRYPTED_PREFIX.length), 'base64');
    for (const i of [0, 12, 28, raw.length - 1]) {
      const altered = Buffer.from(raw);
      altered[i] = (altered[i] ?? 0) ^ 1;
      expect(codeOf(() => decryptRefreshToken(ENCRYPTED_PREFIX + altered.toString('base64'), key, 'orders'))).toBe('STORE_UNAVAILABLE');
    }
    expect(codeOf(() => decryptRefreshToken(`${ENCRYPTED_PREFIX}!!!`, key, 'orders'))).toBe('STORE_UNAVAILABLE');
    expect(codeOf(() => decryptRefreshToken(`${ENCRYPTED_PREFIX}AAAA`, key, 'orders'))).toBe('STORE_UNAVAILABLE');
    expect(codeOf(() => decryptRefreshToken('plain-token', key, 'orders'))).toBe('STORE_UNAVAILABLE');
  });

  it('never puts the token or key in an error message', () => {
    const stored = encryptRefreshToken('rt-very-secret', key, 'orders');
    try {
      decryptRefreshToken(stored, otherKey, 'orders');
      expect.unreachable();
    } catch (err) {
      const msg = (err as Error).message;
      expect(msg).toContain('orders');
      expect(msg).not.toContain('rt-very-secret');
      expect(msg).not.toContain(stored.slice(ENCRYPTED_PREFIX.length, ENCRYPTED_PREFIX.length + 16));
    }
  });

  it('refuses a key that is not 32 bytes with CONFIG_INVALID', () => {
    expect(codeOf(() => encryptRefreshToken('x', Buffer.alloc(16), 'orders'))).toBe('CONFIG_INVALID');
    expect(codeOf(() => decryptRefreshToken('enc:v1:AAAA', Buffer.alloc(31), 'orders'))).toBe('CONFIG_INVALID');
  });
});

describe('loadEncryptionKey', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tokend-key-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const material = randomBytes(32);
  const cases: Array<[string, Buffer | string]> = [
    ['32 raw bytes', material],
    ['hex with a trailing newline', `${material.toString('hex')}\n`],
    ['upper-case hex', material.toString('hex').toUpperCase()],
    ['base64 with padding and surrounding spaces', `  ${material.toString('base64')}\n`],
    ['base64url without padding', material.toString('base64url')],
  ];
  it.each(cases)('accepts %s', async (label, content) => {
    const path = join(dir, label.replace(/\W+/g, '-'));
    await writeFile(path, content);
    expect((await loadEncryptionKey(path)).equals(material)).toBe(true);
  });

  const bad: Array<[string, Buffer | string]> = [
    ['31 raw bytes', randomBytes(31)],
    ['33 raw bytes', randomBytes(33)],
    ['hex of 31 bytes', randomBytes(31).toString('hex')],
    ['base64 of 24 bytes (with newline)', `${randomBytes(24).toString('base64')}\n`],
    ['a passphrase', 'correct horse battery staple'],
    ['an empty file', ''],
  ];
  it.each(bad)('refuses %s with CONFIG_INVALID naming the file, not its content', async (label, content) => {
    const path = join(dir, `bad-${label.replace(/\W+/g, '-')}`);
    await writeFile(path, content);
    const err = await loadEncryptionKey(path).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(hasCode(err, 'CONFIG_INVALID')).toBe(true);
    const msg = (err as Error).message;
    expect(msg).toContain(path);
    expect(msg).toContain('store.encryptionKeyFile');
    if (typeof content === 'string' && content.length > 0) expect(msg).not.toContain(content);
  });

  it('refuses a missing file with CONFIG_INVALID', async () => {
    const err = await loadEncryptionKey(join(dir, 'missing')).catch((e: unknown) => e);
    expect(hasCode(err, 'CONFIG_INVALID')).toBe(true);
    expect((err as Error).message).toContain('ENOENT');
  });

  it('parseEncryptionKey: 32 raw bytes win even when they look like text', () => {
    const raw = Buffer.from('0123456789abcdef0123456789abcdef');
    expect(parseEncryptionKey(raw)?.equals(raw)).toBe(true);
  });
});
