import type { AccessToken } from '../token.js';

/** What a store holds for one token. */
export interface StoredState {
  readonly access?: AccessToken | undefined;
  readonly refreshToken?: string | undefined;
  /**
   * SHA-256 (hex) of the refresh-token seed (refreshTokenFile / refreshToken) that the stored
   * refresh token descends from. When the configured seed changes, the new seed wins.
   */
  readonly seedHash?: string | undefined;
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
