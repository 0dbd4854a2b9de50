/**
 * The notifier interface: one way of telling something outside tokend that a token changed.
 * A notifier never receives the token itself, only its name and expiry.
 */
import type { NotifyKind } from '../output/metrics.js';

/** What a notification says: which token changed and when the new one expires. */
export interface ChangeEvent {
  /** The token's configured name. */
  readonly name: string;
  /** The new token's expiry, Unix seconds. */
  readonly expiresAt: number;
  /**
   * Replaces the token's value in text that came from outside (a command's output) with
   * `[redacted]`: a command that reads an output file might print it.
   */
  readonly scrub: (text: string) => string;
}

/** The event name every notification carries (HTTP body `event`, exec's TOKEND_EVENT). */
export const CHANGE_EVENT = 'token.changed';

/** One attempt's result. `detail` goes into the log line (never a token). */
export type NotifyOutcome =
  | { readonly ok: true; readonly detail?: Readonly<Record<string, unknown>> }
  | {
      readonly ok: false;
      /** Why, for the log: names the pid file, status or exit code, never a token. */
      readonly reason: string;
      /** A later attempt may succeed (network error, 5xx, timeout). */
      readonly retryable: boolean;
      readonly detail?: Readonly<Record<string, unknown>>;
    };

/** How a notifier retries retryable failures: exponential backoff with jitter, bounded in attempts and time. */
export interface RetryPolicy {
  /** Attempts in all, the first included. */
  readonly maxAttempts: number;
  /** No attempt starts later than this after the first one (ms). */
  readonly maxTotalMs: number;
  /** Shortest and longest delay between attempts (ms). */
  readonly minMs: number;
  readonly maxMs: number;
}

/** One configured notification target. */
export interface Notifier {
  readonly kind: NotifyKind;
  /** Fields naming the target in log lines (URL without query, pid file, program). */
  readonly target: Readonly<Record<string, unknown>>;
  /** Retries for retryable failures; undefined: one attempt only. */
  readonly retry: RetryPolicy | undefined;
  /** Makes one attempt. Never rejects. `signal` aborts it (shutdown). */
  send(event: ChangeEvent, signal: AbortSignal): Promise<NotifyOutcome>;
}
