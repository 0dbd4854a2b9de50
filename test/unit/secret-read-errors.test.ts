import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError, TokendError } from '../../src/errors.js';
import { readSecret, TRANSIENT_FS_CODES, transientReadError } from '../../src/config/secrets.js';
import { createClientKeyLoader } from '../../src/oauth/client-auth.js';
import { ensureBuiltCli } from '../support/daemon.js';

const errno = (code: string): NodeJS.ErrnoException => Object.assign(new Error(`${code}: something, open '/secrets/x'`), { code });
const dir = mkdtempSync(join(tmpdir(), 'tokend-secret-errors-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('reading a secret or key file: local resource trouble is transient, a missing or forbidden file is not', () => {
  it.each([
    ['EMFILE', 'GRANT_TRANSIENT'],
    ['ENFILE', 'GRANT_TRANSIENT'],
    ['ENOMEM', 'GRANT_TRANSIENT'],
    ['EAGAIN', 'GRANT_TRANSIENT'],
    ['EBUSY', 'GRANT_TRANSIENT'],
    ['EIO', 'GRANT_TRANSIENT'],
    ['ENOENT', undefined],
    ['EACCES', undefined],
    ['EPERM', undefined],
    ['EISDIR', undefined],
    ['ELOOP', undefined],
  ])('%s → %s', (code, expected) => {
    const err = transientReadError(errno(code), 'tokens.orders.clientSecretFile', '/secrets/orders/client-secret');
    expect(err?.code).toBe(expected);
    expect(TRANSIENT_FS_CODES.has(code)).toBe(expected !== undefined);
    if (err) {
      expect(err.message).toBe(`tokens.orders.clientSecretFile: file /secrets/orders/client-secret cannot be read right now (${code}); will retry`);
      expect(err.reason).toBe(code);
    }
  });

  it('a missing secret file stays CONFIG_INVALID, and so does a missing key file', async () => {
    const missing = join(dir, 'nope');
    const secretErr = await readSecret({ kind: 'file', path: missing }, 'tokens.a.clientSecretFile').catch((e: unknown) => e);
    expect(secretErr).toBeInstanceOf(ConfigError);
    const keyErr = await createClientKeyLoader({ tokenName: 'a', path: missing })().catch((e: unknown) => e);
    expect((keyErr as TokendError).code).toBe('CONFIG_INVALID');
  });

  it('a real EMFILE (every descriptor in use) is GRANT_TRANSIENT naming the file and errno, never its content', () => {
    expect(ensureBuiltCli()).toBe(true);
    const secret = join(dir, 'client-secret');
    writeFileSync(secret, 'THE-SECRET-VALUE\n');
    const secrets = resolve(import.meta.dirname, '../../dist/config/secrets.js');
    // A child process with a low descriptor limit opens files until none is left, then reads the secret.
    const script = `
      import { openSync } from 'node:fs';
      const { readSecret } = await import(${JSON.stringify(secrets)});
      const held = [];
      try { for (;;) held.push(openSync('/dev/null', 'r')); } catch (e) { if (e.code !== 'EMFILE') throw e; }
      const err = await readSecret({ kind: 'file', path: ${JSON.stringify(secret)} }, 'tokens.orders.clientSecretFile').catch((e) => e);
      process.stdout.write(JSON.stringify({ code: err.code, message: err.message }));
    `;
    const out = execFileSync('bash', ['-c', `ulimit -n 64 && exec "${process.execPath}" --input-type=module -e "$0"`, script], { encoding: 'utf8' });
    const { code, message } = JSON.parse(out) as { code: string; message: string };
    expect(code).toBe('GRANT_TRANSIENT');
    expect(message).toBe(`tokens.orders.clientSecretFile: file ${secret} cannot be read right now (EMFILE); will retry`);
    expect(message).not.toContain('THE-SECRET-VALUE');
  });
});
