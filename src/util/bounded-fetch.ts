import { TokendError } from '../errors.js';
import { NULL_BODY_STATUSES, readStream } from './fetch-classes.js';

/** Largest answer read from an IdP (token, discovery, JWKS, introspection, revocation): 1 MiB. */
export const DEFAULT_MAX_RESPONSE_BYTES = 1024 * 1024;

/**
 * Reads at most maxBytes of res's body as a stream and returns it as bytes. A body that is
 * longer (by Content-Length or by what arrives) is cancelled at once, never buffered, and
 * rejects with a TokendError (code `code`, message naming `what` and the limit, never the body).
 */
export async function readBounded(
  res: Response,
  maxBytes: number,
  what: string,
  code: 'GRANT_TRANSIENT' | 'DISCOVERY_FAILED' = 'GRANT_TRANSIENT',
): Promise<Uint8Array<ArrayBuffer>> {
  const tooLarge = (): TokendError =>
    new TokendError(code, `${what}: the answer is larger than ${maxBytes} bytes; refused unread`, { status: res.status });
  const declared = Number(res.headers.get('content-length'));
  if (Number.isFinite(declared) && declared > maxBytes) {
    await res.body?.cancel().catch(() => undefined);
    throw tooLarge();
  }
  if (res.body === null) return new Uint8Array(0);
  const bytes = await readStream(res.body, maxBytes);
  if (bytes === undefined) throw tooLarge();
  return bytes;
}

/**
 * A fetch whose answers are read in full, up to maxBytes, before they are returned: callers (and
 * the libraries they hand it to, such as openid-client's customFetch) get a Response over bytes
 * already in memory, and an oversized answer rejects instead of filling the heap.
 */
export function boundedFetch(
  fetchImpl: typeof fetch,
  maxBytes: number = DEFAULT_MAX_RESPONSE_BYTES,
  what = 'IdP',
): typeof fetch {
  return async (input, init) => {
    const res = await fetchImpl(input, init);
    const body = await readBounded(res, maxBytes, what);
    return new Response(NULL_BODY_STATUSES.has(res.status) ? null : body, { status: res.status, statusText: res.statusText, headers: res.headers });
  };
}
