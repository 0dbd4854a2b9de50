import type { AccessToken } from '../token.js';

/** Default mode of the access-token files the file store writes: owner read/write only. */
export const DEFAULT_FILE_MODE = 0o600;

/**
 * A refresh_token grant in progress: the lease holder recorded, durably and fenced, that it is
 * about to present the stored refresh token (whose SHA-256 is `presented`). Cleared by the commit
 * of the grant's result, or by the holder when the IdP answered without consuming the token.
 * While it stands, no other process presents that refresh token: the IdP may already have rotated it.
 */
export interface GrantIntent {
  /** Lease holder id of the process that recorded it. */
  readonly holder: string;
  /** SHA-256 (hex) of the refresh token it presents. */
  readonly presented: string;
  /** Wall-clock ms when it was recorded. */
  readonly at: number;
}

/** What a store holds for one token. */
export interface StoredState {
  readonly access?: AccessToken | undefined;
  readonly refreshToken?: string | undefined;
  /**
   * SHA-256 (hex) of the refresh-token seed (refreshTokenFile / refreshToken) that the stored
   * refresh token descends from. When the configured seed changes, the new seed wins.
   */
  readonly seedHash?: string | undefined;
  /**
   * The refresh token of this seed was revoked (`tokend revoke`): no process may use a refresh
   * token it holds for it again; only a new seed (different seedHash) starts a new chain.
   */
  readonly revoked?: boolean | undefined;
  /** An uncommitted refresh_token grant (see GrantIntent). */
  readonly intent?: GrantIntent | undefined;
}

/** Called when a stored entry could not be parsed; `what` names the file or key, never its content. */
export type CorruptionReporter = (name: string, what: string, reason: string) => void;

/**
 * Proof of holding the refresh lease for one token. `fence` grows with every lease taken, so a
 * write carrying an older fence is refused. Local stores hand out an in-process lease.
 */
export interface Lease {
  readonly name: string;
  readonly holder: string;
  readonly fence: number;
  /** Aborted when the lease is known lost (renewal failed, another holder took it, store closing). */
  readonly signal: AbortSignal;
}

/** The result of trying to take the lease. */
export type LeaseOutcome<T> =
  | { readonly acquired: true; readonly value: T }
  | {
      readonly acquired: false;
      /** ms until the current holder's lease lapses (at most the configured lease length). */
      readonly holderTtlMs: number;
      /**
       * The lease is held by something tokend does not trust (not a tokend holder id, longer than
       * the configured lease, or without expiry). The store has logged it at error level; the
       * caller acts as if the store were unavailable for grants (client_credentials grants locally).
       */
      readonly distrusted?: true | undefined;
    };

/** What a commit or write-back stores. Fields left out are kept as they are. */
export interface StoreUpdate {
  /** Written unless the stored one is at least as new (isNewerThan). */
  readonly access?: AccessToken | undefined;
  /** The chain's refresh token: stored first (before the access token is visible); clears the intent and any tombstone. */
  readonly refreshToken?: string | undefined;
  /** Seed the refresh token descends from (stored with it). */
  readonly seedHash?: string | undefined;
}

/** Outcome of a write-back. */
export type WriteBackResult =
  /** The store held a superseded (consumed) refresh token, or none: the update is now stored. */
  | 'written'
  /** The store already held update.refreshToken (an earlier commit had landed) or a token at least as new. */
  | 'already'
  /** Something newer was committed meanwhile (or the chain was revoked): nothing written. */
  | 'superseded';

/**
 * Where tokens live outside the process: one protocol for memory, file and Redis. The refresher
 * never asks which kind it talks to. Every method rejects with TokendError('STORE_UNAVAILABLE')
 * when the store cannot be reached or written, LEASE_LOST when a fenced write lost its lease, and
 * STORE_AUTH_FAILED when the store refused tokend's credentials.
 *
 * One refresh (refresh/coordinator.ts): withLease → load (another process may have refreshed:
 * adopt) → for a refresh_token grant, recordIntent before presenting → grant → commit (refresh
 * token first, then access token) → lease released. A commit whose outcome is unknown is completed
 * later by writeBack.
 */
export interface TokenStore {
  /** Where the store is, for log lines (`file store /var/run/tokend`); never a credential. */
  readonly description: string;
  /** This process's lease holder id (unique per process). */
  readonly holderId: string;
  /** Checks the store can be used (directory writable and safe, Redis answers and accepts our credentials). */
  init(): Promise<void>;
  /**
   * Reads what is stored for name. A corrupt or truncated entry is reported through the store's
   * corruption reporter and treated as absent, never returned. An access token is returned only
   * while isUsable; its `deadline` is stamped from this process's monotonic clock.
   */
  load(name: string): Promise<StoredState>;
  /**
   * Runs fn holding the lease for name (renewed while fn runs, released after). Local stores
   * always acquire it (waiting for an earlier holder in this process); Redis may answer that
   * another replica holds it.
   */
  withLease<T>(name: string, fn: (lease: Lease) => Promise<T>): Promise<LeaseOutcome<T>>;
  /**
   * Durably records, fenced by lease, that the holder is about to present the stored refresh token
   * whose SHA-256 is presentedHash. Resolves only once stored (fsync, Redis ack): a store that
   * cannot be written (disk full, Redis down) rejects, and then no grant is made.
   */
  recordIntent(lease: Lease, presentedHash: string): Promise<void>;
  /** Removes the holder's intent after the IdP answered without consuming the token. Fenced. */
  clearIntent(lease: Lease, presentedHash: string): Promise<void>;
  /**
   * Atomically stores update if lease is still current: the refresh token first (durably), then
   * the access token. Clears the intent. Rejects with LEASE_LOST (nothing written) otherwise.
   */
  commit(lease: Lease, update: StoreUpdate): Promise<void>;
  /**
   * Completes a rotation whose commit failed or whose outcome is unknown, and puts back what a
   * store lost (Redis FLUSHALL, failover to an empty replica), without a lease. Stored only when the
   * store holds no refresh token, or one whose SHA-256 is in `supersedes` (tokens this process knows
   * were consumed: a refresh-token chain is linear, so every earlier token is); never over a
   * revocation tombstone or anything newer. 'already' when it holds update.refreshToken. The access
   * token is written under the usual isNewerThan rule.
   */
  writeBack(name: string, supersedes: ReadonlySet<string>, update: StoreUpdate): Promise<WriteBackResult>;
  /**
   * Calls onChange with the freshly loaded state whenever any process writes name (this one
   * included), once soon after watch() is called, and after the store reconnects (writes may have
   * been missed; the state may then be empty if the store lost its data). Returns unsubscribe.
   */
  watch(name: string, onChange: (state: StoredState) => void): () => void;
  /**
   * Removes every stored copy for name after revocation. A refresh-token chain leaves a tombstone
   * (revoked, with its seedHash) so that no process presents or writes back that chain again.
   */
  remove(name: string): Promise<void>;
  /** Releases leases, stops watching, waits for writes in flight, closes connections. */
  close(): Promise<void>;
}
