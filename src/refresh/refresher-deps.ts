import type { Clock } from '../clock.js';
import type { TokenConfig } from '../config/types.js';
import type { Logger } from '../log.js';
import type { TokenSource } from '../oauth/source.js';
import type { TokenStore } from '../store/store.js';
import type { AccessToken } from '../token.js';
import type { RetryBounds } from './backoff.js';
import type { RefreshObserver, TokenListener } from './handle.js';

/** Dependencies of a {@link Refresher}. Durations in ms. */
export interface RefresherDeps {
  readonly config: TokenConfig;
  /**
   * The grant. When it implements credentialFingerprint(), a permanent failure is retried as soon
   * as the fingerprint changes (a new Kubernetes Secret); otherwise only the seed is watched.
   */
  readonly source: TokenSource;
  readonly store: TokenStore;
  readonly clock: Clock;
  /** Uniform random in [0, 1), for backoff. */
  readonly random: () => number;
  /** Already a child logger bound to `{ token: name }`. */
  readonly logger: Logger;
  readonly observer?: RefreshObserver | undefined;
  /** Told about every new token held (outputs, notifications). */
  readonly listeners?: readonly TokenListener[] | undefined;
  /** Refreshes forced by a caller (min_ttl, an upstream's 401) happen at most once per this interval while a valid token is held. Default 5 000. */
  readonly minForcedRefreshIntervalMs?: number | undefined;
  /** Retry bounds (see backoff.ts). */
  readonly backoff?: Partial<RetryBounds> | undefined;
  /**
   * Refresh jitter in [0, 1) for a token. Default tokenJitter: derived from the token, so replicas
   * holding the same token aim at the same moment, one takes the lease and the rest adopt.
   */
  readonly jitter?: ((token: AccessToken) => number) | undefined;
  /** See CoordinatorDeps.writeBackWaitMs. */
  readonly writeBackWaitMs?: number | undefined;
  /** Longest a caller (min_ttl, an upstream's 401) waits for an attempt, in ms. Default 15 000. */
  readonly maxCallerWaitMs?: number | undefined;
}
