/**
 * The in-memory cache of introspection verdicts (keyv over a bounded Map). Its own module so that
 * keyv is loaded only when an issuer configures introspection (the verifier imports it lazily).
 */
import Keyv from 'keyv';
import type { Clock } from '../clock.js';
import type { VerifyOutcome } from './types.js';

/** Default bound on cached introspection results; the oldest entry is dropped beyond it. */
export const INTROSPECTION_CACHE_MAX_ENTRIES = 10_000;

/** A Map that forgets its oldest entry once it holds maxEntries, so a flood cannot grow it. */
class BoundedMap<K, V> extends Map<K, V> {
  constructor(private readonly maxEntries: number) {
    super();
  }
  override set(key: K, value: V): this {
    if (!this.has(key) && this.size >= this.maxEntries) {
      const oldest = this.keys().next();
      if (!oldest.done) this.delete(oldest.value);
    }
    return super.set(key, value);
  }
}

interface CachedVerdict {
  outcome: VerifyOutcome;
  /** Injected-clock time (ms) after which the verdict must not be used. */
  until: number;
}

/**
 * Introspection verdicts, in memory (keyv over a bounded Map), keyed by the token's hash.
 * Expiry is checked against the injected clock; keyv's own TTL (wall clock) only evicts.
 */
export class IntrospectionCache {
  private readonly keyv: Keyv<CachedVerdict>;
  private readonly clock: Clock;

  /** @param opts.maxEntries default 10 000 */
  constructor(opts: { clock: Clock; maxEntries?: number }) {
    this.clock = opts.clock;
    this.keyv = new Keyv<CachedVerdict>({
      store: new BoundedMap<string, unknown>(opts.maxEntries ?? INTROSPECTION_CACHE_MAX_ENTRIES),
      namespace: 'verify',
    });
  }

  /** The cached verdict for key, if one is still fresh. */
  async get(key: string): Promise<VerifyOutcome | undefined> {
    const hit = await this.keyv.get(key);
    if (!hit) return undefined;
    if (this.clock.now() >= hit.until) {
      await this.keyv.delete(key);
      return undefined;
    }
    return hit.outcome;
  }

  /** Keeps outcome for ttlMs (nothing when ttlMs <= 0). */
  async set(key: string, outcome: VerifyOutcome, ttlMs: number): Promise<void> {
    if (ttlMs <= 0) return;
    await this.keyv.set(key, { outcome, until: this.clock.now() + ttlMs }, ttlMs);
  }

  /** Forgets everything. */
  async clear(): Promise<void> {
    await this.keyv.clear();
  }
}
