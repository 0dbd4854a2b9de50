/**
 * A queue that holds at most one waiting value: only the newest matters (the newest token, the
 * newest change to announce). Values run one at a time through an async job; a value offered
 * while another waits replaces it, so the queue never grows however fast values arrive.
 */
import { sleep, type Clock } from '../clock.js';

/** What a job is told while it runs. */
export interface JobSignals {
  /** Aborted when a newer value is waiting: stop retrying (the newer value takes over). */
  readonly superseded: AbortSignal;
  /** Aborted when the owner gives up waiting at shutdown: stop now. */
  readonly closing: AbortSignal;
}

/** Runs job on the newest value offered, one at a time; older waiting values are dropped. */
export class LatestOnly<T> {
  private waiting: { value: T } | undefined;
  private running: Promise<void> | undefined;
  private newer: AbortController | undefined;
  private readonly closing = new AbortController();

  /**
   * @param job the work for one value; its rejections are swallowed (it reports its own failures)
   * @param onDropped told about a waiting value replaced by a newer one before it ran
   */
  constructor(
    private readonly job: (value: T, signals: JobSignals) => Promise<void>,
    private readonly onDropped: (value: T) => void = () => undefined,
  ) {}

  /** Queues value (replacing any waiting one) and tells a running job it is superseded. Never blocks. */
  offer(value: T): void {
    if (this.closing.signal.aborted) return;
    if (this.waiting !== undefined) this.onDropped(this.waiting.value);
    this.waiting = { value };
    this.newer?.abort();
    this.running ??= this.drain();
  }

  /** Resolves when nothing runs or waits. */
  idle(): Promise<void> {
    return this.running ?? Promise.resolve();
  }

  /**
   * Waits up to boundMs (on clock) for the queue to empty; then aborts what still runs (its
   * `closing` signal), drops what waits, and waits for the job to return. Offers are ignored
   * from then on.
   */
  async settle(clock: Clock, boundMs: number): Promise<void> {
    if (this.running !== undefined) {
      const giveUp = new AbortController();
      await Promise.race([this.running, sleep(clock, Math.max(0, boundMs), giveUp.signal).catch(() => undefined)]);
      giveUp.abort();
    }
    this.closing.abort();
    this.waiting = undefined;
    await this.running;
  }

  private async drain(): Promise<void> {
    try {
      while (this.waiting !== undefined && !this.closing.signal.aborted) {
        const { value } = this.waiting;
        this.waiting = undefined;
        this.newer = new AbortController();
        try {
          await this.job(value, { superseded: this.newer.signal, closing: this.closing.signal });
        } catch {
          // The job logs and counts its own failures; the next value still runs.
        }
      }
    } finally {
      this.newer = undefined;
      this.running = undefined;
    }
  }
}
