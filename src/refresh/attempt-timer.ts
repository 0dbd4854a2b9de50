import type { Clock, Timer } from '../clock.js';

/** The one pending attempt of a refresher: when it fires (monotonic), and cancelling it. */
export class AttemptTimer {
  private timer: Timer | undefined;
  private at: number | undefined;

  constructor(
    private readonly clock: Clock,
    private readonly fire: () => void,
  ) {}

  /** Schedules the attempt in ms (replacing any scheduled one). */
  in(ms: number): void {
    this.cancel();
    this.at = this.clock.monotonic() + ms;
    this.timer = this.clock.setTimer(() => {
      this.timer = undefined;
      this.fire();
    }, ms);
  }

  cancel(): void {
    this.timer?.cancel();
    this.timer = undefined;
    this.at = undefined;
  }

  /** ms until the scheduled attempt (negative when overdue), or undefined when none is scheduled. */
  msUntil(): number | undefined {
    return this.at === undefined ? undefined : this.at - this.clock.monotonic();
  }
}
