import type { Clock, Timer } from '../clock.js';
import { errorSummary, EVENTS, type Logger } from '../log.js';
import { isUsable, remainingMs, type AccessToken } from '../token.js';
import type { TokenListener, TokenOrigin } from './handle.js';

/**
 * The token a refresher serves: published once per real change (told to the listeners and the
 * log: token.acquired / refreshed / loaded, adopted marked), handed out only while usable, and its
 * expiry noticed and logged once even when no timer ran (token.expired).
 */
export class HeldToken {
  private token: AccessToken | undefined;
  private everPublished = false;
  private expiredLoggedFor: AccessToken | undefined;
  private expiryTimer: Timer | undefined;
  private closed = false;

  constructor(
    private readonly name: string,
    private readonly clock: Clock,
    private readonly log: Logger,
    private readonly listeners: readonly TokenListener[],
  ) {}

  /** The published token, usable or not (undefined when none was ever published, or it was dropped). */
  get latest(): AccessToken | undefined {
    return this.token;
  }

  /** The published token if it is still usable; never an expired one. */
  current(): AccessToken | undefined {
    const t = this.token;
    if (t === undefined) return undefined;
    if (isUsable(t, this.clock)) return t;
    this.noteExpired(t);
    return undefined;
  }

  /** Publishes token unless it is the one held; startedAt (wall ms) dates the attempt for duration_ms. */
  publish(token: AccessToken, origin: TokenOrigin, startedAt: number): void {
    const prev = this.token;
    if (prev !== undefined && prev.accessToken === token.accessToken && prev.expiresAt === token.expiresAt) return;
    const first = !this.everPublished;
    this.token = token;
    this.everPublished = true;
    this.armExpiryTimer(token);
    for (const l of this.listeners) {
      try {
        l.tokenChanged(this.name, token, origin);
      } catch (err) {
        this.log.error({ error: errorSummary(err) }, 'a token listener failed');
      }
    }
    const expires_at = Math.floor(token.expiresAt / 1000);
    if (origin === 'loaded') {
      this.log.info({ event: EVENTS.loaded, expires_at }, 'loaded a valid token from the store');
      return;
    }
    const duration_ms = origin === 'grant' ? Math.max(0, this.clock.now() - startedAt) : 0;
    const message = origin === 'adopted' ? 'adopted a token another replica obtained' : first ? 'token acquired' : 'token refreshed';
    this.log.info({ event: first ? EVENTS.acquired : EVENTS.refreshed, expires_at, duration_ms, adopted: origin === 'adopted' }, message);
  }

  /** Forgets the token (revoked). */
  drop(): void {
    this.token = undefined;
    this.expiryTimer?.cancel();
    this.expiryTimer = undefined;
  }

  /** Cancels the expiry timer for good. */
  close(): void {
    this.closed = true;
    this.expiryTimer?.cancel();
    this.expiryTimer = undefined;
  }

  private armExpiryTimer(token: AccessToken): void {
    this.expiryTimer?.cancel();
    if (this.closed) return;
    this.expiryTimer = this.clock.setTimer(() => {
      this.expiryTimer = undefined;
      if (this.token === token) this.current();
    }, remainingMs(token, this.clock));
  }

  private noteExpired(token: AccessToken): void {
    if (this.expiredLoggedFor === token) return;
    this.expiredLoggedFor = token;
    this.log.warn({ event: EVENTS.expired, expires_at: Math.floor(token.expiresAt / 1000) }, 'token expired without a replacement');
  }
}
