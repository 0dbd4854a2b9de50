import type { Clock } from '../clock.js';
import { errorSummary, EVENTS, type Logger } from '../log.js';
import type { TokenSource } from '../oauth/source.js';
import type { TokenStore } from '../store/store.js';
import { isUsable, type AccessToken } from '../token.js';
import type { Chain } from './chain.js';

/** What revoking one token needs. */
export interface RevocationDeps {
  readonly name: string;
  readonly store: TokenStore;
  readonly source: TokenSource;
  /** The token's refresh-token chain (NO_CHAIN for grants without one). */
  readonly chain: Chain;
  /** The access token held in memory, if any. */
  readonly held: AccessToken | undefined;
  readonly clock: Clock;
  readonly log: Logger;
  readonly signal?: AbortSignal | undefined;
}

/**
 * RFC 7009: revokes the refresh token (the newest one known: this process's, the store's, or the
 * seed when nothing was used yet) and the access token at the IdP, then removes every stored copy
 * (leaving a tombstone for the chain). Rejects if the refresh token could not be revoked: nothing
 * is removed then, so it can be retried. A failed access-token revocation is only logged (it
 * expires by itself).
 */
export async function revokeToken(d: RevocationDeps): Promise<string[]> {
  const done: string[] = [];
  const state = await d.store.load(d.name);
  if (d.chain.presents) {
    d.chain.observe(state, undefined);
    const rt = d.chain.current ?? state.refreshToken ?? (await d.source.readSeed());
    if (rt !== undefined) {
      await d.source.revoke(rt, 'refresh_token', d.signal);
      d.chain.revoke();
      done.push('refresh token revoked');
    }
  }
  const access = d.held ?? state.access;
  if (isUsable(access, d.clock)) {
    try {
      await d.source.revoke(access.accessToken, 'access_token', d.signal);
      done.push('access token revoked');
    } catch (err) {
      d.log.warn({ event: EVENTS.revoked, error: errorSummary(err) }, 'access token revocation failed');
    }
  }
  await d.store.remove(d.name);
  d.log.info({ event: EVENTS.revoked }, 'token revoked and removed from the store');
  return done;
}
