/**
 * Building blocks of the configuration schema: small pure parsers, zod field types and helpers
 * for relations between fields. Pure: no I/O, no environment access. No message ever contains a
 * configured value: a mistyped secret must not end up in a log.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { parseReconcileCron } from '../reconcile-cron.js';
import * as z from 'zod';
import { isLoopbackHost } from '../net.js';
import { TOKEN_NAME_RE } from '../token.js';
import { DURATION_EXPECTED, formatDuration, parseDuration } from './duration.js';
import type { ListenAddress, SecretSource } from './types.js';

/** Token names: lower-case, usable as a file name and a Redis key suffix (defined in token.ts). */
export { TOKEN_NAME_RE };
export const TOKEN_NAME_EXPECTED = `token names must match ${TOKEN_NAME_RE.source.slice(1, -1)}`;
/** Default listen address: loopback only. */
export const DEFAULT_LISTEN = '127.0.0.1:8477';
/** Default wall-clock reconcile schedule: every 15 seconds (node-cron, 6 fields). */
export const DEFAULT_RECONCILE_CRON = '*/15 * * * * *';
/** Default Redis key prefix in cluster mode (with a hash tag). */
export const DEFAULT_CLUSTER_PREFIX = '{tokend}:';
/** Default Redis key prefix. */
export const DEFAULT_REDIS_PREFIX = 'tokend:';
/** Default refresh lease held by a replica (ms). */
export const DEFAULT_LEASE_MS = 15_000;
/** Default fraction of a token's lifetime after which it is refreshed. */
export const DEFAULT_REFRESH_AT = 0.75;
/** Default per-request timeout for IdP calls (ms). */
export const DEFAULT_TIMEOUT_MS = 10_000;
/** Default lifetime assumed when the IdP states none (ms). */
export const DEFAULT_LIFETIME_MS = 300_000;
/** Default clock tolerance when verifying incoming tokens (seconds). */
export const DEFAULT_CLOCK_TOLERANCE_SEC = 30;
/**
 * Longest configurable timer duration (ms): Node's setTimeout fires at once for anything above
 * 2^31-1 ms (about 24.8 days), which would turn a long duration into a busy loop.
 */
export const MAX_TIMER_MS = 2 ** 31 - 1;

// ---------------------------------------------------------------------------------------------
// Small pure parsers, exported because the CLI and other parts reuse them.

const HOSTNAME_RE = /^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*\.?$/i;
const LISTEN_EXPECTED = 'expected host:port, [ipv6]:port or unix:/absolute/path';

/**
 * Parses a listen address: `host:port`, `[::1]:port` or `unix:/path`. Port 0 lets the OS choose.
 * Throws RangeError (message says what was expected) when malformed. Does not judge remoteness.
 */
export function parseListen(text: string): ListenAddress {
  if (text.startsWith('unix:')) {
    const path = text.slice('unix:'.length);
    if (!path.startsWith('/') || path.includes('\0')) throw new RangeError(LISTEN_EXPECTED);
    return { kind: 'unix', path };
  }
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(text);
  if (m === null) throw new RangeError(LISTEN_EXPECTED);
  const port = Number(m[3]);
  if (port > 65_535) throw new RangeError('expected a port from 0 to 65535');
  if (m[1] !== undefined) {
    if (!isIPv6(m[1])) throw new RangeError(LISTEN_EXPECTED);
    return { kind: 'tcp', host: m[1], port };
  }
  const host = m[2] as string;
  if (!isIPv4(host) && !HOSTNAME_RE.test(host)) throw new RangeError(LISTEN_EXPECTED);
  return { kind: 'tcp', host, port };
}

const MODE_EXPECTED = 'expected an octal file mode like "0600" or "0640"';

/**
 * Parses a token file mode: an octal string (`"0600"`, `"640"`, `"0o600"`) or a number (`384`,
 * or YAML's `0o600`). Refuses modes above 0777, any permission for other users (mode & 0o007),
 * modes that do not let the owner read and write (the store rewrites and reloads its files), and
 * execute bits: what remains is 0600 and 0640. The file store asserts its mode with this function.
 * Throws RangeError with the reason.
 */
export function parseFileMode(value: string | number): number {
  let mode: number;
  if (typeof value === 'number') {
    if (!Number.isInteger(value) || value < 0 || value > 0o777) throw new RangeError(MODE_EXPECTED);
    mode = value;
  } else {
    const m = /^(?:0o?)?([0-7]{3})$/i.exec(value.trim());
    if (m === null) throw new RangeError(MODE_EXPECTED);
    mode = Number.parseInt(m[1] as string, 8);
  }
  if ((mode & 0o007) !== 0) throw new RangeError('must not give other users any access (use 0600 or 0640)');
  // The group (the application, via fsGroup) may read, never write: a writer could plant a token.
  if ((mode & 0o030) !== 0) throw new RangeError('must not let the group write or execute (use 0600 or 0640)');
  if ((mode & 0o600) !== 0o600) throw new RangeError('must let the owner read and write (0600 or 0640)');
  // A token is data: an executable bit is a mistake (the file store asserts this same rule).
  if ((mode & 0o100) !== 0) throw new RangeError('must not be executable (use 0600 or 0640)');
  return mode;
}

// ---------------------------------------------------------------------------------------------
// Schema building blocks.

export type Path = ReadonlyArray<PropertyKey>;
export interface Ctx {
  addIssue(issue: { code: 'custom'; message: string; path?: PropertyKey[]; input?: unknown }): void;
}
export type Obj = Record<string, unknown>;

/** Adds a problem at a path relative to the object being refined. Never records the input value. */
export function report(ctx: Ctx, path: Path, message: string): void {
  ctx.addIssue({ code: 'custom', message, path: [...path], input: undefined });
}

// Relations between fields are checked even when a field already failed, so that every problem
// is reported in one run; the refinements therefore read the object defensively.
const ALWAYS = { when: () => true } as const;

/** The value as a plain object, or undefined (then its own type check already complained). */
export function asObj(v: unknown): Obj | undefined {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Obj) : undefined;
}

/** Runs a relation check on an object that may be partially parsed, or not an object at all. */
export function relations(check: (ctx: Ctx, o: Obj) => void) {
  return [
    (v: unknown, ctx: Ctx): void => {
      const o = asObj(v);
      if (o !== undefined) check(ctx, o);
    },
    ALWAYS,
  ] as const;
}

export const nonEmpty = z.string().min(1, 'must not be empty');
export const filePath = z.string().min(1, 'expected a file path');

/** Accepts a boolean, or the strings "true"/"false" that `${VAR}` interpolation produces. */
export const bool = z.preprocess((v) => (v === 'true' ? true : v === 'false' ? false : v), z.boolean());

/** Accepts a number, or a string holding exactly a decimal number (from `${VAR}` interpolation). */
export function num<T extends z.ZodType>(inner: T) {
  return z.preprocess(
    (v) => (typeof v === 'string' && /^-?\d+(?:\.\d+)?$/.test(v.trim()) ? Number(v) : v),
    inner,
  );
}

export const PORT_EXPECTED = 'expected a port from 1 to 65535';
export const port = num(z.number().int(PORT_EXPECTED).min(1, PORT_EXPECTED).max(65_535, PORT_EXPECTED));

/** A duration in ms, bounded to [minMs, maxMs]. */
export function duration(minMs: number, maxMs: number = MAX_TIMER_MS) {
  return z.union([z.number(), z.string()], { error: () => DURATION_EXPECTED }).transform((v, ctx) => {
    let ms: number;
    try {
      ms = parseDuration(v);
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: (err as Error).message, input: undefined });
      return z.NEVER;
    }
    if (ms < minMs) {
      const message = minMs === 1 ? 'expected a duration above 0' : `expected at least ${formatDuration(minMs)}`;
      ctx.addIssue({ code: 'custom', message, input: undefined });
      return z.NEVER;
    }
    if (ms > maxMs) {
      const message = `expected at most ${maxMs === MAX_TIMER_MS ? '24d' : formatDuration(maxMs)}`;
      ctx.addIssue({ code: 'custom', message, input: undefined });
      return z.NEVER;
    }
    return ms;
  });
}

export const URL_EXPECTED = 'expected an absolute http:// or https:// URL';

export function parseUrl(s: string): URL | undefined {
  try {
    return new URL(s);
  } catch {
    return undefined;
  }
}

/** An http(s) URL without credentials; kept exactly as written (issuer comparison is literal). */
export const httpUrl = z.string().superRefine((s, ctx) => {
  const u = parseUrl(s);
  if (u === undefined || (u.protocol !== 'http:' && u.protocol !== 'https:')) {
    report(ctx, [], URL_EXPECTED);
  } else if (u.username !== '' || u.password !== '') {
    report(ctx, [], 'must not contain credentials');
  }
});

/** RFC 8707 resource indicator: an absolute URI without a fragment. */
export const resourceUri = z.string().superRefine((s, ctx) => {
  const u = parseUrl(s);
  if (u === undefined || s.includes('#')) report(ctx, [], 'expected an absolute URL without a fragment');
});

/** A Redis URL taken apart (parseRedisUrl). */
export interface RedisUrlParts {
  readonly host: string;
  readonly port: number;
  readonly db: number;
  readonly username: string | undefined;
  readonly password: string | undefined;
  /** rediss:// */
  readonly tls: boolean;
  /** The URL without its password: safe for messages and logs. */
  readonly safe: string;
}

/**
 * The one Redis URL parser, for `tokend check` (the schema) and `tokend run` (the store):
 * `redis[s]://[user[:password]@]host[:port][/db]`, db a number from 0 to 99999 (default 0), port
 * default 6379, no query or fragment. Throws RangeError saying what was expected; the message
 * never repeats the URL (it may hold a password).
 */
export function parseRedisUrl(text: string): RedisUrlParts {
  const u = parseUrl(text);
  if (u === undefined || (u.protocol !== 'redis:' && u.protocol !== 'rediss:')) {
    throw new RangeError('expected a redis:// or rediss:// URL');
  }
  if (u.hostname === '') throw new RangeError('expected a host in the redis URL');
  const dbText = u.pathname.replace(/^\//, '');
  if (dbText !== '' && !/^\d{1,5}$/.test(dbText)) throw new RangeError('the path of a redis URL must be a database number, like /0');
  if (u.search !== '' || u.hash !== '') throw new RangeError('a redis URL takes no query or fragment');
  let username: string | undefined;
  let password: string | undefined;
  try {
    username = u.username ? decodeURIComponent(u.username) : undefined;
    password = u.password ? decodeURIComponent(u.password) : undefined;
  } catch {
    throw new RangeError('the credentials in the redis URL are not valid percent-encoding');
  }
  return {
    host: u.hostname.replace(/^\[|\]$/g, ''),
    port: u.port === '' ? 6379 : Number(u.port),
    db: dbText === '' ? 0 : Number(dbText),
    username,
    password,
    tls: u.protocol === 'rediss:',
    safe: `${u.protocol}//${u.username ? `${u.username}@` : ''}${u.host}/${dbText === '' ? '0' : dbText}`,
  };
}

export const redisUrl = z.string().superRefine((s, ctx) => {
  try {
    parseRedisUrl(s);
  } catch (err) {
    report(ctx, [], (err as Error).message);
  }
});

export const listen = z.string().transform((s, ctx) => {
  try {
    return parseListen(s);
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: (err as Error).message, input: undefined });
    return z.NEVER;
  }
});

export const mode = z
  .union([z.number(), z.string()], { error: () => MODE_EXPECTED })
  .transform((v, ctx) => {
    try {
      return parseFileMode(v);
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: (err as Error).message, input: undefined });
      return z.NEVER;
    }
  });

export const cron = z.string().superRefine((s, ctx) => {
  try {
    parseReconcileCron(s);
  } catch (err) {
    report(ctx, [], `expected a node-cron expression like "${DEFAULT_RECONCILE_CRON}" (${(err as Error).message})`);
  }
});

export const hostPort = z.strictObject({ host: nonEmpty, port });

/** A host name or IP address (IPv6 with or without brackets), without scheme or port: an `allowedHosts` entry. */
export const hostName = z.string().superRefine((s, ctx) => {
  const bare = s.startsWith('[') && s.endsWith(']') ? s.slice(1, -1) : s;
  if (!isIPv4(bare) && !isIPv6(bare) && !HOSTNAME_RE.test(s)) report(ctx, [], 'expected a host name or IP address, without scheme or port');
});

// ---------------------------------------------------------------------------------------------
// Relations between fields.

export function present(o: Obj, key: string): boolean {
  return o[key] !== undefined;
}

export function orList(items: readonly string[]): string {
  if (items.length <= 1) return items.join('');
  if (items.length === 2) return `${items[0]} or ${items[1]}`;
  return `one of ${items.join(', ')}`;
}

/** At most one of two alternative keys; `need` also requires one of them. */
export function oneOf(ctx: Ctx, o: Obj, a: string, b: string, need: string | undefined): void {
  if (present(o, a) && present(o, b)) report(ctx, [b], `give ${a} or ${b}, not both`);
  else if (need !== undefined && !present(o, a) && !present(o, b)) report(ctx, [], `${a} or ${b} is required ${need}`);
}

/**
 * An http:// URL is refused unless the host is loopback (and allowInsecureHttp is not false) or
 * allowInsecureHttp is true: a bearer credential must not cross a network in clear text.
 */
export function checkInsecureHttp(ctx: Ctx, o: Obj, fields: readonly string[]): void {
  const allow = o['allowInsecureHttp'];
  for (const field of fields) {
    const value = o[field];
    if (typeof value !== 'string') continue;
    const u = parseUrl(value);
    if (u === undefined || u.protocol !== 'http:') continue;
    if (allow === false) {
      report(ctx, [field], 'http:// URL but allowInsecureHttp is false; use https://');
    } else if (allow !== true && !isLoopbackHost(u.hostname)) {
      report(ctx, [field], 'http:// is only allowed for loopback hosts; use https:// or set allowInsecureHttp: true');
    }
  }
}

export function secret(literal: string | undefined, file: string | undefined): SecretSource | undefined {
  if (literal !== undefined) return { kind: 'literal', value: literal };
  if (file !== undefined) return { kind: 'file', path: file };
  return undefined;
}

export function primaryHostIsLoopback(...urls: Array<string | undefined>): boolean {
  const u = urls.find((x) => x !== undefined);
  const parsed = u === undefined ? undefined : parseUrl(u);
  return parsed !== undefined && isLoopbackHost(parsed.hostname);
}

