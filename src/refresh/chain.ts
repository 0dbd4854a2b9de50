import { TokendError } from '../errors.js';
import type { StoredState } from '../store/store.js';
import { sha256Hex } from '../util/hash.js';
import type { Credentials } from './credentials.js';

/** How many consumed refresh tokens a chain remembers (by hash): far more than one outage produces. */
export const CONSUMED_MEMORY = 64;

/** The refresh token a grant presents, and the seed it descends from. */
export interface Pick {
  readonly rt: string | undefined;
  readonly seedHash: string | undefined;
  /** The configured seed replaced the chain held so far (a new Secret was mounted). */
  readonly seedWon: boolean;
}

/**
 * The refresh-token chain of one token (RFC 6749 §6, with rotation): which refresh token to present
 * next, which ones were consumed and must never be presented again, and whether the current one is
 * newer than what the store holds. Pure bookkeeping: no I/O, no clock.
 *
 * Grants that present no refresh token (client_credentials, token exchange, JWT bearer) get
 * {@link NO_CHAIN}, so callers never branch on the grant type.
 */
export interface Chain {
  /** True when grants present a refresh token. */
  readonly presents: boolean;
  /** The refresh token to present next, as far as this process knows. */
  readonly current: string | undefined;
  /** Seed hash `current` descends from. */
  readonly seedHash: string | undefined;
  /** Hashes of refresh tokens that were consumed (presented and rotated away). */
  readonly consumed: ReadonlySet<string>;
  /**
   * Chooses the refresh token to present: the stored one (or, when the store lost it or lags
   * behind a rotation this process holds, its own), unless the configured seed is newer. Throws
   * GRANT_PERMANENT when there is nothing left to present.
   */
  pick(stored: StoredState, creds: Credentials): Pick;
  /** The IdP answered a grant that presented `presented`: `next` (if any, and different) replaces it. */
  rotated(presented: string | undefined, next: string | undefined, seedHash: string | undefined): void;
  /** A state read from the store (load, watch): remember its refresh token as the newest seen. */
  observe(state: StoredState, seedHash: string | undefined): void;
  /** True when rt was consumed. */
  isConsumed(rt: string): boolean;
  /** True when the store lacks the refresh token this process holds (data loss, or a commit that did not land). */
  storeLacks(state: StoredState): boolean;
  /** The chain was revoked: forget the current token, never present it again. */
  revoke(): void;
  /** rt belongs to a chain a new seed replaced: never present it, and let a write-back replace it. */
  abandon(rt: string): void;
}

/** The chain of grants that present no refresh token. */
export const NO_CHAIN: Chain = Object.freeze({
  presents: false,
  current: undefined,
  seedHash: undefined,
  consumed: new Set<string>(),
  pick: () => ({ rt: undefined, seedHash: undefined, seedWon: false }),
  rotated: () => undefined,
  observe: () => undefined,
  isConsumed: () => false,
  storeLacks: () => false,
  revoke: () => undefined,
  abandon: () => undefined,
});

/** The chain for a configured token: a refresh-token chain for grant refresh_token, else NO_CHAIN. */
export function chainFor(config: { readonly name: string; readonly grant: string }): Chain {
  return config.grant === 'refresh_token' ? new RefreshTokenChain(config.name) : NO_CHAIN;
}

/** A GRANT_PERMANENT tokend decides itself, without asking the IdP. */
export function localRefusal(message: string, reason: string): TokendError {
  return new TokendError('GRANT_PERMANENT', message, { reason });
}

/** The refresh-token chain of a refresh_token grant. */
export class RefreshTokenChain implements Chain {
  readonly presents = true;
  private rt: string | undefined;
  private chainSeedHash: string | undefined;
  private readonly consumedHashes = new Set<string>();

  constructor(private readonly name: string) {}

  get current(): string | undefined {
    return this.rt;
  }

  get seedHash(): string | undefined {
    return this.chainSeedHash;
  }

  get consumed(): ReadonlySet<string> {
    return this.consumedHashes;
  }

  pick(stored: StoredState, creds: Credentials): Pick {
    let held = stored.refreshToken;
    let heldSeedHash = stored.seedHash;
    if (held === undefined || this.isConsumed(held)) {
      // The store lost the refresh token (FLUSHALL, an empty failover replica) or still holds one
      // this process already saw rotated away (a commit whose outcome was unknown did not land):
      // ours is the newest. Falling back to the seed would present a consumed token.
      if (this.rt !== undefined && !this.isConsumed(this.rt)) {
        held = this.rt;
        heldSeedHash = this.chainSeedHash;
      } else if (held !== undefined) {
        held = undefined;
      }
    }
    // An unreadable seed file (mid-remount) or no seed configured: keep the chain we have.
    if (held !== undefined && (creds.seedHash === undefined || heldSeedHash === creds.seedHash || creds.seed === undefined)) {
      return { rt: held, seedHash: heldSeedHash, seedWon: false };
    }
    if (creds.seed === undefined) {
      if (creds.seedError !== undefined) throw creds.seedError;
      throw localRefusal(`token ${this.name}: no refresh token (refreshTokenFile / refreshToken) is available`, 'no refresh token');
    }
    if (this.isConsumed(creds.seed)) {
      throw localRefusal(`token ${this.name}: the only refresh token available was already used and rotated away`, 'refresh token already used');
    }
    return { rt: creds.seed, seedHash: creds.seedHash, seedWon: held !== undefined };
  }

  rotated(presented: string | undefined, next: string | undefined, seedHash: string | undefined): void {
    if (presented !== undefined && next !== undefined && next !== presented) this.markConsumed(presented);
    const newest = next ?? presented;
    if (newest !== undefined && !this.isConsumed(newest)) {
      this.rt = newest;
      this.chainSeedHash = seedHash;
    }
  }

  observe(state: StoredState, seedHash: string | undefined): void {
    const rt = state.refreshToken;
    if (rt === undefined || rt === this.rt || this.isConsumed(rt)) return;
    // Another chain (a new seed elsewhere) is not ours to follow until our seed says so.
    if (seedHash !== undefined && state.seedHash !== seedHash) return;
    // A chain is linear: the token we held before is now consumed.
    if (this.rt !== undefined && state.seedHash === this.chainSeedHash) this.markConsumed(this.rt);
    this.rt = rt;
    this.chainSeedHash = state.seedHash;
  }

  isConsumed(rt: string): boolean {
    return this.consumedHashes.has(sha256Hex(rt));
  }

  storeLacks(state: StoredState): boolean {
    if (this.rt === undefined || this.isConsumed(this.rt) || state.revoked) return false;
    return state.refreshToken === undefined || (state.refreshToken !== this.rt && this.isConsumed(state.refreshToken));
  }

  revoke(): void {
    if (this.rt !== undefined) this.markConsumed(this.rt);
    this.rt = undefined;
  }

  abandon(rt: string): void {
    this.markConsumed(rt);
  }

  /** Remembers (a hash of) a token that must never be presented again; keeps the newest CONSUMED_MEMORY. */
  private markConsumed(rt: string): void {
    this.consumedHashes.add(sha256Hex(rt));
    if (this.consumedHashes.size > CONSUMED_MEMORY) {
      this.consumedHashes.delete(this.consumedHashes.values().next().value as string);
    }
  }
}
