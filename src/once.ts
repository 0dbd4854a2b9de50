import { systemClock, type Clock } from './clock.js';
import type { Config } from './config/types.js';
import { errorSummary, EVENTS, type Logger } from './log.js';
import { createTokenSource } from './oauth/grants.js';
import { createIdpRegistry } from './oauth/idp-registry.js';
import { Registry } from 'prom-client';
import { createTokenListeners, type TokenOutputs } from './output/listeners.js';
import { Refresher } from './refresh/refresher.js';
import { createStore } from './store/create.js';
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
  readonly failed: ReadonlyArray<{ readonly name: string; readonly reason: string }>;
}

/**
 * `tokend run --once`: obtains (or adopts a valid stored or fleet token for) every configured token,
 * writes the store (and, through the listeners, the outputs), and returns. Refreshes a stored token
 * that is already due. Retries transient failures until timeoutMs; a rotated refresh token is saved
 * before it returns. With Redis, concurrent runs coordinate through the lease: one grant serves all.
 */
export async function runOnce(config: Config, opts: OnceOptions): Promise<OnceResult> {
  const clock = opts.clock ?? systemClock;
  const store = opts.store ?? (await createStore(config.store, opts.logger));
  await store.init();
  // The outputs and notifications of the daemon, written before the run ends.
  const registry = new Registry();
  const idp = createIdpRegistry({ concurrency: config.idpConcurrency, clock });
  const outputs: TokenOutputs[] = [];
  try {
    for (const tc of config.tokens) {
      outputs.push(await createTokenListeners(tc, { clock, random: opts.random ?? Math.random, logger: opts.logger.child({ token: tc.name }), registry }));
    }
  } catch (err) {
    await Promise.all(outputs.map((o) => o.close()));
    await idp.close();
    await store.close().catch(() => undefined);
    throw err;
  }
  // subjectToken: NAME (token exchange) reads the other token's refresher at grant time.
  const byName = new Map<string, Refresher>();
  const refreshers = config.tokens.map(
    (tc, i) =>
      new Refresher({
        config: tc,
        source: createTokenSource(tc, { clock, idp, tokenLookup: (name) => byName.get(name) }),
        store,
        clock,
        random: opts.random ?? Math.random,
        logger: opts.logger.child({ token: tc.name }),
        listeners: outputs[i]?.listeners,
      }),
  );
  for (const r of refreshers) byName.set(r.name, r);
  try {
    await Promise.all(refreshers.map((r) => r.start()));
    await Promise.all(refreshers.map((r) => untilSettled(r, clock, opts.timeoutMs)));
  } finally {
    await Promise.all(refreshers.map((r) => r.stop()));
    await Promise.all(outputs.map((o) => o.close()));
    await store.close().catch((err: unknown) => opts.logger.warn({ error: errorSummary(err) }, 'closing the store failed'));
  }
  const ready: string[] = [];
  const failed: Array<{ name: string; reason: string }> = [];
  for (const r of refreshers) {
    const s = r.status();
    if (s.ready) ready.push(r.name);
    else failed.push({ name: r.name, reason: s.reason ?? 'not ready' });
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
    if (s.reason?.startsWith('permanent failure') || clock.monotonic() >= deadline) return;
    await new Promise<void>((resolve) => clock.setTimer(resolve, Math.min(250, Math.max(0, deadline - clock.monotonic()))));
  }
}
