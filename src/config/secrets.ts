/**
 * Secret values referenced by the configuration. Files are read when needed (not at parse time)
 * because Kubernetes rotates mounted Secrets in place; a value is never part of an error message.
 */
import { open } from 'node:fs/promises';
import { ConfigError, TokendError } from '../errors.js';
import { readUpTo } from '../util/read-handle.js';
import type { Config, SecretSource } from './types.js';

/** Largest secret file tokend reads (bytes): 64 KiB, far above any key or token. */
export const MAX_SECRET_BYTES = 64 * 1024;

/**
 * errno codes of local resource trouble while reading a file: too many open files (EMFILE, ENFILE:
 * with 10,000 tokens a burst of reads can hit the limit), memory, a busy or failing device. They
 * pass by themselves, so they are GRANT_TRANSIENT (retried), unlike a missing or forbidden file,
 * which only a config or permission change fixes (CONFIG_INVALID).
 */
export const TRANSIENT_FS_CODES: ReadonlySet<string> = new Set(['EMFILE', 'ENFILE', 'ENOMEM', 'EAGAIN', 'EBUSY', 'EIO']);

/**
 * The error for a file (secret or key) that could not be read: GRANT_TRANSIENT naming the field,
 * the path and the errno for TRANSIENT_FS_CODES, else undefined (the caller reports CONFIG_INVALID).
 * Never includes content.
 */
export function transientReadError(err: unknown, field: string, path: string): TokendError | undefined {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code === undefined || !TRANSIENT_FS_CODES.has(code)) return undefined;
  return new TokendError('GRANT_TRANSIENT', `${field}: file ${path} cannot be read right now (${code}); will retry`, {
    cause: err,
    reason: code,
  });
}

function describeFsError(err: unknown): string {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  switch (code) {
    case 'ENOENT':
      return 'does not exist';
    case 'EACCES':
    case 'EPERM':
      return 'permission denied';
    case 'EISDIR':
      return 'is a directory';
    default:
      return code === undefined ? 'cannot be read' : `cannot be read (${code})`;
  }
}

/**
 * Returns a secret's value. A literal is returned as is; a file is read fresh on every call and
 * its trailing newline/whitespace removed (`echo secret > file` leaves one).
 * Throws ConfigError (code CONFIG_INVALID) naming `field` and the path, never the content, when
 * the file is missing, unreadable, not a regular file, empty, or larger than MAX_SECRET_BYTES;
 * GRANT_TRANSIENT when a local resource ran out while reading it (TRANSIENT_FS_CODES).
 * `field` is the config path for messages, e.g. `tokens.orders.clientSecretFile`.
 */
export async function readSecret(src: SecretSource, field: string): Promise<string> {
  if (src.kind === 'literal') {
    if (src.value === '') throw new ConfigError([`${field}: must not be empty`]);
    return src.value;
  }
  const fail = (what: string): ConfigError => new ConfigError([`${field}: secret file ${src.path} ${what}`]);
  let handle;
  try {
    handle = await open(src.path, 'r');
  } catch (err) {
    throw transientReadError(err, field, src.path) ?? fail(describeFsError(err));
  }
  try {
    const st = await handle.stat();
    if (st.isDirectory()) throw fail('is a directory');
    if (!st.isFile()) throw fail('is not a regular file');
    if (st.size > MAX_SECRET_BYTES) throw fail(`is larger than ${MAX_SECRET_BYTES / 1024} KiB`);
    // Up to one byte past the limit: the file may have grown since fstat.
    const bytes = await readUpTo(handle, st.size, MAX_SECRET_BYTES);
    if (bytes.length > MAX_SECRET_BYTES) throw fail(`is larger than ${MAX_SECRET_BYTES / 1024} KiB`);
    const value = bytes.toString('utf8').trimEnd();
    if (value === '') throw fail('is empty');
    return value;
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    throw transientReadError(err, field, src.path) ?? fail(describeFsError(err));
  } finally {
    await handle.close().catch(() => undefined);
  }
}

/** Every secret file the configuration references, with the config field that names it. */
export function secretFiles(config: Config): Array<{ field: string; path: string }> {
  const out: Array<{ field: string; path: string }> = [];
  const add = (field: string, src: SecretSource | string | undefined): void => {
    if (typeof src === 'string') out.push({ field, path: src });
    else if (src?.kind === 'file') out.push({ field, path: src.path });
  };
  for (const t of config.tokens) {
    const at = `tokens.${t.name}`;
    add(`${at}.clientSecretFile`, t.clientSecret);
    add(`${at}.refreshTokenFile`, t.refreshToken);
    add(`${at}.privateKeyFile`, t.privateKeyFile);
    add(`${at}.clientAssertionFile`, t.clientAssertionFile);
    add(`${at}.assertionFile`, t.assertionFile);
    add(`${at}.subjectTokenFile`, t.subjectTokenFile);
    add(`${at}.actorTokenFile`, t.actorTokenFile);
  }
  if (config.store.type === 'redis') {
    add('store.passwordFile', config.store.password);
    add('store.encryptionKeyFile', config.store.encryptionKeyFile);
  }
  config.verify?.issuers.forEach((v, i) => {
    const at = `verify.issuers[${i}]`;
    add(`${at}.hmacSecretFile`, v.hmacSecret);
    add(`${at}.introspection.clientSecretFile`, v.introspection?.clientSecret);
  });
  return out;
}

/**
 * Reads every secret file the configuration references and returns one problem line per file
 * that is missing, unreadable, empty or too large (empty array: all fine). Used by `tokend check`
 * and at start-up, so a typo in a mounted path fails fast instead of at the first refresh.
 * Never returns content.
 */
export async function checkSecretFiles(config: Config): Promise<string[]> {
  const results = await Promise.all(
    secretFiles(config).map(async ({ field, path }) => {
      try {
        await readSecret({ kind: 'file', path }, field);
        return [];
      } catch (err) {
        if (err instanceof ConfigError) return [...err.problems];
        return [err instanceof TokendError ? err.message : `${field}: secret file ${path} cannot be read`];
      }
    }),
  );
  const problems = results.flat();
  // The encryption key must also have the right shape, so `check` fails where `run` would.
  if (config.store.type === 'redis' && config.store.encryptionKeyFile && problems.every((p) => !p.startsWith('store.encryptionKeyFile'))) {
    const { loadEncryptionKey } = await import('../store/crypto.js');
    try {
      await loadEncryptionKey(config.store.encryptionKeyFile);
    } catch (err) {
      problems.push(err instanceof Error ? err.message : 'store.encryptionKeyFile: cannot be used');
    }
  }
  return problems;
}
