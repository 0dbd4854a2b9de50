import { TokendError } from '../errors.js';
import { errorSummary, EVENTS, type Logger } from '../log.js';
import { Backoff, type BackoffOptions, type RetryBounds } from './backoff.js';
import { permanentReason } from './policy.js';

export interface PermanentFailure {
  readonly reason: string;
  /** Credentials fingerprint when it failed; a different one means "try again". */
  readonly fingerprint: string;
}

/** What follows a failed attempt: nothing until the credentials change, or a retry in delayMs. */
export type AfterFailure =
  | { readonly permanent: true }
  | { readonly permanent: false; readonly delayMs: number; /** The IdP asked for the pause (Retry-After). */ readonly retryAfter: boolean };

/**
 * What failed attempts leave behind: the backoff, the last error (status().lastError) and a
 * permanent failure, which stops retries until the credentials change. Each failure is logged as
 * token.refresh_failed (operators tail that one event), with its retry delay or marked permanent.
 */
export class Failures {
  private readonly backoff: Backoff;
  private permanentFailure: PermanentFailure | undefined;
  private lastMessage: string | undefined;

  constructor(
    private readonly log: Logger,
    backoff: BackoffOptions,
  ) {
    this.backoff = new Backoff(backoff);
  }

  get bounds(): RetryBounds {
    return this.backoff.bounds;
  }

  get permanent(): PermanentFailure | undefined {
    return this.permanentFailure;
  }

  /** The last failed attempt's message, until one succeeds. */
  get lastError(): string | undefined {
    return this.lastMessage;
  }

  /** An attempt succeeded: no backoff, no failure. */
  succeeded(): void {
    this.reset();
    this.lastMessage = undefined;
  }

  /** Forgets a permanent failure and the backoff (new credentials, or another replica's success proved them). */
  reset(): void {
    this.permanentFailure = undefined;
    this.backoff.reset();
  }

  /** Stops retries until the credentials (fingerprint) change. */
  markPermanent(reason: string, fingerprint: string): void {
    this.permanentFailure = { reason, fingerprint };
  }

  /** Records err, which failed with the credentials fingerprint while heldRemainingMs were left on the held token. */
  record(err: unknown, fingerprint: string, heldRemainingMs: number | undefined): AfterFailure {
    this.lastMessage = err instanceof TokendError ? err.message : 'unexpected error';
    const permanent = permanentReason(err);
    if (permanent !== undefined) {
      this.markPermanent(permanent, fingerprint);
      this.log.error(
        { event: EVENTS.refreshFailed, error: errorSummary(err), attempt: this.backoff.attempt + 1, retry_in_ms: null, permanent: true, reason: permanent },
        'the IdP refused the credential; not retrying until the secret or seed changes',
      );
      return { permanent: true };
    }
    const retryAfter = err instanceof TokendError ? err.retryAfterMs : undefined;
    const delayMs = this.backoff.nextAfter(heldRemainingMs, retryAfter);
    this.log.warn({ event: EVENTS.refreshFailed, error: errorSummary(err), attempt: this.backoff.attempt, retry_in_ms: delayMs }, 'refresh failed; retrying');
    return { permanent: false, delayMs, retryAfter: retryAfter !== undefined };
  }
}
