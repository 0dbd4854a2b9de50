/**
 * The fetch tokend hands openid-client for one operation (a grant, a revocation, a discovery).
 * Every answer is read as a stream, up to 1 MiB, before openid-client sees it (a larger one is
 * refused unread: GRANT_TRANSIENT, or DISCOVERY_FAILED in discovery); HTTP 200 token answers are
 * inspected first (answer.ts), so a rotated refresh token survives an answer openid-client then
 * refuses; and each request is recorded (method, URL without query, status) so errors can name
 * what was tried. The caller's signal is honoured on top of openid-client's own timeout.
 */
import type { CustomFetch } from 'openid-client';
import { DEFAULT_MAX_RESPONSE_BYTES, readBounded } from '../util/bounded-fetch.js';
import { linkSignals } from '../util/abort.js';
import { inspectTokenAnswer, tokenTypeError, type TokenAnswerFacts } from './answer.js';
import type { Exchange, GrantPhase } from './classify.js';
import { NULL_BODY_STATUSES } from '../util/fetch-classes.js';

/** What one operation's requests met; filled in by operationFetch, read when classifying an error. */
export interface OperationRecord {
  /** The requests made, oldest first. */
  readonly exchanges: Exchange[];
  /** Facts of the last HTTP 200 token answer (its new refresh token, its token_type). */
  answer?: TokenAnswerFacts | undefined;
}

/** Options of operationFetch. */
export interface OperationFetchOptions {
  /** The fetch that performs the requests (pooled, or injected by tests). */
  readonly fetch: typeof fetch;
  /** The caller's signal (shutdown), combined with openid-client's timeout signal. */
  readonly signal?: AbortSignal | undefined;
  readonly phase: GrantPhase;
  /** Token name, for messages; absent for discovery, which every token of an issuer shares. */
  readonly tokenName?: string | undefined;
  /** HTTP 200 answers from this URL are token answers and are inspected. */
  readonly tokenEndpoint?: string | undefined;
  /** Largest answer read (bytes). Default 1 MiB. */
  readonly maxBytes?: number | undefined;
}

/** A fresh record for one operation. */
export function newRecord(): OperationRecord {
  return { exchanges: [] };
}

/** Longest URL shown in a message (characters); a discovered endpoint comes from the network. */
const MAX_SHOWN_URL = 256;

/** The URL as shown in messages: no query, fragment or credentials, at most 256 characters. */
export function displayUrl(url: string): string {
  try {
    const u = new URL(url);
    u.search = '';
    u.hash = '';
    u.username = '';
    u.password = '';
    return u.href.length > MAX_SHOWN_URL ? `${u.href.slice(0, MAX_SHOWN_URL)}…` : u.href;
  } catch {
    return 'an invalid URL';
  }
}


/** The fetch for one operation; see the module comment. Records into `record`. */
export function operationFetch(opts: OperationFetchOptions, record: OperationRecord): CustomFetch {
  const maxBytes = opts.maxBytes ?? DEFAULT_MAX_RESPONSE_BYTES;
  const code = opts.phase === 'discovery' ? 'DISCOVERY_FAILED' : 'GRANT_TRANSIENT';
  // openid-client requests new URL(token_endpoint).href, which may differ from the metadata's spelling.
  const tokenEndpoint = opts.tokenEndpoint !== undefined && URL.canParse(opts.tokenEndpoint) ? new URL(opts.tokenEndpoint).href : undefined;
  return async (url, options) => {
    const exchange: Exchange = { method: options.method ?? 'GET', url: displayUrl(url) };
    record.exchanges.push(exchange);
    const linked = linkSignals(options.signal ?? undefined, opts.signal);
    try {
      const res = await opts.fetch(url, { ...(options as RequestInit), signal: linked.signal });
      exchange.status = res.status;
      const who = opts.tokenName === undefined ? opts.phase : `token "${opts.tokenName}": ${opts.phase}`;
      const what = `${who} ${exchange.method} ${exchange.url}`;
      const bytes = await readBounded(res, maxBytes, what, code);
      let body: Uint8Array<ArrayBuffer> | string | null = NULL_BODY_STATUSES.has(res.status) ? null : bytes;
      if (res.status === 200 && tokenEndpoint !== undefined && url === tokenEndpoint) {
        const inspected = inspectTokenAnswer(new TextDecoder().decode(bytes));
        record.answer = inspected.facts;
        const typeErr = tokenTypeError(inspected.facts.tokenType, opts.tokenName ?? '?', inspected.facts.refreshToken);
        if (typeErr) throw typeErr;
        body = inspected.body;
      }
      // A Response over bytes already read: status and headers as received; its url is ''
      // (openid-client does not read it for these requests).
      return new Response(body, { status: res.status, statusText: res.statusText, headers: res.headers });
    } finally {
      linked.dispose();
    }
  };
}
