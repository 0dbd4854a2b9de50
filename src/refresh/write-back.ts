import type { Clock, Timer } from '../clock.js';
import { errorSummary, EVENTS, type Logger } from '../log.js';
import type { StoreUpdate, TokenStore } from '../store/store.js';
import { Backoff } from './backoff.js';
import type { Chain } from './chain.js';

/** What a PendingWrite needs. */
export interface PendingWriteDeps {
  readonly name: string;
  readonly store: TokenStore;
  readonly chain: Chain;
  readonly clock: Clock;
  readonly log: Logger;
  readonly random: () => number;
  readonly stopSignal: AbortSignal;
}

/**
 * A write the store has not confirmed: a rotation whose commit failed or whose outcome is unknown,
 * an access token a full disk refused, or what the store lost (FLUSHALL). Written back with
 * store.writeBack (conditioned on content, not on a lease, so it never lands over anything newer)
 * at once, on every store notification, and with backoff until it lands or is superseded.
 */
export class PendingWrite {
  private update: StoreUpdate | undefined;
  private timer: Timer | undefined;
  private flushing: Promise<void> | undefined;
  private readonly backoff: Backoff;

  constructor(private readonly d: PendingWriteDeps) {
    this.backoff = new Backoff({ minMs: 500, maxMs: 30_000, random: d.random });
  }

  /** True while a write waits. */
  get waiting(): boolean {
    return this.update !== undefined;
  }

  /** A write that just failed: held (newer fields win), logged at error level, tried again. */
  hold(update: StoreUpdate, err: unknown): void {
    const rotation = update.refreshToken !== undefined;
    this.update = { ...this.update, ...update };
    this.d.log.error(
      { event: EVENTS.storeFailed, error: errorSummary(err), what: rotation ? 'refresh_token' : 'access_token' },
      rotation
        ? 'could not store the rotated refresh token; holding it and writing it back when the store answers'
        : 'could not write the access token; serving it from memory and writing it when the store answers',
    );
    void this.flush();
  }

  /** What the store lost: added under any write already waiting (which is newer), then tried. */
  restore(update: StoreUpdate): void {
    this.update = { ...update, ...this.update };
    void this.flush();
  }

  /** Tries the waiting write now (one at a time); on failure tries again later with backoff. */
  flush(): Promise<void> {
    if (this.update === undefined) return Promise.resolve();
    this.flushing ??= this.flushOnce().finally(() => {
      this.flushing = undefined;
    });
    return this.flushing;
  }

  /** Cancels the retry timer (the refresher is stopping). */
  stop(): void {
    this.timer?.cancel();
    this.timer = undefined;
  }

  /** A successful commit: the next failure backs off from the start. */
  succeeded(): void {
    this.backoff.reset();
  }

  private async flushOnce(): Promise<void> {
    const update = this.update;
    if (update === undefined) return;
    this.timer?.cancel();
    this.timer = undefined;
    const { store, name, log, chain } = this.d;
    try {
      const result = await store.writeBack(name, chain.consumed, update);
      if (this.update === update) this.update = undefined;
      this.backoff.reset();
      const what = update.refreshToken !== undefined ? 'refresh_token' : 'access_token';
      if (result === 'written') log.warn({ event: EVENTS.storeRestored, what }, 'wrote to the store what it was missing');
      else if (result === 'superseded') log.info({ event: EVENTS.storeRestored, what, superseded: true }, 'the store holds something newer; nothing written back');
    } catch (err) {
      if (this.d.stopSignal.aborted) return;
      const delay = this.backoff.next();
      log.debug({ error: errorSummary(err), retry_in_ms: delay }, 'could not write back yet');
      this.timer = this.d.clock.setTimer(() => void this.flush(), delay);
    }
  }
}
