/**
 * What tokens talking to the same IdP share, so that N tokens are not N times the load:
 * - one discovery per issuer (and settings), single flight, cached for metadataMaxAgeMs and
 *   re-done after a failure or when a grant suggests the endpoints moved;
 * - one bounded keep-alive connection pool per IdP origin (an undici Agent with a `connections`
 *   limit, the dispatcher of undici's own fetch; Node 20's bundled undici cannot be imported);
 * - one GrantLimiter per IdP origin (max concurrent grants, Retry-After pauses).
 * The daemon creates one registry and passes it to every token source; without one, sources use
 * a process-wide default (DEFAULT_IDP_CONCURRENCY, system clock).
 */
import type { Agent } from 'undici';
import type { ServerMetadata } from 'openid-client';
import { systemClock, type Clock } from '../clock.js';
import { raceAbort } from '../util/abort.js';
import { SingleFlight } from '../util/single-flight.js';
import { DEFAULT_IDP_CONCURRENCY, GrantLimiter } from './limiter.js';

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
  const agents = new Map<string, Agent>();
  let undici: Promise<typeof import('undici')> | undefined;

  const pooledFetch: typeof fetch = async (input, init) => {
    // Loaded on first use: undici is large, and `tokend get` never talks to an IdP.
    undici ??= import('undici');
    const u = await undici;
    const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
    const origin = new URL(url).origin;
    let agent = agents.get(origin);
    if (!agent) {
      agent = new u.Agent({ connections });
      agents.set(origin, agent);
    }
    // undici's fetch and global fetch share the web types but not the declarations.
    return (await u.fetch(url, { ...(init as object), dispatcher: agent } as never)) as unknown as Response;
  };

  return {
    fetch: pooledFetch,
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
      const closing = [...agents.values()].map((a) => a.close().catch(() => undefined));
      agents.clear();
      await Promise.all(closing);
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
