/**
 * The fetch tokend talks to IdPs with: node's own http client (node:http, already loaded for the
 * endpoint; node:https on the first https:// request) with one keep-alive Agent per scheme, at
 * most `connections` sockets per origin. It replaces undici's Agent and fetch, whose code and wasm
 * HTTP parser cost ~25 MiB of RSS on Node 24 and ~20 MiB on Node 20 for one token
 * (bench/footprint.mjs); node's global fetch is no way out (its bundled undici costs RSS once
 * loaded, and cannot be given a bounded pool through public API on Node 20). The Headers and
 * Response it answers with are tokend's (util/fetch-classes.ts), so node's undici is never loaded.
 *
 * Only what openid-client asks of a fetch is supported: a URL (string or URL), method, headers,
 * a body that is a string, URLSearchParams or bytes, and a signal. Redirects are never followed
 * (openid-client sends every request with `redirect: 'manual'`). Answers stream (the caller
 * bounds what it reads; cancelling the body closes the socket); gzip, deflate and br answers are
 * decoded. Network failures reject like undici's fetch, `TypeError('fetch failed')` with the
 * node error (ECONNREFUSED, ...) as `cause`; an abort rejects with the signal's reason.
 */
import type { Agent, IncomingMessage, RequestOptions } from 'node:http';
import { Readable, type Transform } from 'node:stream';
import { http, https } from '../util/node-http.js';
import { NULL_BODY_STATUSES } from '../util/fetch-classes.js';

/** How long an idle pooled connection is kept (ms): 4 s, undici's keep-alive default. */
export const POOL_IDLE_MS = 4_000;

/** Options of createPooledFetch. */
export interface PooledFetchOptions {
  /** Max sockets per origin (open at once, busy or idle). */
  readonly connections: number;
  /** An idle socket is closed after this long (ms). Default POOL_IDLE_MS. */
  readonly idleMs?: number | undefined;
}

/** A fetch over bounded pools, and the way to close them. */
export interface PooledFetch {
  readonly fetch: typeof fetch;
  /** Closes every pooled socket, busy ones too (their requests fail). The fetch stays usable. */
  close(): void;
}


// Like node:https (util/node-http.ts), node:zlib is taken when an answer first needs decoding.
const zlib = (): typeof import('node:zlib') => process.getBuiltinModule('node:zlib');

const DECODERS: Record<string, () => Transform> = {
  gzip: () => zlib().createGunzip(),
  'x-gzip': () => zlib().createGunzip(),
  deflate: () => zlib().createInflate(),
  br: () => zlib().createBrotliDecompress(),
};

/** Creates a fetch whose requests share bounded keep-alive pools; see the module comment. */
export function createPooledFetch(opts: PooledFetchOptions): PooledFetch {
  const poolOptions = {
    keepAlive: true,
    maxSockets: opts.connections,
    maxFreeSockets: opts.connections,
    // Agent sockets time out only while idle in the pool; a busy one just emits an event no one handles.
    timeout: opts.idleMs ?? POOL_IDLE_MS,
    scheduling: 'lifo' as const,
  };
  let agents: { http?: Agent; https?: Agent } = {};
  const agentFor = (protocol: string): Agent =>
    protocol === 'https:'
      ? (agents.https ??= new (https().Agent)(poolOptions))
      : (agents.http ??= new http.Agent(poolOptions));
  return {
    fetch: (input, init) => {
      try {
        const url = new URL(typeof input === 'string' || input instanceof URL ? input : requestUnsupported());
        if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new TypeError(`fetch: unsupported protocol ${url.protocol}`);
        return send(url, init ?? {}, agentFor(url.protocol));
      } catch (err) {
        return Promise.reject(err);
      }
    },
    close() {
      agents.http?.destroy();
      agents.https?.destroy();
      agents = {};
    },
  };
}

function requestUnsupported(): never {
  throw new TypeError('fetch: Request objects are not supported; pass a URL and an init object');
}

function bodyBytes(body: RequestInit['body']): { bytes: Buffer | undefined; type: string | undefined } {
  if (body === undefined || body === null) return { bytes: undefined, type: undefined };
  if (typeof body === 'string') return { bytes: Buffer.from(body), type: 'text/plain;charset=UTF-8' };
  if (body instanceof URLSearchParams) return { bytes: Buffer.from(body.toString()), type: 'application/x-www-form-urlencoded;charset=UTF-8' };
  if (body instanceof ArrayBuffer) return { bytes: Buffer.from(body), type: undefined };
  if (ArrayBuffer.isView(body)) return { bytes: Buffer.from(body.buffer, body.byteOffset, body.byteLength), type: undefined };
  throw new TypeError('fetch: only string, URLSearchParams and byte bodies are supported');
}

function send(url: URL, init: RequestInit, agent: Agent): Promise<Response> {
  const signal = init.signal ?? undefined;
  if (signal?.aborted) return Promise.reject(signal.reason);
  const { bytes, type } = bodyBytes(init.body);
  const headers: Record<string, string> = {};
  new Headers(init.headers).forEach((value, name) => {
    headers[name] = value;
  });
  if (type !== undefined && headers['content-type'] === undefined) headers['content-type'] = type;
  if (bytes !== undefined) headers['content-length'] = String(bytes.length);
  const method = (init.method ?? 'GET').toUpperCase();
  const options: RequestOptions = { method, headers, agent };
  const transport = url.protocol === 'https:' ? https() : http;

  return new Promise<Response>((resolve, reject) => {
    let answered = false;
    const req = transport.request(url, options, (res) => {
      answered = true;
      signal?.removeEventListener('abort', onAbort);
      try {
        resolve(toResponse(res, method, signal));
      } catch (err) {
        res.destroy();
        reject(new TypeError('fetch failed', { cause: err }));
      }
    });
    const onAbort = (): void => {
      req.destroy();
      reject(signal?.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    req.on('error', (err) => {
      signal?.removeEventListener('abort', onAbort);
      if (!answered) reject(signal?.aborted ? signal.reason : new TypeError('fetch failed', { cause: err }));
    });
    req.end(bytes);
  });
}

function toResponse(res: IncomingMessage, method: string, signal: AbortSignal | undefined): Response {
  const status = res.statusCode ?? 0;
  const headers = new Headers();
  for (let i = 0; i + 1 < res.rawHeaders.length; i += 2) headers.append(res.rawHeaders[i] as string, res.rawHeaders[i + 1] as string);
  if (NULL_BODY_STATUSES.has(status) || method === 'HEAD') {
    res.resume();
    return new Response(null, { status, statusText: res.statusMessage ?? '', headers });
  }
  // An abort after the headers errors the body, as fetch does.
  const onAbort = (): void => void res.destroy(signal?.reason);
  signal?.addEventListener('abort', onAbort, { once: true });
  res.once('close', () => signal?.removeEventListener('abort', onAbort));
  const encoding = (headers.get('content-encoding') ?? '').trim().toLowerCase();
  const decoder = DECODERS[encoding];
  let stream: Readable = res;
  if (decoder !== undefined) {
    const d = decoder();
    res.once('error', (err) => d.destroy(err));
    stream = res.pipe(d);
    // Cancelling the decoded body must close the socket too.
    stream.once('close', () => res.destroy());
  }
  const body = Readable.toWeb(stream) as ReadableStream<Uint8Array>;
  return new Response(body, { status, statusText: res.statusMessage ?? '', headers });
}
