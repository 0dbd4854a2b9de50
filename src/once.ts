import { systemClock, type Clock } from './clock.js';
import type { Config } from './config/types.js';
import { errorSummary, EVENTS, type Logger } from './log.js';
import { Registry } from './util/prom.js';
import type { TokenStatus } from './refresh/handle.js';
import type { Refresher } from './refresh/refresher.js';
import { buildTokens } from './tokens.js';
import type { TokenStore } from './store/store.js';

/** Options of {@link runOnce}. */
export interface OnceOptions {
  readonly logger: Logger;
  /** How long every token has to become ready (ms). */
  readonly timeoutMs: number;
  readonly clock?: Clock | undefined;
  readonly random?: (() => number) | undefined;
  readonly store?: TokenStore | undefined;
}

/** What a one-shot run achieved. */
export interface OnceResult {
  readonly ready: readonly string[];
  readonly failed: ReadonlyArray<{ readonly name: string; readonly reason: string; readonly lastError?: string | undefined }>;
}

/**
 * `tokend run --once`: obtains (or adopts a valid stored or fleet token for) every configured token,
 * writes the store (and, through the listeners, the outputs), and returns. Refreshes a stored token
 * that is already due. Retries transient failures until timeoutMs; a rotated refresh token is saved
 * before it returns. With Redis, concurrent runs coordinate through the lease: one grant serves all.
 */
export async function runOnce(config: Config, opts: OnceOptions): Promise<OnceResult> {
  const clock = opts.clock ?? systemClock;
  // The outputs and notifications of the daemon too: written before the run ends.
  const tokens = await buildTokens(config, { clock, random: opts.random ?? Math.random, logger: opts.logger, registry: new Registry(), store: opts.store });
  // tokend's timers do not hold the process open (a daemon exits on its signal): a one-shot run
  // must stay alive until it is done, retries included.
  const keepAlive = setInterval(() => undefined, 60_000);
  let statuses: TokenStatus[] = [];
  try {
    await Promise.all(tokens.refreshers.map((r) => r.start()));
    await Promise.all(tokens.refreshers.map((r) => untilSettled(r, clock, opts.timeoutMs)));
    statuses = tokens.refreshers.map((r) => r.status());
  } finally {
    clearInterval(keepAlive);
    // Stops the refreshers (a rotated refresh token is saved first), flushes outputs, closes the store.
    await tokens.close().catch((err: unknown) => opts.logger.warn({ error: errorSummary(err) }, 'closing the store failed'));
  }
  const ready: string[] = [];
  const failed: Array<{ name: string; reason: string; lastError?: string | undefined }> = [];
  for (const s of statuses) {
    if (s.ready) ready.push(s.name);
    else failed.push({ name: s.name, reason: s.reason ?? 'not ready', lastError: s.lastError });
  }
  opts.logger.info({ event: EVENTS.daemonStopped, ready, failed: failed.map((f) => f.name) }, 'one-shot run finished');
  return { ready, failed };
}

/** Resolves once r holds a token not yet due for refresh, failed permanently, or timeoutMs passed. */
async function untilSettled(r: Refresher, clock: Clock, timeoutMs: number): Promise<void> {
  const deadline = clock.monotonic() + timeoutMs;
  for (;;) {
    const s = r.status();
    if (s.ready) {
      // A stored token already inside its refresh window is refreshed now, not left to a daemon.
      await r.refreshIfDue();
      return;
    }
    if (r.failedPermanently || clock.monotonic() >= deadline) return;
    await new Promise<void>((resolve) => clock.setTimer(resolve, Math.min(250, Math.max(0, deadline - clock.monotonic()))));
  }
}
