/**
 * The `proxies` section of the configuration: one egress reverse proxy per upstream, which puts a
 * configured token on every request the application sends through it (src/proxy/). Schema,
 * relations between fields and with the rest of the config, translation. Pure.
 */
import * as z from 'zod';
import { isLoopbackHost } from '../net.js';
import { TOKEN_NAME_RE } from '../token.js';
import {
  asObj,
  bool,
  duration,
  filePath,
  listen,
  num,
  parseUrl,
  present,
  report,
  TOKEN_NAME_EXPECTED,
  type Ctx,
  type Obj,
} from './fields.js';
import type { ListenAddress } from './types.js';

/** Default header the token goes in. */
export const DEFAULT_PROXY_HEADER = 'Authorization';
/** Default scheme written before the token (`Authorization: Bearer TOKEN`). */
export const DEFAULT_PROXY_SCHEME = 'Bearer';
/** Default upstream timeout (ms): longest silence before response headers or between body chunks. */
export const DEFAULT_PROXY_TIMEOUT_MS = 60_000;
/** Default time to open a connection (TCP and TLS) to the upstream (ms). */
export const DEFAULT_PROXY_CONNECT_TIMEOUT_MS = 5_000;
/** Default largest request body kept in memory so that a 401 can be retried (bytes). */
export const DEFAULT_RETRY_BODY_LIMIT = 64 * 1024;
/** Largest configurable retryBodyLimit (bytes): each request in flight may hold this much. */
export const MAX_RETRY_BODY_LIMIT = 16 * 1024 * 1024;

/** One egress proxy, resolved. Durations in milliseconds, sizes in bytes. */
export interface ProxyConfig {
  /** Label in metrics and logs; defaults to the token name. [a-z0-9][a-z0-9_.-]{0,62} */
  readonly name: string;
  readonly listen: ListenAddress;
  /** A non-loopback listen address is refused unless true. Default false. */
  readonly allowRemote: boolean;
  /** Base URL every request path is appended to: https://, or http:// on a loopback host. */
  readonly upstream: string;
  /** Name of the configured token put on each request. */
  readonly token: string;
  /** Header the token goes in. Default 'Authorization'. */
  readonly header: string;
  /** Written before the token with one space; '' sends the raw token. Default 'Bearer'. */
  readonly scheme: string;
  /** PEM bundle that replaces the system roots for the upstream's certificate. */
  readonly caFile?: string | undefined;
  /** Client certificate (PEM) for mutual TLS with the upstream; with keyFile. */
  readonly certFile?: string | undefined;
  readonly keyFile?: string | undefined;
  /** Longest silence from the upstream: before its response headers, or between body chunks. Default 60 000. */
  readonly timeoutMs: number;
  /** Time to open a TCP (and TLS) connection to the upstream. Default 5 000. */
  readonly connectTimeoutMs: number;
  /** Largest request body buffered so a 401 can be retried; larger bodies stream and are never retried. Default 65 536. */
  readonly retryBodyLimit: number;
}

// RFC 9110 §5.6.2: a header name (and an auth scheme) is a `token`.
const TOKEN_CHARS_RE = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/**
 * Headers the proxy itself must control (framing, routing, connection management), besides every
 * Proxy-* header: the token cannot be put in one of them.
 */
const RESERVED_HEADERS: ReadonlySet<string> = new Set([
  'host',
  'content-length',
  'transfer-encoding',
  'connection',
  'keep-alive',
  'te',
  'trailer',
  'upgrade',
  'expect',
]);

const headerName = z.string().superRefine((s, ctx) => {
  if (!TOKEN_CHARS_RE.test(s)) report(ctx, [], 'expected an HTTP header name');
  else if (RESERVED_HEADERS.has(s.toLowerCase()) || s.toLowerCase().startsWith('proxy-')) report(ctx, [], 'is managed by the proxy itself; choose another header');
});

const scheme = z.string().superRefine((s, ctx) => {
  if (s !== '' && !TOKEN_CHARS_RE.test(s)) report(ctx, [], 'expected an auth scheme like Bearer, or "" for the raw token');
});

const UPSTREAM_EXPECTED = 'expected an https:// URL (http:// only on a loopback host)';

const upstream = z.string().superRefine((s, ctx) => {
  const u = parseUrl(s);
  if (u === undefined || (u.protocol !== 'https:' && u.protocol !== 'http:')) return report(ctx, [], UPSTREAM_EXPECTED);
  // A bearer token must not cross a network in clear text.
  if (u.protocol === 'http:' && !isLoopbackHost(u.hostname)) return report(ctx, [], UPSTREAM_EXPECTED);
  if (u.username !== '' || u.password !== '') return report(ctx, [], 'must not contain credentials');
  if (s.includes('#')) return report(ctx, [], 'must not contain a fragment');
  // Each request brings its own query; a base query would have no clear place to go.
  if (u.search !== '' || s.includes('?')) report(ctx, [], 'must not contain a query');
});

const SIZE_EXPECTED = 'expected a size in bytes: a number, or a string like 64KiB or 1MiB';
const SIZE_UNITS: Record<string, number> = { '': 1, b: 1, kib: 1024, mib: 1024 * 1024 };

/** A byte count: a non-negative integer, or `64KiB` / `1MiB`; at most `max`. */
function byteSize(max: number) {
  return num(z.union([z.number(), z.string()], { error: () => SIZE_EXPECTED })).transform((v, ctx) => {
    let n: number;
    if (typeof v === 'number') {
      n = v;
    } else {
      const m = /^(\d+)\s*(b|kib|mib)?$/i.exec(v.trim());
      n = m === null ? Number.NaN : Number(m[1]) * (SIZE_UNITS[(m[2] ?? '').toLowerCase()] as number);
    }
    if (!Number.isSafeInteger(n) || n < 0) {
      ctx.addIssue({ code: 'custom', message: SIZE_EXPECTED, input: undefined });
      return z.NEVER;
    }
    if (n > max) {
      ctx.addIssue({ code: 'custom', message: `expected at most ${max / (1024 * 1024)}MiB`, input: undefined });
      return z.NEVER;
    }
    return n;
  });
}

function checkProxy(ctx: Ctx, p: Obj): void {
  const l = p['listen'] as ListenAddress | undefined;
  if (l?.kind === 'tcp' && !isLoopbackHost(l.host) && p['allowRemote'] !== true) {
    report(ctx, ['listen'], `${l.host} is not a loopback address; set allowRemote: true to listen on it`);
  }
  if (present(p, 'certFile') !== present(p, 'keyFile')) {
    report(ctx, [present(p, 'certFile') ? 'keyFile' : 'certFile'], 'certFile and keyFile go together (mutual TLS)');
  }
  const u = typeof p['upstream'] === 'string' ? parseUrl(p['upstream']) : undefined;
  if (u?.protocol === 'http:') {
    for (const k of ['caFile', 'certFile', 'keyFile']) if (present(p, k)) report(ctx, [k], 'only used with an https:// upstream');
  }
  const name = p['name'];
  if (typeof name === 'string' && !TOKEN_NAME_RE.test(name)) report(ctx, ['name'], TOKEN_NAME_EXPECTED.replace('token names', 'proxy names'));
}

const proxySchema = z
  .strictObject({
    name: z.string().optional(),
    listen,
    allowRemote: bool.default(false),
    upstream,
    token: z.string().min(1, 'must not be empty'),
    header: headerName.default(DEFAULT_PROXY_HEADER),
    scheme: scheme.default(DEFAULT_PROXY_SCHEME),
    caFile: filePath.optional(),
    certFile: filePath.optional(),
    keyFile: filePath.optional(),
    timeout: duration(1).default(DEFAULT_PROXY_TIMEOUT_MS),
    connectTimeout: duration(1).default(DEFAULT_PROXY_CONNECT_TIMEOUT_MS),
    retryBodyLimit: byteSize(MAX_RETRY_BODY_LIMIT).default(DEFAULT_RETRY_BODY_LIMIT),
  })
  .superRefine((v, ctx) => {
    const o = asObj(v);
    if (o !== undefined) checkProxy(ctx, o);
  });

/** The `proxies` list as the file gives it. */
export const proxiesSchema = z.array(proxySchema);

/** One proxy as parsed. */
export type ProxyFile = z.output<typeof proxySchema>;

function conflicts(a: ListenAddress, b: ListenAddress): boolean {
  if (a.kind === 'unix' || b.kind === 'unix') return a.kind === 'unix' && b.kind === 'unix' && a.path === b.path;
  return a.port !== 0 && a.port === b.port;
}

function isListen(v: unknown): v is ListenAddress {
  const o = asObj(v);
  return o !== undefined && (o['kind'] === 'tcp' || o['kind'] === 'unix');
}

/**
 * Relations between `proxies` and the rest of the config: each names a configured token, listens
 * where nothing else does, and has a unique name (two proxies for one token need `name`).
 */
export function checkProxies(ctx: Ctx, c: Obj): void {
  const list = c['proxies'];
  if (!Array.isArray(list)) return;
  const tokens = asObj(c['tokens']) ?? {};
  const taken: Array<{ addr: ListenAddress; what: string }> = [];
  if (isListen(c['listen'])) taken.push({ addr: c['listen'], what: 'listen' });
  if (isListen(c['metricsListen'])) taken.push({ addr: c['metricsListen'], what: 'metricsListen' });
  const names = new Map<string, number>();
  list.forEach((item: unknown, i) => {
    const p = asObj(item);
    if (p === undefined) return;
    const token = p['token'];
    if (typeof token === 'string' && token !== '' && !Object.hasOwn(tokens, token)) {
      // The value is not echoed: someone may have pasted a token itself here.
      report(ctx, ['proxies', i, 'token'], 'expected the name of a token configured under tokens');
    }
    const addr = p['listen'];
    if (isListen(addr)) {
      const clash = taken.find((t) => conflicts(t.addr, addr));
      if (clash !== undefined) report(ctx, ['proxies', i, 'listen'], `must differ from ${clash.what}`);
      taken.push({ addr, what: `proxies[${i}].listen` });
    }
    const name = typeof p['name'] === 'string' ? p['name'] : token;
    if (typeof name !== 'string') return;
    const first = names.get(name);
    if (first !== undefined) {
      report(ctx, ['proxies', i, 'name'], `same name as proxies[${first}] (the token name by default); give each proxy a distinct name`);
    } else {
      names.set(name, i);
    }
  });
}

/** Translates one parsed entry into the resolved ProxyConfig. */
export function toProxy(p: ProxyFile): ProxyConfig {
  return {
    name: p.name ?? p.token,
    listen: p.listen,
    allowRemote: p.allowRemote,
    upstream: p.upstream,
    token: p.token,
    header: p.header,
    scheme: p.scheme,
    caFile: p.caFile,
    certFile: p.certFile,
    keyFile: p.keyFile,
    timeoutMs: p.timeout,
    connectTimeoutMs: p.connectTimeout,
    retryBodyLimit: p.retryBodyLimit,
  };
}
