/**
 * Request targets: which ones the proxy accepts, and where on the upstream they go. Pure.
 *
 * Only origin-form targets (`/path?query`, RFC 9112 §3.2.1) are accepted. absolute-form
 * (`GET http://other/`), authority-form (CONNECT) and asterisk-form (`OPTIONS *`) are what a
 * forward proxy takes: accepting them would make tokend an open proxy that attaches a token to
 * requests for any host.
 */

/** Why a target was refused. */
export type TargetProblem = 'not_origin_form' | 'dot_segment';

const SLASH = 0x2f;

// Segments are split on '/' and '\' and on their percent-encodings, and %2e is read as '.', because
// upstream servers and frameworks variously decode and normalise each of them.
const SEPARATORS_RE = /[/\\]|%2f|%5c/i;
const ENCODED_DOT_RE = /%2e/gi;

/**
 * Checks a request target: undefined when it may be forwarded. A `..` segment (raw or
 * percent-encoded) is refused, so no path can climb above the upstream's base path once the
 * upstream normalises it (clients such as curl and fetch remove dot segments before sending, so a
 * legitimate request never has one).
 */
export function checkTarget(target: string): TargetProblem | undefined {
  if (target.charCodeAt(0) !== SLASH) return 'not_origin_form';
  const q = target.indexOf('?');
  const path = q < 0 ? target : target.slice(0, q);
  // The common path has neither a dot pair nor an escape: two scans, no allocation.
  if (!path.includes('..') && !path.includes('%')) return undefined;
  const segments = path.replace(ENCODED_DOT_RE, '.').split(SEPARATORS_RE);
  return segments.includes('..') ? 'dot_segment' : undefined;
}

/**
 * The prefix to put before every request target: the upstream URL's path without its trailing
 * slash ('' for `https://host/`). Base `https://h/api/` and target `/v1/x?y` give `/api/v1/x?y`.
 */
export function basePathPrefix(upstream: URL): string {
  const p = upstream.pathname;
  return p.endsWith('/') ? p.slice(0, -1) : p;
}

const MAX_LOGGED_PATH = 256;

/**
 * The path of a target as logs show it: without the query (it may carry a key or personal data),
 * cut to 256 characters.
 */
export function pathForLog(target: string): string {
  const q = target.indexOf('?');
  const path = q < 0 ? target : target.slice(0, q);
  return path.length > MAX_LOGGED_PATH ? `${path.slice(0, MAX_LOGGED_PATH)}...` : path;
}
