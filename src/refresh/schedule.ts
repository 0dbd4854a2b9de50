import type { Clock, Timer } from '../clock.js';
import type { AccessToken } from '../token.js';
import { msUntilRefresh } from './policy.js';

export interface ScheduleDeps {
  readonly clock: Clock;
  /** TokenConfig.refreshAt. */
  readonly refreshAt: number;
  /** Refresh jitter in [0, 1) for a token. */
  readonly jitterOf: (token: AccessToken) => number;
  /** Runs the attempt when it is due. */
  readonly fire: () => void;
  /** False once the refresher is stopped or revoked: nothing is armed then. */
  readonly live: () => boolean;
}

/**
 * The one pending attempt of a refresher: when the held token's refresh is due
 * (policy.msUntilRefresh), when the attempt fires (monotonic), and cancelling it. A token's jitter
 * is computed once: a SHA-256 per token on every 15 s tick was most of the idle CPU at 10,000 tokens.
 */
export class RefreshSchedule {
  private timer: Timer | undefined;
  private at: number | undefined;
  private jitterFor: AccessToken | undefined;
  private jitter = 0;

  constructor(private readonly d: ScheduleDeps) {}

  /** Schedules the attempt in ms (replacing any scheduled one). */
  in(ms: number): void {
    this.cancel();
    if (!this.d.live()) return;
    this.at = this.d.clock.monotonic() + ms;
    this.timer = this.d.clock.setTimer(() => {
      this.timer = undefined;
      this.d.fire();
    }, ms);
  }

  /** Schedules the refresh of token at its jittered due time, but not sooner than minDelayMs. */
  refreshOf(token: AccessToken, minDelayMs = 0): void {
    this.in(Math.max(minDelayMs, this.msUntilDue(token)));
  }

  cancel(): void {
    this.timer?.cancel();
    this.timer = undefined;
    this.at = undefined;
  }

  /** ms until the scheduled attempt (negative when overdue), or undefined when none is scheduled. */
  msUntil(): number | undefined {
    return this.at === undefined ? undefined : this.at - this.d.clock.monotonic();
  }

  /** ms from now until token's refresh is due (negative when overdue). */
  msUntilDue(token: AccessToken): number {
    if (token !== this.jitterFor) {
      this.jitterFor = token;
      this.jitter = this.d.jitterOf(token);
    }
    return msUntilRefresh(token, this.d.clock, { refreshAt: this.d.refreshAt, random: this.jitter });
  }

  /** True when nothing is scheduled, or the refresh of latest (the held token) is due by either clock. */
  isOverdue(latest: AccessToken | undefined): boolean {
    const next = this.msUntil();
    if (next === undefined || next <= 0) return true;
    return latest !== undefined && this.msUntilDue(latest) <= 0;
  }
}
