/**
 * What tokens talking to the same IdP share, so that N tokens are not N times the load:
 * - one discovery per issuer (and settings), single flight, cached for metadataMaxAgeMs and
 *   re-done after a failure or when a grant suggests the endpoints moved;
 * - one bounded keep-alive connection pool per IdP origin (node's http client with a
 *   `connections` limit per origin: pooled-fetch.ts, where it says why not undici);
 * - one GrantLimiter per IdP origin (max concurrent grants, Retry-After pauses).
 * The daemon creates one registry and passes it to every token source; without one, sources use
 * a process-wide default (DEFAULT_IDP_CONCURRENCY, system clock).
 */
import type { ServerMetadata } from 'openid-client';
import { systemClock, type Clock } from '../clock.js';
import { raceAbort } from '../util/abort.js';
import { SingleFlight } from '../util/single-flight.js';
import { DEFAULT_IDP_CONCURRENCY, GrantLimiter } from './limiter.js';
import { createPooledFetch } from './pooled-fetch.js';

/** How long discovered metadata is trusted before it is fetched again (ms): 1 hour. */
export const METADATA_MAX_AGE_MS = 3_600_000;

/** Options of createIdpRegistry. */
export interface IdpRegistryOptions {
  /** Max concurrent grants (and revocations) per IdP origin. Default DEFAULT_IDP_CONCURRENCY (4). */
  readonly concurrency?: number | undefined;
  /** Keep-alive connections per IdP origin. Default concurrency + 1 (one for discovery). */
  readonly connections?: number | undefined;
  /** Discovered metadata is fetched again after this long (ms). Default METADATA_MAX_AGE_MS. */
  readonly metadataMaxAgeMs?: number | undefined;
  /** For the limiter's pauses and the cache's age. Default systemClock. */
  readonly clock?: Clock | undefined;
}

/** Discovered metadata shared by every token with the same issuer and settings. */
export interface DiscoveryCache {
  /**
   * The cached metadata for key if fresh, else the result of load() (joined by every caller
   * asking meanwhile). load runs without the caller's signal (it serves all joiners; it carries
   * its own timeout); signal only stops this caller's wait.
   */
  get(key: string, load: () => Promise<ServerMetadata>, signal?: AbortSignal): Promise<ServerMetadata>;
  /** Like get, but fetches again even when the cache is fresh (joins a load in flight). */
  refresh(key: string, load: () => Promise<ServerMetadata>, signal?: AbortSignal): Promise<ServerMetadata>;
  /** Forgets key's metadata: the next get() discovers again. */
  invalidate(key: string): void;
}

/** The shared per-IdP state; see the module comment. */
export interface IdpRegistry {
  /** A fetch that sends each request over its origin's pooled connections. */
  readonly fetch: typeof fetch;
  /** The grant limiter of the IdP at origin (e.g. 'https://idp.example.com'), created on first use. */
  limiter(origin: string): GrantLimiter;
  readonly discovery: DiscoveryCache;
  /** Keep-alive connections per origin. */
  readonly connections: number;
  /** Closes every pooled connection (the registry can still be used; new pools are made). */
  close(): Promise<void>;
}

/** Creates a registry; the daemon makes one and hands it to every createTokenSource. */
export function createIdpRegistry(opts: IdpRegistryOptions = {}): IdpRegistry {
  const clock = opts.clock ?? systemClock;
  const concurrency = Math.max(1, Math.floor(opts.concurrency ?? DEFAULT_IDP_CONCURRENCY));
  const connections = Math.max(1, Math.floor(opts.connections ?? concurrency + 1));
  const limiters = new Map<string, GrantLimiter>();
  const pool = createPooledFetch({ connections });

  return {
    fetch: pool.fetch,
    connections,
    limiter(origin) {
      let l = limiters.get(origin);
      if (!l) {
        l = new GrantLimiter({ concurrency, clock, origin });
        limiters.set(origin, l);
      }
      return l;
    },
    discovery: createDiscoveryCache(clock, opts.metadataMaxAgeMs ?? METADATA_MAX_AGE_MS),
    async close() {
      pool.close();
    },
  };
}

function createDiscoveryCache(clock: Clock, maxAgeMs: number): DiscoveryCache {
  const entries = new Map<string, { at: number; value: ServerMetadata }>();
  const flights = new SingleFlight<string, ServerMetadata>();
  const load = (key: string, fn: () => Promise<ServerMetadata>): Promise<ServerMetadata> =>
    flights.run(key, async () => {
      const value = await fn();
      entries.set(key, { at: clock.monotonic(), value });
      return value;
    });
  return {
    get(key, fn, signal) {
      const hit = entries.get(key);
      if (hit && clock.monotonic() - hit.at < maxAgeMs) return Promise.resolve(hit.value);
      return raceAbort(load(key, fn), signal);
    },
    refresh(key, fn, signal) {
      return raceAbort(load(key, fn), signal);
    },
    invalidate(key) {
      entries.delete(key);
    },
  };
}

let processRegistry: IdpRegistry | undefined;

/** The process-wide registry used by token sources created without one. */
export function defaultIdpRegistry(): IdpRegistry {
  processRegistry ??= createIdpRegistry();
  return processRegistry;
}
