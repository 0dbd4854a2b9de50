import type { AccessToken } from '../token.js';

/** Default mode of the access-token files the file store writes: owner read/write only. */
export const DEFAULT_FILE_MODE = 0o600;

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
   * The refresh token of this seed was revoked (`tokend revoke`): no replica may use a refresh
   * token it holds for it again; only a new seed (different seedHash) starts a new chain.
   * Shared stores keep this as a tombstone; local stores simply remove everything.
   */
  readonly revoked?: boolean | undefined;
}

/**
 * Where tokens live outside the process. The refresher owns each token's state and calls these;
 * implementations know nothing of OAuth. All methods reject with TokendError('STORE_UNAVAILABLE').
 */
export interface TokenStore {
  readonly kind: 'memory' | 'file' | 'redis';
  /** Checks the store can be written (directory exists and is writable, Redis answers). */
  init(): Promise<void>;
  /**
   * Reads what is stored for name. A corrupt or truncated entry is reported through `onCorrupt`
   * and treated as absent (it will be replaced by the next write), never returned.
   */
  load(name: string): Promise<StoredState>;
  /**
   * Durably persists a refresh token (fsync / Redis ack) BEFORE the caller uses or announces the
   * access token that came with it, so a crash never leaves only the consumed one on disk.
   */
  saveRefreshToken(name: string, refreshToken: string, seedHash: string | undefined): Promise<void>;
  /** Writes the access token where services read it. A write older than what is stored is dropped. */
  saveAccessToken(name: string, token: AccessToken): Promise<void>;
  /** Removes every stored copy for name (after revocation). */
  remove(name: string): Promise<void>;
  close(): Promise<void>;
}

/** Called when a stored entry could not be parsed; `what` names the file or key, never its content. */
export type CorruptionReporter = (name: string, what: string, reason: string) => void;

/** Proof of holding the fleet-wide refresh lease for one token; `fence` grows with every new lease. */
export interface Lease {
  readonly name: string;
  readonly holder: string;
  readonly fence: number;
  /** Aborted when the lease is known lost (renewal failed or another holder took it). */
  readonly signal: AbortSignal;
}

/** The result of trying to take the lease. */
export type LeaseOutcome<T> =
  | { readonly acquired: true; readonly value: T }
  | { readonly acquired: false; /** ms until the current holder's lease lapses */ readonly holderTtlMs: number };

/**
 * A store shared by several replicas (Redis). The refresher takes the lease before any grant,
 * re-reads the state under it (another replica may have refreshed already), and commits the
 * grant's result fenced by the lease, so a replica that lost its lease cannot overwrite a newer
 * token or refresh token.
 */
export interface SharedStore extends TokenStore {
  readonly shared: true;
  /** Runs fn holding the lease for name (renewed while fn runs, released after). */
  withLease<T>(name: string, fn: (lease: Lease) => Promise<T>): Promise<LeaseOutcome<T>>;
  /**
   * Atomically stores the refresh token (if any) and access token if `lease` is still current.
   * Rejects with TokendError('LEASE_LOST') otherwise; nothing is written then.
   */
  commit(
    lease: Lease,
    update: { access: import('../token.js').AccessToken; refreshToken?: string | undefined; seedHash?: string | undefined },
  ): Promise<void>;
  /** Calls onChange (with the new state) whenever any replica commits for name. Returns unsubscribe. */
  watch(name: string, onChange: (state: StoredState) => void): () => void;
  /** True while the store is reachable (ioredis 'ready'). */
  isAvailable(): boolean;
}

/** Narrowing helper. */
export function isShared(store: TokenStore): store is SharedStore {
  return (store as Partial<SharedStore>).shared === true;
}
