import type { AccessToken } from '../token.js';
import type { StoredState, TokenStore } from './store.js';

interface Entry {
  access?: AccessToken | undefined;
  refreshToken?: string | undefined;
  seedHash?: string | undefined;
}

/**
 * Keeps tokens in process memory only (lost on restart). Same semantics as the other stores:
 * a save whose expiresAt is not later than the stored token's is dropped, remove forgets all.
 */
export class MemoryStore implements TokenStore {
  readonly kind = 'memory' as const;
  private readonly entries = new Map<string, Entry>();

  /** Nothing to check. */
  async init(): Promise<void> {}

  /** A copy of what is held for name (empty when nothing is). */
  async load(name: string): Promise<StoredState> {
    const entry = this.entries.get(name);
    return entry === undefined ? {} : { ...entry };
  }

  /** Replaces the refresh token and its seed hash. */
  async saveRefreshToken(name: string, refreshToken: string, seedHash: string | undefined): Promise<void> {
    const entry = this.entry(name);
    entry.refreshToken = refreshToken;
    entry.seedHash = seedHash;
  }

  /** Keeps token unless the held one expires at the same time or later. */
  async saveAccessToken(name: string, token: AccessToken): Promise<void> {
    const entry = this.entry(name);
    if (entry.access !== undefined && entry.access.grantKey === token.grantKey && !(token.expiresAt > entry.access.expiresAt)) return;
    // A frozen copy: a caller mutating its object must not change what is stored.
    entry.access = Object.freeze({ ...token });
  }

  /** Forgets everything held for name. */
  async remove(name: string): Promise<void> {
    this.entries.delete(name);
  }

  /** Nothing to release. */
  async close(): Promise<void> {}

  private entry(name: string): Entry {
    let entry = this.entries.get(name);
    if (entry === undefined) {
      entry = {};
      this.entries.set(name, entry);
    }
    return entry;
  }
}
