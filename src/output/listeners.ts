/**
 * One token's outputs and notifications, as the TokenListener the refresher calls. The listener
 * only records the newest token and returns: files are written and notifications sent by queues
 * of their own, so a slow disk or a dead receiver never delays a refresh or a request.
 *
 * Per change: every output is rendered and written (only if its bytes changed), then every
 * notifier is told, so an application reloading on the notification reads the new files.
 */
import type { Registry } from '../util/prom.js';
import { sleep, type Clock } from '../clock.js';
import type { TokenConfig } from '../config/types.js';
import { errnoCode } from '../errors.js';
import { EVENTS, type Logger } from '../log.js';
import { createNotifiers, deliver } from '../notify/deliver.js';
import type { FetchLike } from '../notify/http.js';
import type { ChangeEvent, Notifier } from '../notify/notifier.js';
import { retryDelay, type BackoffBounds } from '../refresh/backoff.js';
import type { TokenListener, TokenOrigin } from '../refresh/handle.js';
import { isUsable, remainingMs, type AccessToken } from '../token.js';
import { linkSignals } from '../util/abort.js';
import { removeOwnTempFiles } from './file.js';
import { LatestOnly, type JobSignals } from './latest.js';
import { OutputMetrics } from './metrics.js';
import { prepareOutputs, type PreparedOutput } from './prepare.js';
import { renderOutput } from './render.js';

/** Default bound on close(): how long pending writes and notifications may still take (ms). */
export const DEFAULT_CLOSE_BOUND_MS = 2_000;
/** Delays between retries of an output write that failed (disk full, EACCES...), in ms. */
export const WRITE_RETRY: BackoffBounds = { minMs: 1_000, maxMs: 30_000 };

/** What createTokenListeners needs. */
export interface TokenListenerDeps {
  readonly clock: Clock;
  /** Bound to the token ({ token: NAME }). */
  readonly logger: Logger;
  /** Where the output and notification counters are registered (see metrics.ts). */
  readonly registry: Registry;
  /** Uniform in [0, 1), for retry jitter. Default Math.random. */
  readonly random?: (() => number) | undefined;
  /** The fetch HTTP notifications use. Default the global fetch. */
  readonly fetch?: FetchLike | undefined;
  /** Bound on close() (ms). Default DEFAULT_CLOSE_BOUND_MS. */
  readonly closeBoundMs?: number | undefined;
}

/** A token's listeners for the Refresher, and how to let them finish. */
export interface TokenOutputs {
  /** Pass as RefresherDeps.listeners. Empty when the token has neither outputs nor notify. */
  readonly listeners: readonly TokenListener[];
  /**
   * Ignores later changes, then waits (up to the bound) for pending writes and notifications;
   * what is still running after it is aborted. Never rejects.
   */
  close(): Promise<void>;
}

interface Change {
  readonly token: AccessToken;
  readonly origin: TokenOrigin;
}

class TokenPipeline implements TokenListener {
  private last: AccessToken | undefined;
  private closed = false;
  private readonly writes: LatestOnly<Change>;
  private readonly notifyQueues: ReadonlyArray<LatestOnly<ChangeEvent>>;
  private readonly random: () => number;

  constructor(
    private readonly name: string,
    private readonly outputs: readonly PreparedOutput[],
    notifiers: readonly Notifier[],
    private readonly deps: TokenListenerDeps,
    private readonly metrics: OutputMetrics,
  ) {
    this.random = deps.random ?? Math.random;
    this.writes = new LatestOnly((c, s) => this.writeAll(c, s));
    const deliverDeps = { clock: deps.clock, random: this.random, logger: deps.logger, metrics };
    this.notifyQueues = notifiers.map(
      (n) =>
        new LatestOnly<ChangeEvent>(
          (ev, s) => deliver(n, ev, s, deliverDeps),
          (ev) => metrics.notification(ev.name, n.kind, 'superseded'),
        ),
    );
  }

  tokenChanged(_name: string, token: AccessToken, origin: TokenOrigin): void {
    // The same token again (as the refresher itself judges sameness) changes nothing.
    if (this.closed || (this.last?.accessToken === token.accessToken && this.last.expiresAt === token.expiresAt)) return;
    this.last = token;
    this.writes.offer({ token, origin });
  }

  async close(): Promise<void> {
    this.closed = true;
    const { clock } = this.deps;
    const deadline = clock.monotonic() + (this.deps.closeBoundMs ?? DEFAULT_CLOSE_BOUND_MS);
    // Writes first: the last of them may still hand a change to the notifiers.
    await this.writes.settle(clock, deadline - clock.monotonic());
    await Promise.all(this.notifyQueues.map((q) => q.settle(clock, deadline - clock.monotonic())));
  }

  /** Writes every output for change (retrying failed writes while the token is usable), then notifies. */
  private async writeAll({ token, origin }: Change, signals: JobSignals): Promise<void> {
    const { clock, logger: log } = this.deps;
    let pending = this.outputs;
    let changed = false;
    for (let attempt = 1; pending.length > 0; attempt++) {
      const failed: PreparedOutput[] = [];
      for (const out of pending) {
        const r = await this.writeOne(out, token);
        if (r === 'written') changed = true;
        else if (r === 'retry') failed.push(out);
      }
      pending = failed;
      if (pending.length === 0) break;
      // A newer token is waiting (it will be written instead), or tokend is stopping.
      if (signals.superseded.aborted || signals.closing.aborted) return;
      if (!isUsable(token, clock)) {
        log.warn({ event: EVENTS.outputFailed, paths: pending.map((o) => o.path), reason: 'the token expired before it could be written' }, 'output not written');
        return;
      }
      const wait = linkSignals(signals.superseded, signals.closing);
      try {
        await sleep(clock, retryDelay(attempt, WRITE_RETRY, this.random(), remainingMs(token, clock)), wait.signal);
      } catch {
        return;
      } finally {
        wait.dispose();
      }
    }
    // A token loaded at start-up is the one already stored: announcing it would reload
    // applications for nothing, unless an output had to be rewritten for it.
    if (origin === 'loaded' && !changed) return;
    const accessToken = token.accessToken;
    const event: ChangeEvent = {
      name: this.name,
      expiresAt: Math.floor(token.expiresAt / 1000),
      scrub: (text) => (text.includes(accessToken) ? text.split(accessToken).join('[redacted]') : text),
    };
    for (const q of this.notifyQueues) q.offer(event);
  }

  /** Renders and writes one output; 'retry' when the write failed (the render itself is final). */
  private async writeOne(out: PreparedOutput, token: AccessToken): Promise<'written' | 'unchanged' | 'refused' | 'retry'> {
    const { logger: log } = this.deps;
    const fields = { path: out.path, format: out.renderer.format };
    const rendered = renderOutput(out.renderer, this.name, token);
    if (!rendered.ok) {
      log.error({ event: EVENTS.outputFailed, ...fields, reason: rendered.reason }, 'output not written');
      this.metrics.output(this.name, 'failed');
      return 'refused';
    }
    try {
      const result = await out.file.write(rendered.data);
      const expires_at = Math.floor(token.expiresAt / 1000);
      if (result === 'written') log.info({ event: EVENTS.outputWritten, ...fields, expires_at }, 'output written');
      else log.debug({ event: EVENTS.outputUnchanged, ...fields, expires_at }, 'output already up to date');
      this.metrics.output(this.name, result);
      return result;
    } catch (err) {
      const code = errnoCode(err);
      log.warn({ event: EVENTS.outputFailed, ...fields, reason: `write failed (${code})` }, 'output not written; will retry');
      this.metrics.output(this.name, 'failed');
      return 'retry';
    }
  }
}

/**
 * The TokenListener(s) for one token's `outputs` and `notify`, and a close() for shutdown.
 * Checks at start-up what the config check could not (directories, template files): throws
 * ConfigError naming `tokens.NAME.outputs[i]...` when something is wrong. Removes this token's
 * own temp files a crash left beside its outputs. Counters go on deps.registry.
 */
export async function createTokenListeners(tc: TokenConfig, deps: TokenListenerDeps): Promise<TokenOutputs> {
  const notifiers = createNotifiers(tc.notify, { clock: deps.clock, fetch: deps.fetch });
  if ((tc.outputs ?? []).length === 0 && notifiers.length === 0) return { listeners: [], close: async () => undefined };
  const outputs = await prepareOutputs(tc);
  await Promise.all(outputs.map((o) => removeOwnTempFiles(o.path)));
  const metrics = OutputMetrics.on(deps.registry);
  metrics.track(tc.name, outputs.length > 0, notifiers.map((n) => n.kind));
  const pipeline = new TokenPipeline(tc.name, outputs, notifiers, deps, metrics);
  return { listeners: [pipeline], close: () => pipeline.close() };
}
