/**
 * Header rules of the egress proxy. Pure: flat name/value lists (node's rawHeaders format) in and
 * out, so names keep their case, duplicates (Set-Cookie) survive, and no header object is built.
 *
 * RFC 9110 §7.6.1: a proxy removes the hop-by-hop fields (Connection and every field it names,
 * Keep-Alive, Proxy-Connection, TE, Transfer-Encoding, Upgrade) before forwarding. Framing
 * (Content-Length, Transfer-Encoding) is re-stated by the proxy for the body it actually sends.
 */

/** Request headers that never travel to the upstream as the application sent them. */
const REQUEST_HOP: ReadonlySet<string> = new Set([
  'connection',
  'keep-alive',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'content-length',
  // Replaced by the upstream's own authority.
  'host',
  // The proxy answers 100-continue itself (node does, before the handler runs).
  'expect',
]);

/** Response headers that never travel back to the application as the upstream sent them. */
const RESPONSE_HOP: ReadonlySet<string> = new Set(['connection', 'keep-alive', 'te', 'trailer', 'transfer-encoding', 'upgrade']);

/** What one pass over the application's request headers found. */
export interface RequestScan {
  /**
   * The headers to forward (flat name/value list), without hop-by-hop and framing headers, Host,
   * Proxy-*, and the header the token goes in; the caller appends those it sets itself.
   */
  readonly headers: string[];
  /** The request's Content-Length, or -1 when it has none. */
  readonly contentLength: number;
  /** True when the request body is chunked (its length is unknown until it ends). */
  readonly chunked: boolean;
}

/** Connection options that name no header (RFC 9112 §9.6 close, §9.3 keep-alive; upgrade is handled apart). */
const CONNECTION_OPTIONS: ReadonlySet<string> = new Set(['close', 'keep-alive', 'upgrade']);

/** Header names a Connection header lists (lower-case), or undefined when it lists none besides options. */
function connectionListed(raw: readonly string[]): Set<string> | undefined {
  let listed: Set<string> | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string;
    if (name.length !== 10 || name.toLowerCase() !== 'connection') continue;
    for (const part of (raw[i + 1] as string).split(',')) {
      const option = part.trim().toLowerCase();
      if (option !== '' && !CONNECTION_OPTIONS.has(option)) (listed ??= new Set()).add(option);
    }
  }
  return listed;
}

/**
 * Scans the application's request headers once. `tokenHeader` is the lower-case name of the header
 * the proxy sets (every copy the application sent is dropped, never forwarded). With `upgrade`
 * the Upgrade header is kept (a WebSocket handshake); the caller adds `Connection: Upgrade`.
 */
export function scanRequest(raw: readonly string[], tokenHeader: string, upgrade: boolean): RequestScan {
  const listed = connectionListed(raw);
  const headers: string[] = [];
  let contentLength = -1;
  let chunked = false;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string;
    const lower = name.toLowerCase();
    if (REQUEST_HOP.has(lower)) {
      // node's parser has already refused malformed or conflicting framing.
      if (lower === 'content-length') contentLength = Number(raw[i + 1]);
      else if (lower === 'transfer-encoding') chunked = true;
      else if (lower === 'upgrade' && upgrade) headers.push(name, raw[i + 1] as string);
      continue;
    }
    if (lower === tokenHeader || lower.startsWith('proxy-') || listed?.has(lower)) continue;
    headers.push(name, raw[i + 1] as string);
  }
  return { headers, contentLength, chunked };
}

/**
 * The upstream's response headers as the application gets them: hop-by-hop headers, the ones
 * Connection names, and Proxy-* removed. With `upgrade` (a 101 answer) Upgrade is kept.
 */
export function responseHeaders(raw: readonly string[], upgrade = false): string[] {
  const listed = connectionListed(raw);
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string;
    const lower = name.toLowerCase();
    if (RESPONSE_HOP.has(lower)) {
      if (lower === 'upgrade' && upgrade) out.push(name, raw[i + 1] as string);
      continue;
    }
    if (lower.startsWith('proxy-') || listed?.has(lower)) continue;
    out.push(name, raw[i + 1] as string);
  }
  return out;
}

const ERROR_PARAM_RE = /(?:^|[\s,])error\s*=\s*(?:"([^"]*)"|([^\s,]*))/gi;

/**
 * Whether a 401's WWW-Authenticate says the token itself was refused, so that a new token may
 * help: RFC 6750 §3.1 `error="invalid_token"`, or no `error` parameter at all (a plain 401).
 * Any other error (insufficient_scope, invalid_request) is not about the token's validity.
 */
export function rejectsToken(wwwAuthenticate: string | undefined): boolean {
  if (wwwAuthenticate === undefined) return true;
  let sawError = false;
  for (const m of wwwAuthenticate.matchAll(ERROR_PARAM_RE)) {
    const error = m[1] ?? m[2] ?? '';
    if (error === 'invalid_token') return true;
    sawError = true;
  }
  return !sawError;
}

// RFC 9110 §5.5: field values are visible ASCII, spaces and tabs; an access token is a visible-ASCII
// string (RFC 6750 §2.1 b64token, or an opaque string). CR, LF or NUL would split the header.
const FIELD_VALUE_RE = /^[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?$/;

/** True when value can be sent as a header value unchanged. */
export function isFieldValue(value: string): boolean {
  return FIELD_VALUE_RE.test(value);
}
