import type http from 'node:http';
import { isIPv4, isIPv6 } from 'node:net';
import { isLoopbackHost } from '../net.js';
import { R_INTERNAL, sendFixed, tooManyHeaders } from './responses.js';
import { MAX_HEADERS_COUNT, requestStarted } from './sockets.js';
import type { PublicState } from './types.js';

// Header flags found by one pass over rawHeaders (no `req.headers` object is built on the hot path).
/** `Tokend-Request: 1` seen. */
export const F_TOKEND_OK = 1;
/** A `Tokend-Request` header with another value seen (refused even beside a good one). */
export const F_TOKEND_BAD = 2;
/** `X-Forwarded-For` or `Forwarded` seen: a proxy relayed the request. */
export const F_FORWARDED = 4;
/** `Accept` prefers text/plain. */
export const F_TEXT = 8;
/** The request carries a body (non-zero Content-Length, or Transfer-Encoding). */
export const F_BODY = 16;
/** More than one `Host` header (RFC 9112 §3.2: 400). */
export const F_TWO_HOSTS = 32;

/** What one header scan found; one per server, reused for every request (no allocation). */
export interface HeaderScan {
  /** F_* bits. */
  flags: number;
  /** The Host header's value, undefined when the request had none (HTTP/1.0). */
  host: string | undefined;
}

/** A fresh scan result, to be reused. */
export function newHeaderScan(): HeaderScan {
  return { flags: 0, host: undefined };
}

/**
 * Whether an Accept header asks for the raw token: `text/plain` listed before `application/json`
 * (q-values are not weighed; clients of this endpoint send one type).
 */
function prefersText(accept: string): boolean {
  const t = accept.indexOf('text/plain');
  if (t < 0) return false;
  const j = accept.indexOf('application/json');
  return j < 0 || t < j;
}

/**
 * Case-insensitive equality with a lower-case ASCII name, without allocating a lowered copy.
 * `| 0x20` lowers letters and leaves '-' and digits alone; the only other byte it maps onto
 * '-' is CR, which the parser never lets into a header name.
 */
function isName(k: string, lower: string): boolean {
  for (let i = 0; i < lower.length; i++) if ((k.charCodeAt(i) | 0x20) !== lower.charCodeAt(i)) return false;
  return true;
}

/** One pass over rawHeaders ([name, value, ...]) filling `out`. */
export function scanHeaders(raw: readonly string[], out: HeaderScan): void {
  let f = 0;
  let host: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const k = raw[i] as string;
    // Compare lengths first so most headers cost one integer comparison.
    switch (k.length) {
      case 4:
        if (isName(k, 'host')) {
          if (host !== undefined) f |= F_TWO_HOSTS;
          host = raw[i + 1] as string;
        }
        break;
      case 14:
        if (isName(k, 'tokend-request')) f |= raw[i + 1] === '1' ? F_TOKEND_OK : F_TOKEND_BAD;
        else if (isName(k, 'content-length') && raw[i + 1] !== '0') f |= F_BODY;
        break;
      case 15:
        if (isName(k, 'x-forwarded-for')) f |= F_FORWARDED;
        break;
      case 9:
        if (isName(k, 'forwarded')) f |= F_FORWARDED;
        break;
      case 6:
        if (isName(k, 'accept') && prefersText(raw[i + 1] as string)) f |= F_TEXT;
        break;
      case 17:
        if (isName(k, 'transfer-encoding')) f |= F_BODY;
        break;
    }
  }
  out.flags = f;
  out.host = host;
}

// ---------------------------------------------------------------------------------------------
// Host: the DNS-rebinding defence. A web page whose name is made to resolve to 127.0.0.1 can send
// any header it likes to tokend, but its requests still carry its own name in Host.

/** Host values accepted once are remembered (exact text), up to this many, so the hot path is one lookup. */
const ACCEPTED_CACHE_MAX = 64;
/** Longest Host text shown back in a refusal. */
const SHOWN_HOST_MAX = 64;

/** Which Host values the token routes accept. */
export interface HostPolicy {
  /** False on a unix socket: a browser cannot reach one, so Host means nothing there. */
  check: boolean;
  /** Normalized names and addresses accepted besides loopback ones (allowedHosts, the listen host). */
  readonly allowed: Set<string>;
  /** Listening on a wildcard address (0.0.0.0, ::): the address the client connected to is accepted too. */
  acceptLocalAddress: boolean;
  /** Exact Host texts already accepted. */
  readonly accepted: Set<string>;
}

/** A policy accepting loopback names and `allowedHosts` (names or IPs, any case, IPv6 with or without brackets). */
export function createHostPolicy(allowedHosts: readonly string[] = []): HostPolicy {
  const allowed = new Set<string>();
  for (const h of allowedHosts) {
    const n = normalizeHostName(h);
    if (n !== undefined) allowed.add(n);
  }
  return { check: true, allowed, acceptLocalAddress: false, accepted: new Set() };
}

/** Adjusts the policy to the address actually listened on (see HostPolicy). */
export function adaptHostPolicy(policy: HostPolicy, listen: { kind: 'tcp'; host: string } | { kind: 'unix' }): void {
  if (listen.kind === 'unix') {
    policy.check = false;
    return;
  }
  if (isLoopbackHost(listen.host)) return;
  const n = normalizeHostName(listen.host);
  if (n === '0.0.0.0' || n === '::') policy.acceptLocalAddress = true;
  else if (n !== undefined) policy.allowed.add(n);
}

/**
 * Lower-cases a host name or address and strips IPv6 brackets and a trailing dot; IPv6 and
 * IPv4-mapped addresses are canonicalized (`0:0::1` is `::1`). Undefined when it is neither.
 */
export function normalizeHostName(host: string): string | undefined {
  let h = host.toLowerCase();
  if (h.startsWith('[') && h.endsWith(']')) h = h.slice(1, -1);
  if (h.endsWith('.')) h = h.slice(0, -1);
  if (isIPv6(h)) {
    let canon: string;
    try {
      canon = new URL(`http://[${h}]/`).hostname.slice(1, -1);
    } catch {
      return undefined; // e.g. a zone id (fe80::1%eth0): never in a Host header
    }
    // ::ffff:10.0.0.1 is how a dual-stack socket reports an IPv4 client's address.
    const mapped = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(canon);
    if (mapped === null) return canon;
    const hi = parseInt(mapped[1] as string, 16);
    const lo = parseInt(mapped[2] as string, 16);
    return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
  }
  if (isIPv4(h) || /^[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*$/.test(h)) return h;
  return undefined;
}

/** The name part of a Host value (`name`, `name:port`, `[v6]`, `[v6]:port`); undefined when malformed. */
function hostNameOf(value: string): string | undefined {
  let name = value;
  let port = '';
  if (value.startsWith('[')) {
    const end = value.indexOf(']');
    if (end < 0) return undefined;
    name = value.slice(0, end + 1);
    const rest = value.slice(end + 1);
    if (rest !== '') {
      if (!rest.startsWith(':')) return undefined;
      port = rest.slice(1);
    }
  } else {
    const colon = value.indexOf(':');
    if (colon >= 0) {
      if (value.indexOf(':', colon + 1) >= 0) return undefined; // a bare IPv6 address is not a valid Host
      name = value.slice(0, colon);
      port = value.slice(colon + 1);
    }
  }
  if (!/^[0-9]{0,5}$/.test(port)) return undefined;
  return normalizeHostName(name);
}

/**
 * True when a `/v1/` request with this Host may be served. No Host (HTTP/1.0) is accepted: a
 * browser always sends one. `socket` says which address the client connected to (read only when
 * listening on a wildcard address).
 */
export function hostAllowed(policy: HostPolicy, value: string | undefined, socket: { readonly localAddress?: string | undefined }): boolean {
  if (!policy.check || value === undefined || policy.accepted.has(value)) return true;
  const name = hostNameOf(value);
  if (name === undefined) return false;
  let ok = isLoopbackHost(name) || policy.allowed.has(name);
  if (!ok && policy.acceptLocalAddress) {
    const local = socket.localAddress;
    ok = local !== undefined && normalizeHostName(local) === name;
  }
  if (ok && policy.accepted.size < ACCEPTED_CACHE_MAX) policy.accepted.add(value);
  return ok;
}

/**
 * A Host value fit to show back: its name part (the port says nothing to the operator), at most
 * SHOWN_HOST_MAX characters, anything but letters, digits and `.-_:[]` replaced by `?`.
 */
export function shownHost(value: string): string {
  let name = value;
  if (!value.startsWith('[')) {
    const colon = value.indexOf(':');
    if (colon >= 0 && value.indexOf(':', colon + 1) < 0) name = value.slice(0, colon);
  } else if (value.indexOf(']') > 0) {
    name = value.slice(0, value.indexOf(']') + 1);
  }
  const clipped = name.length > SHOWN_HOST_MAX ? `${name.slice(0, SHOWN_HOST_MAX)}...` : name;
  return clipped.replace(/[^A-Za-z0-9.\-_:[\]]/g, '?') || '(empty)';
}

// ---------------------------------------------------------------------------------------------
// The steps every request goes through on both listeners.

/** Largest body read (and discarded) from a request that should have none, in bytes. */
const MAX_DISCARDED_BODY = 16_384;
const R_TOO_MANY_HEADERS = tooManyHeaders(MAX_HEADERS_COUNT);

/** Runs a request handler, turning a throw into a 500 (or a cut connection once headers are out). */
export function handleSafely<S extends PublicState>(
  state: S,
  req: http.IncomingMessage,
  res: http.ServerResponse,
  handler: (state: S, req: http.IncomingMessage, res: http.ServerResponse) => void,
): void {
  try {
    handler(state, req, res);
  } catch (err) {
    state.logger.error({ error: err }, 'request handler failed');
    if (!res.headersSent) sendFixed(state, res, R_INTERNAL);
    else res.destroy();
  }
}

/**
 * The checks every request passes, on both listeners: the connection's idle timer is cleared, a
 * request with too many header lines is refused, the headers are scanned once, and a body nobody
 * asked for is drained. False when the request has been answered already.
 */
export function admitRequest(state: PublicState, req: http.IncomingMessage, res: http.ServerResponse): boolean {
  requestStarted(req.socket);
  if (req.rawHeaders.length >= 2 * MAX_HEADERS_COUNT) {
    res.shouldKeepAlive = false;
    sendFixed(state, res, R_TOO_MANY_HEADERS);
    return false;
  }
  scanHeaders(req.rawHeaders, state.scan);
  if ((state.scan.flags & F_BODY) !== 0) {
    // No route reads a body (verify takes the token from the header): drop it, then the connection.
    res.shouldKeepAlive = false;
    discardBody(req);
  }
  return true;
}

/** Reads and drops a body nobody asked for, cutting the connection if it is large. */
function discardBody(req: http.IncomingMessage): void {
  let seen = 0;
  req.on('data', (chunk: Buffer) => {
    seen += chunk.length;
    if (seen > MAX_DISCARDED_BODY) req.socket.destroy();
  });
}
