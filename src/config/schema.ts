/**
 * The documented configuration file format (see /work/shared/contract.md), as a zod schema, and
 * its translation into the resolved `Config` of types.ts. Pure: no I/O, no environment access.
 *
 * Every problem is collected, not just the first: field checks run in the schema, and checks that
 * relate fields (issuer XOR tokenEndpoint, secret required by clientAuth, ...) run as refinements
 * that see the partially parsed object even when one of its fields is already wrong.
 * No message ever contains a configured value: a mistyped secret must not end up in a log.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { join } from 'node:path';
import { validateDetailed as validateCron } from 'node-cron';
import * as z from 'zod';
import { ASYMMETRIC_JWS_ALGORITHMS, HMAC_JWS_ALGORITHMS, isHmacAlgorithm, isJwsAlgorithm } from '../jws.js';
import { isLoopbackHost } from '../net.js';
import { LOG_LEVELS } from '../log.js';
import { TOKEN_NAME_RE } from '../token.js';
import { DEFAULT_FILE_MODE } from '../store/store.js';
import { DURATION_EXPECTED, formatDuration, parseDuration } from './duration.js';
import type {
  ClientAuthMethod,
  Config,
  IntrospectionConfig,
  ListenAddress,
  SecretSource,
  StoreConfig,
  TokenConfig,
  VerifyIssuerConfig,
} from './types.js';

/** Token names: lower-case, usable as a file name and a Redis key suffix (defined in token.ts). */
export { TOKEN_NAME_RE };
const TOKEN_NAME_EXPECTED = `token names must match ${TOKEN_NAME_RE.source.slice(1, -1)}`;
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

const CLIENT_AUTH = [
  'client_secret_basic',
  'client_secret_post',
  'private_key_jwt',
  'none',
] as const satisfies readonly ClientAuthMethod[];
const SECRET_AUTH: ReadonlySet<unknown> = new Set(['client_secret_basic', 'client_secret_post']);

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
 * and modes that do not let the owner read and write (the store rewrites and reloads its files).
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
  return mode;
}

// ---------------------------------------------------------------------------------------------
// Schema building blocks.

type Path = ReadonlyArray<PropertyKey>;
interface Ctx {
  addIssue(issue: { code: 'custom'; message: string; path?: PropertyKey[]; input?: unknown }): void;
}
type Obj = Record<string, unknown>;

/** Adds a problem at a path relative to the object being refined. Never records the input value. */
function report(ctx: Ctx, path: Path, message: string): void {
  ctx.addIssue({ code: 'custom', message, path: [...path], input: undefined });
}

// Relations between fields are checked even when a field already failed, so that every problem
// is reported in one run; the refinements therefore read the object defensively.
const ALWAYS = { when: () => true } as const;

/** The value as a plain object, or undefined (then its own type check already complained). */
function asObj(v: unknown): Obj | undefined {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Obj) : undefined;
}

/** Runs a relation check on an object that may be partially parsed, or not an object at all. */
function relations(check: (ctx: Ctx, o: Obj) => void) {
  return [
    (v: unknown, ctx: Ctx): void => {
      const o = asObj(v);
      if (o !== undefined) check(ctx, o);
    },
    ALWAYS,
  ] as const;
}

const nonEmpty = z.string().min(1, 'must not be empty');
const filePath = z.string().min(1, 'expected a file path');

/** Accepts a boolean, or the strings "true"/"false" that `${VAR}` interpolation produces. */
const bool = z.preprocess((v) => (v === 'true' ? true : v === 'false' ? false : v), z.boolean());

/** Accepts a number, or a string holding exactly a decimal number (from `${VAR}` interpolation). */
function num<T extends z.ZodType>(inner: T) {
  return z.preprocess(
    (v) => (typeof v === 'string' && /^-?\d+(?:\.\d+)?$/.test(v.trim()) ? Number(v) : v),
    inner,
  );
}

const PORT_EXPECTED = 'expected a port from 1 to 65535';
const port = num(z.number().int(PORT_EXPECTED).min(1, PORT_EXPECTED).max(65_535, PORT_EXPECTED));

/** A duration in ms, bounded to [minMs, maxMs]. */
function duration(minMs: number, maxMs: number = MAX_TIMER_MS) {
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

const URL_EXPECTED = 'expected an absolute http:// or https:// URL';

function parseUrl(s: string): URL | undefined {
  try {
    return new URL(s);
  } catch {
    return undefined;
  }
}

/** An http(s) URL without credentials; kept exactly as written (issuer comparison is literal). */
const httpUrl = z.string().superRefine((s, ctx) => {
  const u = parseUrl(s);
  if (u === undefined || (u.protocol !== 'http:' && u.protocol !== 'https:')) {
    report(ctx, [], URL_EXPECTED);
  } else if (u.username !== '' || u.password !== '') {
    report(ctx, [], 'must not contain credentials');
  }
});

/** RFC 8707 resource indicator: an absolute URI without a fragment. */
const resourceUri = z.string().superRefine((s, ctx) => {
  const u = parseUrl(s);
  if (u === undefined || s.includes('#')) report(ctx, [], 'expected an absolute URL without a fragment');
});

const redisUrl = z.string().superRefine((s, ctx) => {
  const u = parseUrl(s);
  if (u === undefined || (u.protocol !== 'redis:' && u.protocol !== 'rediss:')) {
    report(ctx, [], 'expected a redis:// or rediss:// URL');
  }
});

const listen = z.string().transform((s, ctx) => {
  try {
    return parseListen(s);
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: (err as Error).message, input: undefined });
    return z.NEVER;
  }
});

const mode = z
  .union([z.number(), z.string()], { error: () => MODE_EXPECTED })
  .transform((v, ctx) => {
    try {
      return parseFileMode(v);
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: (err as Error).message, input: undefined });
      return z.NEVER;
    }
  });

const cron = z.string().superRefine((s, ctx) => {
  const r = validateCron(s);
  if (!r.valid) {
    const detail = r.errors?.[0]?.message;
    const why = detail ? ` (${detail})` : '';
    report(ctx, [], `expected a node-cron expression like "${DEFAULT_RECONCILE_CRON}"${why}`);
  }
});

const hostPort = z.strictObject({ host: nonEmpty, port });

// ---------------------------------------------------------------------------------------------
// Relations between fields.

function present(o: Obj, key: string): boolean {
  return o[key] !== undefined;
}

function orList(items: readonly string[]): string {
  if (items.length <= 1) return items.join('');
  if (items.length === 2) return `${items[0]} or ${items[1]}`;
  return `one of ${items.join(', ')}`;
}

/** At most one of two alternative keys; `need` also requires one of them. */
function oneOf(ctx: Ctx, o: Obj, a: string, b: string, need: string | undefined): void {
  if (present(o, a) && present(o, b)) report(ctx, [b], `give ${a} or ${b}, not both`);
  else if (need !== undefined && !present(o, a) && !present(o, b)) report(ctx, [], `${a} or ${b} is required ${need}`);
}

/**
 * An http:// URL is refused unless the host is loopback (and allowInsecureHttp is not false) or
 * allowInsecureHttp is true: a bearer credential must not cross a network in clear text.
 */
function checkInsecureHttp(ctx: Ctx, o: Obj, fields: readonly string[]): void {
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

function checkToken(ctx: Ctx, t: Obj): void {
  if (present(t, 'issuer') && present(t, 'tokenEndpoint')) {
    report(ctx, ['tokenEndpoint'], 'give issuer (OIDC discovery) or tokenEndpoint (plain OAuth2), not both');
  } else if (!present(t, 'issuer') && !present(t, 'tokenEndpoint')) {
    report(ctx, [], 'issuer (OIDC discovery) or tokenEndpoint (plain OAuth2) is required');
  }

  const auth = t['clientAuth'] ?? 'client_secret_basic';
  if (SECRET_AUTH.has(auth)) {
    oneOf(ctx, t, 'clientSecret', 'clientSecretFile', `for clientAuth ${String(auth)}`);
  } else if (auth === 'private_key_jwt' || auth === 'none') {
    for (const k of ['clientSecret', 'clientSecretFile']) {
      if (present(t, k)) report(ctx, [k], `not used with clientAuth ${auth}`);
    }
  }
  if (auth === 'private_key_jwt') {
    if (!present(t, 'privateKeyFile')) report(ctx, ['privateKeyFile'], 'required for clientAuth private_key_jwt');
  } else if ((CLIENT_AUTH as readonly unknown[]).includes(auth)) {
    for (const k of ['privateKeyFile', 'privateKeyId', 'privateKeyAlg']) {
      if (present(t, k)) report(ctx, [k], 'only used with clientAuth private_key_jwt');
    }
  }
  // RFC 6749 §4.4: the client credentials grant is for confidential clients only.
  if (auth === 'none' && t['grant'] === 'client_credentials') {
    report(ctx, ['clientAuth'], 'none cannot be used with grant client_credentials');
  }

  if (t['grant'] === 'refresh_token') {
    oneOf(ctx, t, 'refreshToken', 'refreshTokenFile', 'for grant refresh_token');
  } else if (t['grant'] === 'client_credentials') {
    for (const k of ['refreshToken', 'refreshTokenFile']) {
      if (present(t, k)) report(ctx, [k], 'only used with grant refresh_token');
    }
  }

  if (present(t, 'revocationEndpoint') && present(t, 'issuer') && !present(t, 'tokenEndpoint')) {
    report(ctx, ['revocationEndpoint'], 'only used with tokenEndpoint (discovery gives the issuer\'s own)');
  }
  if (t['revokeOnShutdown'] === true && present(t, 'tokenEndpoint') && !present(t, 'revocationEndpoint')) {
    report(ctx, ['revocationEndpoint'], 'required for revokeOnShutdown when tokenEndpoint is used');
  }
  checkInsecureHttp(ctx, t, ['issuer', 'tokenEndpoint', 'revocationEndpoint']);
}

const FILE_KEYS = ['dir', 'mode', 'stateDir'];
const REDIS_KEYS = [
  'url', 'prefix', 'password', 'passwordFile', 'encryptionKeyFile', 'sentinels', 'sentinelName', 'cluster', 'lease',
];

function checkStore(ctx: Ctx, s: Obj): void {
  const type = s['type'];
  if (type !== 'memory' && type !== 'file' && type !== 'redis') return;
  for (const k of [...FILE_KEYS, ...REDIS_KEYS]) {
    const owner = FILE_KEYS.includes(k) ? 'file' : 'redis';
    if (owner !== type && present(s, k)) report(ctx, [k], `only used with store type ${owner}`);
  }
  if (type === 'file' && !present(s, 'dir')) report(ctx, ['dir'], 'required for store type file');
  if (type === 'redis') {
    const sentinels = present(s, 'sentinels');
    const cluster = present(s, 'cluster');
    if (sentinels && cluster) report(ctx, ['cluster'], 'give sentinels or cluster, not both');
    if (!present(s, 'url') && !sentinels && !cluster) {
      report(ctx, ['url'], 'required for store type redis (unless sentinels or cluster is given)');
    }
    if (sentinels && !present(s, 'sentinelName')) report(ctx, ['sentinelName'], 'required with sentinels');
    if (!sentinels && present(s, 'sentinelName')) report(ctx, ['sentinelName'], 'only used with sentinels');
    oneOf(ctx, s, 'password', 'passwordFile', undefined);
    // One Lua script touches all of a token's keys; in a cluster they must share a hash slot.
    if (cluster && typeof s['prefix'] === 'string' && !/\{[^}]+\}/.test(s['prefix'])) {
      report(ctx, ['prefix'], 'with cluster, must contain a hash tag such as {tokend}: so a token\'s keys share a slot');
    }
  }
}

function checkIntrospection(ctx: Ctx, i: Obj): void {
  oneOf(ctx, i, 'clientSecret', 'clientSecretFile', 'for introspection');
}

function checkVerifyIssuer(ctx: Ctx, v: Obj): void {
  oneOf(ctx, v, 'hmacSecret', 'hmacSecretFile', undefined);
  const hasHmac = present(v, 'hmacSecret') || present(v, 'hmacSecretFile');
  const algs = v['algorithms'];
  let listsHmac = false;
  if (Array.isArray(algs)) {
    algs.forEach((alg: unknown, i) => {
      if (typeof alg !== 'string') return;
      if (alg.toLowerCase() === 'none') {
        report(ctx, ['algorithms', i], 'none is never allowed');
      } else if (!isJwsAlgorithm(alg)) {
        report(ctx, ['algorithms', i], `expected ${orList([...ASYMMETRIC_JWS_ALGORITHMS, ...HMAC_JWS_ALGORITHMS])}`);
      } else if (isHmacAlgorithm(alg)) {
        listsHmac = true;
        if (!hasHmac) report(ctx, ['algorithms', i], `${alg} needs hmacSecret or hmacSecretFile`);
      }
    });
  }
  if (hasHmac && !listsHmac) {
    const key = present(v, 'hmacSecret') ? 'hmacSecret' : 'hmacSecretFile';
    report(ctx, [key], 'only used when algorithms lists HS256, HS384 or HS512');
  }
  checkInsecureHttp(ctx, v, ['issuer']);
}

function sameAddress(a: ListenAddress, b: ListenAddress): boolean {
  if (a.kind === 'unix' || b.kind === 'unix') return a.kind === 'unix' && b.kind === 'unix' && a.path === b.path;
  return a.port !== 0 && a.port === b.port;
}

function checkTop(ctx: Ctx, c: Obj): void {
  const l = c['listen'];
  if (typeof l === 'object' && l !== null && (l as ListenAddress).kind === 'tcp') {
    const host = (l as { host: string }).host;
    if (!isLoopbackHost(host) && c['allowRemote'] !== true) {
      report(ctx, ['listen'], `${host} is not a loopback address; set allowRemote: true to listen on it`);
    }
  }
  const store = c['store'];
  if (typeof store === 'object' && store !== null && (store as Obj)['type'] === 'redis' && typeof c['tokens'] === 'object' && c['tokens'] !== null) {
    for (const [name, t] of Object.entries(c['tokens'] as Obj)) {
      // Replicas share the token through Redis: one pod stopping would revoke it for all of them.
      if (typeof t === 'object' && t !== null && (t as Obj)['revokeOnShutdown'] === true) {
        report(ctx, ['tokens', name, 'revokeOnShutdown'], 'cannot be used with store type redis: one replica stopping would revoke the token every replica shares');
      }
    }
  }
  const m = c['metricsListen'];
  if (typeof l === 'object' && l !== null && typeof m === 'object' && m !== null && sameAddress(l as ListenAddress, m as ListenAddress)) {
    report(ctx, ['metricsListen'], 'must differ from listen');
  }
  const tokens = c['tokens'];
  const noTokens =
    tokens === undefined || (typeof tokens === 'object' && tokens !== null && Object.keys(tokens).length === 0);
  if (noTokens && !present(c, 'verify')) {
    report(ctx, ['tokens'], 'at least one token is required (unless a verify section is given)');
  }
  const v = c['verify'];
  const issuers = typeof v === 'object' && v !== null ? (v as Obj)['issuers'] : undefined;
  if (Array.isArray(issuers)) {
    const seen = new Set<string>();
    issuers.forEach((it: unknown, i) => {
      const iss = typeof it === 'object' && it !== null ? (it as Obj)['issuer'] : undefined;
      if (typeof iss !== 'string') return;
      if (seen.has(iss)) report(ctx, ['verify', 'issuers', i, 'issuer'], 'duplicate issuer');
      seen.add(iss);
    });
  }
}

// ---------------------------------------------------------------------------------------------
// The schema.

const tokenSchema = z
  .strictObject({
    issuer: httpUrl.optional(),
    tokenEndpoint: httpUrl.optional(),
    revocationEndpoint: httpUrl.optional(),
    clientId: nonEmpty,
    clientSecret: nonEmpty.optional(),
    clientSecretFile: filePath.optional(),
    grant: z.enum(['client_credentials', 'refresh_token']),
    refreshToken: nonEmpty.optional(),
    refreshTokenFile: filePath.optional(),
    scope: nonEmpty.optional(),
    resource: resourceUri.optional(),
    audience: nonEmpty.optional(),
    refreshAt: num(
      z.number().min(0.1, 'expected a number from 0.1 to 0.95').max(0.95, 'expected a number from 0.1 to 0.95'),
    ).default(DEFAULT_REFRESH_AT),
    clientAuth: z.enum(CLIENT_AUTH).default('client_secret_basic'),
    privateKeyFile: filePath.optional(),
    privateKeyId: nonEmpty.optional(),
    privateKeyAlg: z.enum(ASYMMETRIC_JWS_ALGORITHMS).optional(),
    revokeOnShutdown: bool.default(false),
    timeout: duration(1).default(DEFAULT_TIMEOUT_MS),
    defaultLifetime: duration(1_000).default(DEFAULT_LIFETIME_MS),
    allowInsecureHttp: bool.optional(),
  })
  .superRefine(...relations(checkToken));

const storeSchema = z
  .strictObject({
    type: z.enum(['memory', 'file', 'redis']).default('memory'),
    dir: filePath.optional(),
    mode: mode.optional(),
    stateDir: filePath.optional(),
    url: redisUrl.optional(),
    prefix: z.string().optional(),
    password: nonEmpty.optional(),
    passwordFile: filePath.optional(),
    encryptionKeyFile: filePath.optional(),
    sentinels: z.array(hostPort).min(1, 'expected at least one sentinel').optional(),
    sentinelName: nonEmpty.optional(),
    cluster: z.array(hostPort).min(1, 'expected at least one cluster node').optional(),
    lease: duration(1_000).optional(),
  })
  .superRefine(...relations(checkStore));

const AUDIENCE_EXPECTED = 'expected an audience or a non-empty list of audiences';
const audience = z.unknown().transform((v, ctx) => {
  const list = typeof v === 'string' ? [v] : v;
  if (!Array.isArray(list) || list.length === 0 || !list.every((a) => typeof a === 'string' && a !== '')) {
    ctx.addIssue({ code: 'custom', message: v === undefined ? 'required' : AUDIENCE_EXPECTED, input: undefined });
    return z.NEVER;
  }
  return list as string[];
});

const introspectionSchema = z
  .strictObject({
    clientId: nonEmpty,
    clientSecret: nonEmpty.optional(),
    clientSecretFile: filePath.optional(),
    clientAuth: z.enum(['client_secret_basic', 'client_secret_post']).default('client_secret_basic'),
  })
  .superRefine(...relations(checkIntrospection));

const verifyIssuerSchema = z
  .strictObject({
    issuer: httpUrl,
    audience,
    algorithms: z.array(z.string()).min(1, 'expected at least one algorithm').optional(),
    hmacSecret: nonEmpty.optional(),
    hmacSecretFile: filePath.optional(),
    clockTolerance: duration(0, 86_400_000).default(DEFAULT_CLOCK_TOLERANCE_SEC * 1000),
    requiredClaims: z.array(nonEmpty).default(() => []),
    introspection: introspectionSchema.optional(),
    allowInsecureHttp: bool.optional(),
  })
  .superRefine(...relations(checkVerifyIssuer));

const verifySchema = z.strictObject({
  issuers: z.array(verifyIssuerSchema).min(1, 'expected at least one issuer'),
});

/** The configuration file as written, before defaults that depend on other fields are applied. */
export const configFileSchema = z
  .strictObject({
    listen: listen.default(() => parseListen(DEFAULT_LISTEN)),
    allowRemote: bool.default(false),
    // A metrics-only listener serves no token, so it may bind a pod address without allowRemote.
    metricsListen: listen.optional(),
    logLevel: z.enum(LOG_LEVELS).default('info'),
    reconcile: cron.default(DEFAULT_RECONCILE_CRON),
    store: storeSchema.default(() => ({ type: 'memory' as const })),
    // Names are checked in checkConfig, so that a token with a bad name still gets its fields checked.
    tokens: z.record(z.string(), tokenSchema).optional(),
    verify: verifySchema.optional(),
  })
  .superRefine(...relations(checkTop));

/** The parsed file, before translation into Config. */
export type ConfigFile = z.output<typeof configFileSchema>;

// ---------------------------------------------------------------------------------------------
// Problems and translation.

/** One problem found in a configuration: a dotted path (`tokens.orders.grant`) and what was expected. */
export interface ConfigProblem {
  readonly path: string;
  readonly message: string;
}

/** Formats a zod path as `tokens.orders.clientId` / `verify.issuers[0].audience`; `config` for the root. */
export function formatPath(path: ReadonlyArray<PropertyKey>): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else out += out === '' ? String(seg) : `.${String(seg)}`;
  }
  return out === '' ? 'config' : out;
}

const EXPECTED_TYPE: Record<string, string> = {
  string: 'expected a string',
  number: 'expected a number',
  boolean: 'expected true or false',
  object: 'expected a mapping',
  record: 'expected a mapping',
  array: 'expected a list',
};

/** Wording for zod's own issues; values are never included (they may be secrets). */
const errorMap: z.core.$ZodErrorMap = (iss) => {
  switch (iss.code) {
    case 'invalid_type': {
      if (iss.input === undefined) return 'required';
      const what = EXPECTED_TYPE[iss.expected] ?? `expected ${iss.expected}`;
      return iss.input === null ? `${what} (the value is empty)` : what;
    }
    case 'invalid_value':
      return `expected ${orList(iss.values.map(String))}`;
    case 'too_small':
      if (iss.origin === 'array') return 'expected at least one entry';
      if (iss.origin === 'string') return 'must not be empty';
      return `expected at least ${String(iss.minimum)}`;
    case 'too_big':
      return `expected at most ${String(iss.maximum)}`;
    default:
      return 'invalid value';
  }
};

function toProblems(issues: readonly z.core.$ZodIssue[]): ConfigProblem[] {
  const out: ConfigProblem[] = [];
  for (const iss of issues) {
    if (iss.code === 'unrecognized_keys') {
      for (const key of iss.keys) out.push({ path: formatPath([...iss.path, key]), message: 'unknown key' });
    } else if (iss.code === 'invalid_key') {
      out.push({ path: formatPath(iss.path), message: iss.issues[0]?.message ?? 'invalid key' });
    } else {
      out.push({ path: formatPath(iss.path), message: iss.message });
    }
  }
  return out;
}

function secret(literal: string | undefined, file: string | undefined): SecretSource | undefined {
  if (literal !== undefined) return { kind: 'literal', value: literal };
  if (file !== undefined) return { kind: 'file', path: file };
  return undefined;
}

function primaryHostIsLoopback(...urls: Array<string | undefined>): boolean {
  const u = urls.find((x) => x !== undefined);
  const parsed = u === undefined ? undefined : parseUrl(u);
  return parsed !== undefined && isLoopbackHost(parsed.hostname);
}

function toStore(s: ConfigFile['store']): StoreConfig {
  switch (s.type) {
    case 'memory':
      return { type: 'memory' };
    case 'file': {
      const dir = s.dir as string;
      return { type: 'file', dir, mode: s.mode ?? DEFAULT_FILE_MODE, stateDir: s.stateDir ?? join(dir, '.state') };
    }
    case 'redis':
      return {
        type: 'redis',
        // Empty when only sentinels or cluster nodes locate the server.
        url: s.url ?? '',
        // In a cluster the default carries a hash tag, so a token's keys share a slot.
        prefix: s.prefix ?? (s.cluster ? DEFAULT_CLUSTER_PREFIX : DEFAULT_REDIS_PREFIX),
        password: secret(s.password, s.passwordFile),
        encryptionKeyFile: s.encryptionKeyFile,
        sentinels: s.sentinels,
        sentinelName: s.sentinelName,
        cluster: s.cluster,
        leaseMs: s.lease ?? DEFAULT_LEASE_MS,
      };
  }
}

function toToken(name: string, t: NonNullable<ConfigFile['tokens']>[string]): TokenConfig {
  return {
    name,
    issuer: t.issuer,
    tokenEndpoint: t.tokenEndpoint,
    revocationEndpoint: t.revocationEndpoint,
    clientId: t.clientId,
    clientSecret: secret(t.clientSecret, t.clientSecretFile),
    grant: t.grant,
    refreshToken: secret(t.refreshToken, t.refreshTokenFile),
    scope: t.scope,
    resource: t.resource,
    audience: t.audience,
    refreshAt: t.refreshAt,
    clientAuth: t.clientAuth,
    privateKeyFile: t.privateKeyFile,
    privateKeyId: t.privateKeyId,
    privateKeyAlg: t.privateKeyAlg,
    revokeOnShutdown: t.revokeOnShutdown,
    defaultLifetimeMs: t.defaultLifetime,
    timeoutMs: t.timeout,
    allowInsecureHttp: t.allowInsecureHttp ?? primaryHostIsLoopback(t.issuer, t.tokenEndpoint),
  };
}

function toVerifyIssuer(v: NonNullable<ConfigFile['verify']>['issuers'][number]): VerifyIssuerConfig {
  const i = v.introspection;
  const introspection: IntrospectionConfig | undefined =
    i === undefined
      ? undefined
      : { clientId: i.clientId, clientSecret: secret(i.clientSecret, i.clientSecretFile), clientAuth: i.clientAuth };
  return {
    issuer: v.issuer,
    audience: v.audience,
    algorithms: v.algorithms,
    hmacSecret: secret(v.hmacSecret, v.hmacSecretFile),
    clockToleranceSec: v.clockTolerance / 1000,
    requiredClaims: v.requiredClaims,
    introspection,
    allowInsecureHttp: v.allowInsecureHttp ?? primaryHostIsLoopback(v.issuer),
  };
}

/** Translates a successfully parsed file into the resolved Config (defaults that depend on other fields). */
function toConfig(f: ConfigFile): Config {
  return {
    listen: f.listen,
    allowRemote: f.allowRemote,
    metricsListen: f.metricsListen,
    store: toStore(f.store),
    tokens: Object.entries(f.tokens ?? {}).map(([name, t]) => toToken(name, t)),
    verify: f.verify === undefined ? undefined : { issuers: f.verify.issuers.map(toVerifyIssuer) },
    logLevel: f.logLevel,
    reconcileCron: f.reconcile,
  };
}

/** Result of checkConfig: the Config, or every problem found. */
export type CheckResult = { ok: true; config: Config } | { ok: false; problems: ConfigProblem[] };

/**
 * Validates an already parsed and interpolated document (plain JSON-like data) and resolves it.
 * Pure. Returns every problem rather than throwing, so callers can merge them with their own.
 */
export function checkConfig(data: unknown): CheckResult {
  const r = configFileSchema.safeParse(data, { error: errorMap });
  const problems = [...tokenNameProblems(data), ...(r.success ? [] : toProblems(r.error.issues))];
  if (!r.success || problems.length > 0) return { ok: false, problems };
  return { ok: true, config: toConfig(r.data) };
}

function tokenNameProblems(data: unknown): ConfigProblem[] {
  const tokens = asObj(asObj(data)?.['tokens']);
  const problems: ConfigProblem[] = [];
  for (const name of Object.keys(tokens ?? {})) {
    if (!TOKEN_NAME_RE.test(name)) problems.push({ path: formatPath(['tokens', name]), message: TOKEN_NAME_EXPECTED });
    // The file store writes NAME and NAME.json side by side: token x.json would collide with x's metadata.
    else if (name.endsWith('.json')) problems.push({ path: formatPath(['tokens', name]), message: 'token names must not end in .json' });
  }
  return problems;
}

/** Formats problems as `path: message` lines, without duplicates, in the order found. */
export function problemLines(problems: readonly ConfigProblem[]): string[] {
  return [...new Set(problems.map((p) => `${p.path}: ${p.message}`))];
}
